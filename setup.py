"""The wheel's packages and data files, computed from the folders (the one place they are listed).

`core/`, `gui/` and `resources/` install as `airlock.core`, `airlock.gui` and `airlock.resources`
(no top-level `core` or `gui`). Every folder under them that holds Python code is a package, and
every other file (policy JSON, icons, licences, templates…) is package data of the package whose
folder holds it, so a new sub-package or data folder ships without anyone editing a list: under
`pip install -e` (what tests and CI use) everything imports from the checkout, and a hand-kept list
used to leave new folders out of the real wheel. `packaging/bundle.py` (the frozen app) and
`packaging/devlinks.py` (the link tree editors and type checkers read) take the same mapping from
here. Everything else about the project is in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent

# Source folder → the package it installs as.
PACKAGE_DIRS = {"core": "airlock.core", "gui": "airlock.gui", "resources": "airlock.resources"}

_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def _shipped(path: Path) -> bool:
    return not path.name.startswith(".") and not path.name.endswith(_SKIP_SUFFIXES)


def _folders(top: Path) -> list[Path]:
    """`top` and every folder below it, sorted, without caches and hidden folders."""
    out = [top]
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top).parts
        if path.is_dir() and not any(p in _SKIP_DIRS or p.startswith(".") for p in rel):
            out.append(path)
    return out


def _is_package(folder: Path, top: Path) -> bool:
    return folder == top or any(p.suffix == ".py" for p in folder.iterdir() if p.is_file())


def package_folders(root: Path = ROOT) -> dict[str, Path]:
    """Dotted package name → its folder, for every package the wheel holds."""
    out: dict[str, Path] = {}
    for folder, package in PACKAGE_DIRS.items():
        top = root / folder
        for path in _folders(top):
            if _is_package(path, top):
                out[".".join([package, *path.relative_to(top).parts])] = path
    return out


def packages(root: Path = ROOT) -> list[str]:
    return sorted(package_folders(root))


def package_dir() -> dict[str, str]:
    return {package: folder for folder, package in PACKAGE_DIRS.items()}


def package_data(root: Path = ROOT) -> dict[str, list[str]]:
    """Package → its data files (every file that is not Python source), relative to its folder.
    Files in a folder that is not a package (resources/policy/) belong to the nearest package above."""
    folders = package_folders(root)
    owner = {path: name for name, path in folders.items()}
    data: dict[str, list[str]] = {}
    for name, folder in folders.items():
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or not _shipped(path) or path.suffix == ".py":
                continue
            rel = path.relative_to(folder)
            if any(p in _SKIP_DIRS or p.startswith(".") for p in rel.parts[:-1]):
                continue
            holder = path.parent
            while holder not in owner:  # the nearest package folder above the file
                holder = holder.parent
            if owner[holder] == name:
                data.setdefault(name, []).append(rel.as_posix())
    return data


if __name__ == "__main__":  # run by the build backend (setuptools.build_meta) when building
    from setuptools import setup

    setup(packages=packages(), package_dir=package_dir(), package_data=package_data())
