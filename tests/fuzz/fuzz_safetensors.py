"""libFuzzer over the safetensors parser. See README.md."""
from fuzz_common import main

main("safetensors")
