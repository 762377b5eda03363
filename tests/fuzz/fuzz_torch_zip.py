"""libFuzzer over the torch_zip parser. See README.md."""
from fuzz_common import main

main("torch_zip")
