"""What goes into the frozen app, computed from the checkout alone.

The spec (airlock.spec) and the tests (tests/packaging/) both read these lists, so the fast test
checks exactly what the build uses without running PyInstaller. Nothing here imports Airlock:
the checkout being built may not be the one installed in this Python.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Where the sources are installed from (pyproject's package-dir): folder -> dotted package.
PACKAGES = {"core": "airlock.core", "gui": "airlock.gui", "resources": "airlock.resources"}

# resources/ sub-folders shipped as data (pyproject's package-data for airlock.resources).
RESOURCE_FOLDERS = ("policy", "icons", "themes", "licenses", "templates")

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
    """Every Airlock module, by dotted name (the format registry imports them by string)."""
    names: list[str] = []
    for folder, package in PACKAGES.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            names.append(".".join([package, *parts]))
    return names


def resource_datas() -> list[tuple[str, str]]:
    """(source file, destination folder in the bundle) for every data file of airlock.resources."""
    out: list[tuple[str, str]] = []
    for sub in RESOURCE_FOLDERS:
        folder = ROOT / "resources" / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                dest = Path("airlock", "resources", sub, *path.relative_to(folder).parts[:-1])
                out.append((str(path), dest.as_posix()))
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
    (pkg / "__init__.py").write_text('"""Airlock (frozen app)."""\n', encoding="utf-8")
    for folder in PACKAGES:
        link = pkg / folder
        target = ROOT / folder
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return where
