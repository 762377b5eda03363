"""libFuzzer over the npy parser. See README.md."""
from fuzz_common import main

main("npy")
