"""libFuzzer over the zip parser. See README.md."""
from fuzz_common import main

main("zip")
