"""Build `.dev/airlock/{core,gui,resources}`: links to this checkout under the names they import as.

The sources live in `core/`, `gui/` and `resources/` but import as `airlock.core`, `airlock.gui` and
`airlock.resources` (setup.py maps them), so a type checker or editor pointed at the checkout cannot
resolve `airlock.*` by itself. pyproject's `[tool.mypy] mypy_path` and `[tool.pyright] extraPaths`
point at the tree this builds (the same link tree the PyInstaller build and tests/test_lint.py use):

    python packaging/devlinks.py          # once per checkout; the links follow your edits
    mypy -p airlock.core -p airlock.gui

Symbolic links need Developer Mode (or an administrator) on Windows.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bundle

DEFAULT = bundle.ROOT / ".dev"


def build(where: Path = DEFAULT) -> Path:
    """The folder holding `airlock/` (what to put on a type checker's path)."""
    return bundle.link_tree(where)


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT))
