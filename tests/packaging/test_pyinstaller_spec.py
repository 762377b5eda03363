"""The PyInstaller spec ships what the frozen app needs, checked without running PyInstaller.

The spec runs here with stand-ins for PyInstaller's Analysis/PYZ/EXE/COLLECT that record their
arguments, so these tests see exactly the data files, hidden imports and excludes a build uses.
"""

import importlib.util
import json
import os
import runpy
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "airlock.spec"
ENTRY = PACKAGING / "airlock_main.py"


def _bundle():
    spec = importlib.util.spec_from_file_location("airlock_packaging_bundle", PACKAGING / "bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle = _bundle()


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def run_spec(tmp_path, monkeypatch, pure=None, metadata=None):
    """Run airlock.spec; returns (Analysis kwargs, EXE kwargs, COLLECT args)."""
    calls = {}

    class Analysis(Recorded):
        def __init__(self, scripts, **kwargs):
            super().__init__(scripts, **kwargs)
            calls["analysis"] = self
            src = Path(kwargs["pathex"][0])
            self.pure = pure if pure is not None else [
                (name, str(src / "airlock" / "x.py"), "PYMODULE") for name in kwargs["hiddenimports"]]
            self.scripts, self.binaries, self.datas = [], [], kwargs["datas"]

    class EXE(Recorded):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            calls["exe"] = self

    class COLLECT(Recorded):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            calls["collect"] = self

    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.copy_metadata = lambda dist: (metadata or {}).get(dist, [])
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    monkeypatch.setenv("AIRLOCK_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "bundle", raising=False)
    runpy.run_path(str(SPEC), init_globals={
        "SPECPATH": str(PACKAGING), "Analysis": Analysis, "PYZ": Recorded, "EXE": EXE, "COLLECT": COLLECT})
    return calls["analysis"].kwargs, calls["exe"].kwargs, calls["collect"]


def test_spec_collects_every_resource_data_file(tmp_path, monkeypatch):
    analysis, _, _ = run_spec(tmp_path, monkeypatch)
    datas = {(Path(src).resolve(), dest) for src, dest in analysis["datas"]}
    # What pip installs as airlock.resources data (setup.py's package_data) must be in the bundle.
    layout = runpy.run_path(str(ROOT / "setup.py"), run_name="layout")
    shipped = [ROOT / "resources" / rel for rel in layout["package_data"]()["airlock.resources"]]
    for path in shipped:
        dest = Path("airlock/resources", path.relative_to(ROOT / "resources")).parent.as_posix()
        assert (path.resolve(), dest) in datas, path
    names = {p.relative_to(ROOT / "resources").as_posix() for p in shipped}
    # Without these the frozen app refuses to scan (policy) or shows no licences/icon.
    assert {"policy/allowlist.json", "policy/denylist.json", "policy/torch_weights_only.json",
            "licenses/THIRD_PARTY.md", "licenses/LGPL-NOTICE.txt", "icons/airlock.svg"} <= names


def test_spec_ships_licences_next_to_the_app(tmp_path, monkeypatch):
    analysis, _, _ = run_spec(tmp_path, monkeypatch)
    top = {Path(src).name for src, dest in analysis["datas"] if dest == "licenses"}
    assert {"LICENSE", "LGPL-3.0.txt", "GPL-3.0.txt", "THIRD_PARTY.md", "LGPL-NOTICE.txt"} <= top
    lgpl = (PACKAGING / "licenses" / "LGPL-3.0.txt").read_text()
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in lgpl and "Version 3, 29 June 2007" in lgpl
    assert "GNU GENERAL PUBLIC LICENSE" in (PACKAGING / "licenses" / "GPL-3.0.txt").read_text()
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_spec_collects_package_metadata(tmp_path, monkeypatch):
    fake = {"PySide6_Essentials": [("/sp/pyside6_essentials-6.dist-info", "pyside6_essentials-6.dist-info")]}
    analysis, _, _ = run_spec(tmp_path, monkeypatch, metadata=fake)
    assert ("/sp/pyside6_essentials-6.dist-info", "pyside6_essentials-6.dist-info") in analysis["datas"]
    assert {"fickling", "gguf", "onnx", "h5py", "jinja2", "safetensors"} <= set(bundle.METADATA)


def test_spec_imports_every_airlock_module_and_the_lazy_libraries(tmp_path, monkeypatch):
    analysis, exe, _ = run_spec(tmp_path, monkeypatch)
    hidden = set(analysis["hiddenimports"])
    from airlock.core import formats

    assert set(formats.MODULE_NAMES) <= hidden  # the registry imports them by name
    assert {"airlock.core.isolate", "airlock.gui.single_instance", "airlock.gui.app",
            "airlock.resources"} <= hidden
    for lazy in ("gguf", "onnx", "h5py", "jinja2.sandbox", "fickling.fickle", "safetensors", "lz4.frame",
                 "xxhash", "matplotlib.backends.backend_qtagg", "PySide6.QtNetwork"):
        assert lazy in hidden, lazy
    assert {"torch", "tests", "pytest"} <= set(analysis["excludes"])
    assert exe["name"] == "airlock" and exe["console"] is True
    # The sources come from this checkout, through the link tree the spec made.
    src = Path(analysis["pathex"][0])
    for folder in ("core", "gui", "resources"):
        assert (src / "airlock" / folder).resolve() == ROOT / folder


def test_every_listed_import_exists():
    for name in bundle.python_modules() + bundle.HEAVY_IMPORTS:
        assert importlib.util.find_spec(name) is not None, name


def test_spec_refuses_a_bundle_with_torch_or_foreign_sources(tmp_path, monkeypatch):
    names = bundle.python_modules()
    src = tmp_path / "build" / "src" / "airlock"
    good = [(n, str(src / "m.py"), "PYMODULE") for n in names]
    with pytest.raises(SystemExit, match="excluded"):
        run_spec(tmp_path, monkeypatch, pure=[*good, ("torch", "/sp/torch/__init__.py", "PYMODULE")])
    with pytest.raises(SystemExit, match="outside"):
        run_spec(tmp_path, monkeypatch, pure=[*good[1:], (names[0], "/elsewhere/core/x.py", "PYMODULE")])
    with pytest.raises(SystemExit, match="missing"):
        run_spec(tmp_path, monkeypatch, pure=good[1:])


def test_frozen_entry_answers_the_isolated_parser_child():
    """core/isolate.py starts `<frozen app> --airlock-isolated-child`; the entry script must answer it."""
    import airlock.core.isolate as isolate

    frozen = isolate._command.__code__.co_consts
    assert "--airlock-isolated-child" in frozen
    assert '"--airlock-isolated-child"' in ENTRY.read_text()

    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph).SerializeToString()
    header = json.dumps({"task": "onnx", "path": None, "options": {}, "memory": 0}).encode() + b"\n"
    proc = subprocess.run([sys.executable, str(ENTRY), "--airlock-isolated-child"], input=header + model,
                          capture_output=True, timeout=120, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["ok"] is True, answer
    assert "Relu" in json.dumps(answer["result"])


def test_frozen_entry_runs_the_scanner(tmp_path):
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwnedq\x00\x85q\x01Rq\x02.")
    proc = subprocess.run([sys.executable, str(ENTRY), "scan", str(hostile)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "posix.system" in proc.stdout or "os.system" in proc.stdout
