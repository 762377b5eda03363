"""libFuzzer over the safetensors-index parser. See README.md."""
from fuzz_common import main

main("safetensors-index")
