"""libFuzzer over the whole scan (sniff, parse, nested formats, reports). See README.md."""
from fuzz_common import main

main(None)
