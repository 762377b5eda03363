"""libFuzzer over the torch_legacy parser. See README.md."""
from fuzz_common import main

main("torch_legacy")
