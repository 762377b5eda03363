"""The pickle tests import their generators from tests/fixtures (a plain directory, not a package)."""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
