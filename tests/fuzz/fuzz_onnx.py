"""libFuzzer over the onnx parser. See README.md."""
from fuzz_common import main

main("onnx")
