"""libFuzzer over the joblib parser. See README.md."""
from fuzz_common import main

main("joblib")
