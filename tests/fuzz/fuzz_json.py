"""libFuzzer over the json parser. See README.md."""
from fuzz_common import main

main("json")
