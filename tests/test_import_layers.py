"""Layers, enforced: the import-linter contracts in pyproject.toml hold, and they do catch a violation."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not os.path.exists(tool):
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    # The dev link tree first on the path: grimp reads the checkout's files under their package names.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([tool, "--no-cache", str(ROOT / "pyproject.toml")], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=600)


def _links(where: Path) -> Path:
    return runpy.run_path(str(ROOT / "packaging" / "devlinks.py"), run_name="devlinks")["build"](where)


def test_the_layer_contracts_are_kept(tmp_path):
    proc = _lint_imports(_links(tmp_path / "links"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout and "KEPT" in proc.stdout


@pytest.mark.parametrize(("where", "line", "contract"), [
    ("formats", "from airlock.core.convert import model\n", "never import the converter"),
    ("formats", "def f():\n    from airlock.core.convert.stream import copy_tensor\n", "never import the converter"),
    ("", "from airlock.gui import theme\n", "never imports the GUI or Qt"),
    ("", "import PySide6.QtCore\n", "never imports the GUI or Qt"),
])
def test_a_violation_breaks_a_contract(tmp_path, where, line, contract):
    # A copy of the tree whose core (or core/formats) is a folder of links plus one offending module.
    tree = _links(tmp_path / "links")
    core = tree / "airlock" / "core"
    core.unlink()
    core.mkdir()
    for entry in (ROOT / "core").iterdir():
        if entry.name != "__pycache__":
            (core / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    package = core
    if where:
        package = core / where
        package.unlink()
        package.mkdir()
        for entry in (ROOT / "core" / where).iterdir():
            if entry.name != "__pycache__":
                (package / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (package / "zz_offender.py").write_text(line)
    proc = _lint_imports(tree)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BROKEN" in proc.stdout and contract in proc.stdout and "zz_offender" in proc.stdout


# Import cycles at run time (imports under TYPE_CHECKING excluded; imports inside functions count),
# as groups of modules that reach each other. Before issue 15 there were 10 such groups (47 modules;
# counting type-only imports too, 4 groups, one of 76 modules around findings.all_rules); none remain.
# A new cycle fails here: break it (docs/ARCHITECTURE.md says how the layers go), or justify it in this list.
REMAINING_CYCLES: list[set[str]] = []


def _cycles(tree: Path) -> list[set[str]]:
    # A fresh interpreter with only the link tree on the path: grimp must not see this process's
    # already-imported `airlock` (the editable install's finder lays the package out differently).
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "import_cycles.py")], cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return [set(group) for group in json.loads(proc.stdout)]


def test_no_new_import_cycle(tmp_path):
    found = _cycles(_links(tmp_path / "links"))
    new = [sorted(group) for group in found if group not in REMAINING_CYCLES]
    assert not new, f"new import cycles (break them, or justify in REMAINING_CYCLES): {new}"
    gone = [sorted(group) for group in REMAINING_CYCLES if group not in found]
    assert not gone, f"cycles broken or changed: update REMAINING_CYCLES to {sorted(map(sorted, found))}"
