"""ruff (with the no-deserialization bans) over the project, and mypy --strict over core."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name):
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not os.path.exists(path):
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return path


def test_ruff_clean():
    proc = subprocess.run([_tool("ruff"), "check", "core", "gui", "tests"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_bans_deserialization_in_core(tmp_path):
    bad = tmp_path / "core" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("import pickle\nimport marshal\n\n\ndef f(b):\n    eval('1')\n    return pickle.loads(b)\n")
    proc = subprocess.run([_tool("ruff"), "check", "--config", str(ROOT / "pyproject.toml"), str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    for code in ("TID251", "S301", "S307"):
        assert code in proc.stdout, proc.stdout


def test_mypy_strict_on_core(tmp_path):
    # core/ is the package airlock.core: give mypy a link tree with that name.
    (tmp_path / "airlock").mkdir()
    (tmp_path / "airlock" / "core").symlink_to(ROOT / "core")
    proc = subprocess.run([_tool("mypy"), "--config-file", str(ROOT / "pyproject.toml"), "-p", "airlock.core"],
                          cwd=tmp_path, env={**os.environ, "MYPYPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
