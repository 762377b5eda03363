"""What goes into the frozen app, computed from the checkout alone.

The spec (airlock.spec) and the tests (tests/packaging/) both read these lists, so the fast test
checks exactly what the build uses without running PyInstaller. Nothing here imports Airlock:
the checkout being built may not be the one installed in this Python.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _layout() -> ModuleType:
    """The checkout's setup.py, read as a module (its setup() runs only under a build backend)."""
    spec = importlib.util.spec_from_file_location("airlock_setup_layout", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAYOUT = _layout()

# Where the sources are installed from: folder -> dotted package (setup.py, which the wheel uses too).
PACKAGES: dict[str, str] = LAYOUT.PACKAGE_DIRS

# Imported lazily inside parse functions or detail views, so name them: a missing one would only
# show up when a user opens that kind of file.
HEAVY_IMPORTS = [
    "numpy", "numpy.lib.format",
    "gguf", "gguf.constants", "gguf.gguf_writer",
    "onnx", "google.protobuf.message",
    "h5py",
    "jinja2", "jinja2.nodes", "jinja2.ext", "jinja2.sandbox",
    "fickling", "fickling.fickle",
    "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_qtagg",
    "safetensors",
    "lz4", "lz4.frame",
    "xxhash",
    "PySide6.QtNetwork", "PySide6.QtSvg",
]

# Never in the bundle: torch is a test-only dependency (and gigabytes), tests are not shipped, and
# nothing in Airlock uses the rest. Libraries that import torch optionally keep working without it.
EXCLUDES = [
    "torch", "torchvision", "torchaudio", "tensorflow", "keras", "jax", "sentencepiece",
    "tests", "pytest", "_pytest", "hypothesis", "pytestqt",
    "IPython", "jupyter_client", "notebook",
    "tkinter", "_tkinter", "matplotlib.backends.backend_tkagg", "matplotlib.backends._backend_tk",
    "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtWebEngineCore", "PyQt5", "PyQt6",
    # gguf imports requests lazily, only to fetch remote metadata: Airlock never goes online, and
    # leaving the HTTP stack out (with OpenSSL and cryptography) saves about 25 MB.
    "requests", "urllib3", "cryptography", "charset_normalizer",
]

# Distributions whose metadata (and licence files) ship in the bundle.
METADATA = [
    "PySide6_Essentials", "shiboken6", "fickling", "safetensors", "gguf", "onnx",
    "protobuf", "matplotlib", "numpy", "h5py", "jinja2", "markupsafe", "lz4", "xxhash",
]

# Licence texts shown next to the app (dist/airlock/licenses/): the project's own, the notices in
# resources/licenses/, and the LGPL/GPL texts (the PySide6 wheels carry none).
TOP_LICENCES = [ROOT / "LICENSE", ROOT / "packaging" / "licenses" / "LGPL-3.0.txt",
                ROOT / "packaging" / "licenses" / "GPL-3.0.txt"]


def python_modules() -> list[str]:
    """Every Airlock module, by dotted name (the format registry imports them by string): the
    modules of every package the wheel holds (setup.py)."""
    names: list[str] = []
    for package, folder in sorted(LAYOUT.package_folders(ROOT).items()):
        names.append(package)
        names += [f"{package}.{path.stem}" for path in sorted(folder.glob("*.py")) if path.stem != "__init__"]
    return names


def resource_datas() -> list[tuple[str, str]]:
    """(source file, destination folder in the bundle) for every data file the wheel holds."""
    out: list[tuple[str, str]] = []
    folders = LAYOUT.package_folders(ROOT)
    for package, files in sorted(LAYOUT.package_data(ROOT).items()):
        for rel in files:
            dest = Path(*package.split("."), *Path(rel).parts[:-1])
            out.append((str(folders[package] / rel), dest.as_posix()))
    return out


def licence_datas() -> list[tuple[str, str]]:
    out = [(str(p), "licenses") for p in TOP_LICENCES]
    out += [(str(p), "licenses") for p in sorted((ROOT / "resources" / "licenses").glob("*")) if p.is_file()]
    return out


def link_tree(where: Path) -> Path:
    """A folder holding `airlock/{core,gui,resources}` as links to this checkout, for `pathex`.

    The installed package may be an editable install of another checkout, found through a
    setuptools finder PyInstaller does not consult; this tree makes the build take the sources
    next to this file. `airlock/__init__.py` makes it a regular package, so no other
    `airlock` portion on sys.path can contribute modules.
    """
    pkg = where / "airlock"
    pkg.mkdir(parents=True, exist_ok=True)
    init = '"""Airlock: links to a checkout (packaging/bundle.py)."""\n'
    (pkg / "__init__.py").write_text(init, encoding="utf-8")
    for folder in PACKAGES:
        link = pkg / folder
        target = ROOT / folder
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return where
