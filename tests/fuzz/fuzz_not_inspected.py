"""libFuzzer over the not-inspected parser. See README.md."""
from fuzz_common import main

main("not-inspected")
