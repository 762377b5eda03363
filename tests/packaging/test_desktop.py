"""Linux desktop integration: the menu entry, the file types, and install.sh in a scratch home."""

import configparser
import fnmatch
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
NS = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
# The extensions issue 7 asks for, and the type each must resolve to. .h5 keeps the system's type
# (Airlock is one more handler); the others are declared by airlock-mime.xml. A plain .bin is claimed
# by nothing (issue 19: never application/octet-stream), only the names checkpoints are given.
EXPECTED = {
    "safetensors": "application/x-safetensors", "gguf": "application/x-gguf", "onnx": "application/x-onnx",
    "pt": "application/x-pytorch", "pth": "application/x-pytorch", "ckpt": "application/x-pytorch",
    "pkl": "application/x-python-pickle", "npy": "application/x-npy", "npz": "application/x-npz",
    "joblib": "application/x-joblib", "keras": "application/x-keras",
    "h5": "application/x-hdf",
}
SYSTEM_TYPES = {"application/x-hdf"}
CHECKPOINT_NAMES = ("pytorch_model.bin", "pytorch_model-00001-of-00002.bin", "adapter_model.bin",
                    "training_args.bin")


def desktop_entry(path=LINUX / "airlock.desktop"):
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def mime_types():
    tree = ET.parse(LINUX / "airlock-mime.xml")
    out = {}
    for node in tree.getroot().findall("m:mime-type", NS):
        out[node.get("type")] = {
            "globs": [g.get("pattern") for g in node.findall("m:glob", NS)],
            "magic": [(m.get("offset"), m.get("value")) for m in node.findall("m:magic/m:match", NS)],
            "parents": [p.get("type") for p in node.findall("m:sub-class-of", NS)],
            "comment": node.findtext("m:comment", namespaces=NS),
        }
    return out


def test_desktop_entry_opens_files_and_lists_every_type():
    entry = desktop_entry()
    assert entry["Type"] == "Application" and entry["Name"] == "Airlock"
    assert entry["Exec"].split()[0] == "airlock" and entry["Exec"].endswith("%F")  # several files at once
    assert entry["Terminal"] == "false" and entry["Icon"] == "airlock"
    assert (ROOT / "resources" / "icons" / "airlock.svg").is_file()
    assert "Development" in entry["Categories"].split(";") and entry["Categories"].endswith(";")
    listed = entry["MimeType"].split(";")
    assert listed[-1] == ""  # the list is ;-terminated
    assert set(EXPECTED.values()) <= set(listed)
    assert set(mime_types()) <= set(listed)
    for line in (LINUX / "airlock.desktop").read_text().splitlines():
        assert line == line.strip() and (not line or line.startswith("[") or "=" in line), line
    # Only model types: Airlock must not be offered for every unknown file.
    assert "application/octet-stream" not in listed and "application/x-executable" not in listed


