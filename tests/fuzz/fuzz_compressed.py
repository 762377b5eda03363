"""libFuzzer over the compressed parser. See README.md."""
from fuzz_common import main

main("compressed")
