"""libFuzzer over the pickle parser. See README.md."""
from fuzz_common import main

main("pickle")
