"""ruff (with the no-deserialization bans) over the project, and mypy --strict over core and gui."""

import os
import runpy
import shutil
import subprocess
import sys
import tomllib
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


def _devlinks():
    return runpy.run_path(str(ROOT / "packaging" / "devlinks.py"), run_name="devlinks")


@pytest.mark.slow
def test_mypy_strict_on_core_and_gui(tmp_path):
    # core/ and gui/ are the packages airlock.core and airlock.gui: mypy reads them through the link
    # tree the committed dev step builds (packaging/devlinks.py), here in a temporary folder.
    links = _devlinks()["build"](tmp_path / "links")
    proc = subprocess.run([_tool("mypy"), "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
                           str(tmp_path / "cache"), "-p", "airlock.core", "-p", "airlock.gui"],
                          cwd=tmp_path, env={**os.environ, "MYPYPATH": str(links)},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_type_checkers_are_pointed_at_the_dev_link_tree():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    default = _devlinks()["DEFAULT"]
    assert config["mypy"]["mypy_path"].replace("$MYPY_CONFIG_FILE_DIR", str(ROOT)) == str(default)
    assert [str(ROOT / p) for p in config["pyright"]["extraPaths"]] == [str(default)]
    assert config["mypy"]["strict"] and config["mypy"]["warn_unused_ignores"]
    assert "/.dev/" in (ROOT / ".gitignore").read_text().splitlines()
