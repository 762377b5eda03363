"""A slim command-line install for CI (README: `pip install -r requirements-cli.txt` then
`pip install --no-deps .`): no PySide6, matplotlib or fickling, the same scan output as the full
install, and the desktop commands naming what is missing instead of a traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESKTOP_ONLY = {"pyside6-essentials", "matplotlib", "fickling"}


def _requirement(line: str) -> tuple[str, str]:
    """(normalised name, the rest: version and marker without spaces)."""
    name = re.match(r"[A-Za-z0-9_.-]+", line).group(0)
    return re.sub(r"[-_.]+", "-", name).lower(), re.sub(r"\s+", "", line[len(name):])


def test_requirements_cli_are_the_base_dependencies_without_the_desktop_app():
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {_requirement(d) for d in base if _requirement(d)[0] not in DESKTOP_ONLY}
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements-cli.txt").read_text().splitlines()]
    listed = {_requirement(line) for line in lines if line}
    assert listed == wanted


def _corpus_folder(folder: Path) -> Path:
    """One benign and one hostile file of every format the corpus knows (ONNX and HDF5 included,
    so the isolated parser runs in both installs)."""
    import corpus

    seen: set[tuple[str, bool]] = set()
    for hostile, fixtures in ((False, corpus.benign()), (True, corpus.hostile())):
        for fixture in fixtures:
            name = fixture.name.rsplit("/", 1)[-1]
            kind = (os.path.splitext(name)[1], hostile)
            if kind in seen:
                continue
            seen.add(kind)
            path = folder / ("hostile" if hostile else "benign") / "".join(
                c if c.isalnum() or c in "._-" else "_" for c in name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(fixture.data)
    return folder


@pytest.mark.slow
def test_a_slim_install_scans_exactly_like_the_full_one(tmp_path):
    source = tmp_path / "src"  # a copy: building a wheel writes build/ next to the sources
    for item in ("core", "gui", "resources", "setup.py", "pyproject.toml", "README.md", "LICENSE",
                 "requirements-cli.txt"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, source / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, source / item)
    venv = tmp_path / "slim"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    for args in (["-r", str(source / "requirements-cli.txt")], ["--no-deps", str(source)]):
        proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args], capture_output=True,
                              text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-3000:]
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True,
                               text=True, check=True, timeout=300).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert not names & DESKTOP_ONLY and "model-airlock" in names

    folder = _corpus_folder(tmp_path / "models")
    argv = ["scan", "--format", "json", "--jobs", "1", str(folder)]
    slim = subprocess.run([str(venv / "bin" / "airlock"), *argv], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    full = subprocess.run([sys.executable, "-m", "airlock.core.cli", *argv], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert slim.returncode == full.returncode == 1, slim.stderr + full.stderr
    assert slim.stderr == full.stderr == ""
    assert slim.stdout == full.stdout
    formats = {f["format"] for f in json.loads(slim.stdout)["files"]}
    assert {"pickle", "onnx", "keras", "safetensors", "gguf", "torch_zip"} <= formats

    for gui in (["demo"], ["--screenshot", str(tmp_path / "x.png")], []):
        proc = subprocess.run([str(venv / "bin" / "airlock"), *gui], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "PySide6-Essentials" in proc.stderr and "pip install" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_the_desktop_commands_name_a_missing_package():
    code = ("import sys\n"
            "sys.modules['matplotlib'] = None  # as if not installed\n"
            "from airlock.gui.launcher import main\n"
            "sys.exit(main(['demo']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "needs matplotlib" in proc.stderr and "pip install matplotlib" in proc.stderr
    assert "PySide6" not in proc.stderr.split("(")[0]  # only what is missing is named
