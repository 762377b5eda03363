"""libFuzzer over the gguf parser. See README.md."""
from fuzz_common import main

main("gguf")
