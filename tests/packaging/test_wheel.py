"""The real wheel holds every package and data file of the checkout (setup.py computes them).

A hand-kept package list once let a new sub-package import under `pip install -e` (what tests use)
while `pip install .` left it out. The fast tests check the computation on a made-up tree with such a
sub-package and data folder; the slow one builds the wheel from this checkout, installs it into a
scratch virtual environment and scans from it, importing nothing from the checkout.
"""

import json
import os
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = runpy.run_path(str(ROOT / "setup.py"), run_name="layout")  # its setup() runs only as __main__
BUNDLE = runpy.run_path(str(ROOT / "packaging" / "bundle.py"), run_name="bundle")


def _tree(tmp_path):
    for rel, text in {
        "core/__init__.py": "", "core/scan.py": "", "core/dtypes/__init__.py": "", "core/dtypes/table.py": "",
        "core/nspkg/mod.py": "",  # a folder of code without __init__.py is still shipped
        "core/__pycache__/scan.cpython-311.pyc": "", "core/.hidden/x.py": "",
        "gui/__init__.py": "", "gui/icons/logo.svg": "<svg/>",
        "resources/__init__.py": "", "resources/policy/allowlist.json": "{}",
        "resources/templates/chat.jinja": "{{ x }}", "resources/templates/nested/deep.txt": "t",
    }.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_new_sub_packages_and_data_folders_are_in_the_computed_lists(tmp_path):
    root = _tree(tmp_path)
    assert LAYOUT["packages"](root) == ["airlock.core", "airlock.core.dtypes", "airlock.core.nspkg", "airlock.gui",
                                        "airlock.resources"]
    assert LAYOUT["package_data"](root) == {
        "airlock.gui": ["icons/logo.svg"],
        "airlock.resources": ["policy/allowlist.json", "templates/chat.jinja", "templates/nested/deep.txt"]}


def test_every_source_file_of_the_checkout_is_covered():
    folders = LAYOUT["package_folders"]()
    listed = {folder / name for package, folder in folders.items() for name in os.listdir(folder)
              if name.endswith(".py")}
    listed |= {folders[p] / rel for p, files in LAYOUT["package_data"]().items() for rel in files}
    every = {p for top in LAYOUT["PACKAGE_DIRS"] for p in (ROOT / top).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")}
    assert every == listed


def test_the_frozen_app_uses_the_same_lists():
    modules = set(BUNDLE["python_modules"]())
    assert set(LAYOUT["packages"]()) <= modules
    assert "airlock.core.tensors" in modules and "airlock.gui.details.pane" in modules
    datas = {Path(src) for src, _ in BUNDLE["resource_datas"]()}
    folders = LAYOUT["package_folders"]()
    assert datas == {folders[p] / rel for p, files in LAYOUT["package_data"]().items() for rel in files}


def _site_packages(python):
    out = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.mark.slow
def test_the_real_wheel_installs_and_scans(tmp_path):
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info next to setup.py
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((ROOT / name).read_bytes())
    for folder in LAYOUT["PACKAGE_DIRS"]:
        subprocess.run(["cp", "-r", str(ROOT / folder), str(src / folder)], check=True)
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(src)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("model_airlock-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not any(n.startswith(("core/", "gui/", "tests/")) for n in names)  # no top-level core or gui
    expected = {f"airlock/{top}/{p.relative_to(ROOT / top).as_posix()}" for top in LAYOUT["PACKAGE_DIRS"]
                for p in (ROOT / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert expected <= names, sorted(expected - names)[:10]

    # A scratch environment: Airlock from the wheel only; its dependencies seen from this one's
    # site-packages through a plain path (.pth files there, the editable install's finder included,
    # are not processed, so nothing resolves to the checkout).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    scratch_site = _site_packages(python)
    (scratch_site / "deps.pth").write_text(str(_site_packages(sys.executable)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COVERAGE_PROCESS_START")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    work = tmp_path / "work"  # not the checkout: its core/ and gui/ must not be importable by accident
    work.mkdir()
    check = ("import importlib, importlib.resources, json, pkgutil, airlock.core, airlock.gui, airlock.resources\n"
             "mods = [m.name for p in (airlock.core, airlock.gui) for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]\n"
             "for m in mods: importlib.import_module(m)\n"
             "data = sorted(str(p) for p in importlib.resources.files('airlock.resources').rglob('*') if p.is_file())\n"
             "print(json.dumps({'core': airlock.core.__file__, 'modules': mods, 'data': data}))\n")
    out = subprocess.run([python, "-c", check], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert Path(seen["core"]).is_relative_to(scratch_site), seen["core"]
    assert set(BUNDLE["python_modules"]()) <= {*seen["modules"], "airlock.core", "airlock.gui", "airlock.resources"}
    assert any(d.endswith("policy/allowlist.json") for d in seen["data"])

    hostile = work / "model.pkl"
    hostile.write_bytes(b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwnedq\x00\x85q\x01Rq\x02.")
    airlock = str(venv / ("Scripts" if os.name == "nt" else "bin") / "airlock")
    scan = subprocess.run([airlock, "scan", "--format", "json", str(hostile)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert scan.returncode == 1, scan.stderr
    (entry,) = json.loads(scan.stdout)["files"]
    assert entry["severity"] == "critical" and entry["format"] == "pickle"
