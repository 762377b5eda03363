"""libFuzzer over the torchscript parser. See README.md."""
from fuzz_common import main

main("torchscript")