def test_desktop_file_validate_accepts_the_entry():
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip("desktop-file-validate (desktop-file-utils) is not installed on this machine")
    proc = subprocess.run([tool, str(LINUX / "airlock.desktop")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


def test_mime_xml_declares_only_new_types_with_globs_and_magic():
    types = mime_types()
    assert not SYSTEM_TYPES & set(types)  # never redefine .h5 or .bin
    by_glob = {g: t for t, info in types.items() for g in info["globs"]}
    for ext, mime in EXPECTED.items():
        if mime not in SYSTEM_TYPES:
            assert by_glob[f"*.{ext}"] == mime, ext
    assert ("0", "GGUF") in types["application/x-gguf"]["magic"]
    assert ("0", "\\223NUMPY") in types["application/x-npy"]["magic"]
    assert types["application/x-npz"]["parents"] == ["application/zip"]
    assert types["application/x-keras"]["parents"] == ["application/zip"]
    assert all(info["comment"] for info in types.values())


@pytest.fixture
def mime_db(tmp_path):
    """A MIME database built by update-mime-database from the system types plus Airlock's."""
    tool = shutil.which("update-mime-database")
    if tool is None:
        pytest.skip("update-mime-database (shared-mime-info) is not installed on this machine")
    packages = tmp_path / "mime" / "packages"
    packages.mkdir(parents=True)
    system = Path("/usr/share/mime/packages/freedesktop.org.xml")
    if system.is_file():
        shutil.copy(system, packages)
    shutil.copy(LINUX / "airlock-mime.xml", packages)
    proc = subprocess.run([tool, str(tmp_path / "mime")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "airlock-mime.xml" not in proc.stderr, proc.stderr  # no warnings about our file
    return tmp_path / "mime", system.is_file()


@pytest.mark.slow
def test_update_mime_database_accepts_the_types(mime_db):
    folder, with_system = mime_db
    globs = {}
    for line in (folder / "globs2").read_text().splitlines():
        if line and not line.startswith("#"):
            _weight, mime, pattern = line.split(":", 2)[:3]
            globs.setdefault(pattern, set()).add(mime)
    for ext, mime in EXPECTED.items():
        if mime in SYSTEM_TYPES:
            if with_system and ext == "h5":
                assert globs["*.h5"] == {"application/x-hdf"}  # still HDF; Airlock only offers to open it
            continue
        assert globs[f"*.{ext}"] == {mime}, ext  # one type per extension: no ambiguity to sniff
    checkpoint_globs = {p: m for p, ms in globs.items() for m in ms if m == "application/x-pytorch"}
    assert {"pytorch_model*.bin", "adapter_model.bin", "training_args.bin"} <= set(checkpoint_globs)
    assert not any(p == "*.bin" and "application/x-pytorch" in ms for p, ms in globs.items())
    for name in CHECKPOINT_NAMES:
        assert any(fnmatch.fnmatchcase(name, pattern) for pattern in checkpoint_globs), name
    magic = (folder / "magic").read_bytes()
    assert b"[60:application/x-gguf]\n>0=\x00\x04GGUF" in magic
    assert b"[60:application/x-npy]\n>0=\x00\x06\x93NUMPY" in magic


def _fake_bundle(tmp_path):
    """What build.sh leaves in packaging/dist/airlock, with a shell script for the binary."""
    app = tmp_path / "dist" / "airlock"
    (app / "_internal").mkdir(parents=True)
    (app / "airlock").write_text("#!/bin/sh\necho 'airlock 0.0-test'\n")
    (app / "airlock").chmod(0o755)
    share = app / "share"
    share.mkdir()
    for name in ("airlock.desktop", "airlock-mime.xml", "install.sh"):
        shutil.copy(LINUX / name, share)
    shutil.copy(ROOT / "resources" / "icons" / "airlock.svg", share)
    png = share / "hicolor" / "48x48" / "apps" / "airlock.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    return app


def _run(cmd, home, extra_path=None):
    env = {"PATH": os.pathsep.join([*(extra_path or []), os.environ["PATH"]]), "HOME": str(home),
           "XDG_DATA_HOME": str(home / "data"), "AIRLOCK_BIN_DIR": str(home / "bin")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_install_sh_from_a_built_bundle_and_uninstall(tmp_path):
    app = _fake_bundle(tmp_path)
    home = tmp_path / "home with space"
    data = home / "data"
    proc = _run(["bash", str(app / "share" / "install.sh")], home)
    assert proc.returncode == 0, proc.stderr

    installed = data / "airlock" / "app" / "airlock"
    assert installed.is_file() and os.access(installed, os.X_OK)  # a copy: the checkout can go
    assert (home / "bin" / "airlock").resolve() == installed.resolve()
    entry = desktop_entry(data / "applications" / "airlock.desktop")
    assert entry["Exec"] == f'"{installed}" %F'  # absolute: ~/.local/bin is not always on PATH
    assert entry["TryExec"] == str(installed)
    assert entry["MimeType"] == desktop_entry()["MimeType"]
    assert (data / "mime" / "packages" / "airlock-mime.xml").read_bytes() == (LINUX / "airlock-mime.xml").read_bytes()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "airlock.svg").is_file()
    assert (data / "icons" / "hicolor" / "48x48" / "apps" / "airlock.png").is_file()
    if shutil.which("update-mime-database"):
        assert "application/x-gguf:*.gguf" in (data / "mime" / "globs2").read_text()

    # Installing again replaces the app in place.
    assert _run(["bash", str(app / "share" / "install.sh")], home).returncode == 0

    proc = _run(["bash", str(app / "share" / "install.sh"), "--uninstall"], home)
    assert proc.returncode == 0, proc.stderr
    assert not (data / "airlock").exists() and not (home / "bin" / "airlock").exists()
    assert not (data / "applications" / "airlock.desktop").exists()
    assert not (data / "mime" / "packages" / "airlock-mime.xml").exists()
    assert not list((data / "icons").rglob("airlock.*"))


def test_install_sh_from_the_checkout(tmp_path):
    app = _fake_bundle(tmp_path)
    home = tmp_path / "home"
    proc = _run(["bash", str(LINUX / "install.sh"), "--bundle", str(app)], home)
    assert proc.returncode == 0, proc.stderr
    assert (home / "data" / "airlock" / "app" / "airlock").is_file()

    # Without a bundle it says how to build one, and installs nothing.
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run(["bash", str(LINUX / "install.sh"), "--bundle", str(empty)], tmp_path / "home2")
    assert proc.returncode == 2 and "build.sh" in proc.stderr
    assert not (tmp_path / "home2" / "data" / "applications").exists()


def test_install_sh_for_a_pip_install(tmp_path):
    bindir = tmp_path / "venv-bin"
    bindir.mkdir()
    (bindir / "airlock").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "airlock").chmod(0o755)
    home = tmp_path / "home"
    proc = _run(["bash", str(LINUX / "install.sh"), "--pip"], home, extra_path=[str(bindir)])
    assert proc.returncode == 0, proc.stderr
    entry = desktop_entry(home / "data" / "applications" / "airlock.desktop")
    assert entry["Exec"] == f'"{bindir / "airlock"}" %F'
    assert (home / "data" / "icons" / "hicolor" / "scalable" / "apps" / "airlock.svg").is_file()
    assert not (home / "data" / "airlock").exists()  # nothing copied: pip owns the program
