"""libFuzzer over the keras parser. See README.md."""
from fuzz_common import main

main("keras")
