"""libFuzzer over the npz parser. See README.md."""
from fuzz_common import main

main("npz")
