"""A real PyInstaller build, then the frozen binary (not the sources) on samples. About 2-3 minutes.

Needs PyInstaller (`pip install -e '.[packaging]'`); packaging/check.sh runs the same checks from
a clean clone, plus the desktop integration.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwnedq\x00\x85q\x01Rq\x02."
BENIGN = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01]q\x02(K\x01K\x02es."


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        pytest.skip("PyInstaller is not installed: pip install -e '.[packaging]'")
    work = tmp_path_factory.mktemp("build")
    env = {**os.environ, "PYTHON": sys.executable, "AIRLOCK_BUILD_DIR": str(work / "build"),
           "AIRLOCK_DIST_DIR": str(work / "dist")}
    proc = subprocess.run(["bash", str(ROOT / "packaging" / "build.sh")], env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "dist" / "airlock"


def _frozen_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"), TMPDIR=str(tmp_path),
               AIRLOCK_INSTANCE=str(tmp_path / "i.sock"))
    return env


def _run(app, args, tmp_path, timeout=300):
    return subprocess.run([str(app / "airlock"), *args], capture_output=True, text=True, timeout=timeout,
                          env=_frozen_env(tmp_path), cwd=tmp_path)


@pytest.mark.slow
def test_bundle_holds_policy_licences_icons_and_no_torch(app):
    internal = app / "_internal"
    for rel in ("policy/allowlist.json", "policy/denylist.json", "policy/torch_weights_only.json",
                "licenses/THIRD_PARTY.md", "licenses/LGPL-NOTICE.txt", "icons/airlock.svg"):
        source = ROOT / "resources" / rel
        assert (internal / "airlock" / "resources" / rel).read_bytes() == source.read_bytes(), rel
    for name in ("LICENSE", "LGPL-3.0.txt", "GPL-3.0.txt", "THIRD_PARTY.md"):
        assert (app / "licenses" / name).is_file(), name
    assert (internal / "matplotlib" / "mpl-data").is_dir()
    assert (internal / "PySide6" / "QtNetwork.abi3.so").is_file()
    assert (app / "share" / "hicolor" / "256x256" / "apps" / "airlock.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (internal / "torch").exists() and not (internal / "tests").exists()


@pytest.mark.slow
def test_frozen_scan_exit_codes(app, tmp_path):
    (tmp_path / "hostile.pkl").write_bytes(HOSTILE)
    (tmp_path / "benign.pkl").write_bytes(BENIGN)
    hostile = _run(app, ["scan", "hostile.pkl"], tmp_path)
    assert hostile.returncode == 1, hostile.stderr
    assert "CRITICAL" in hostile.stdout
    benign = _run(app, ["scan", "benign.pkl"], tmp_path)
    assert benign.returncode == 0, benign.stdout + benign.stderr


@pytest.mark.slow
def test_frozen_isolated_parsers_and_lazy_formats(app, tmp_path):
    import h5py
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_dataset("dense/kernel", data=np.ones((2, 2), dtype="f4"))
    np.save(tmp_path / "a.npy", np.zeros(3, dtype="<f8"))
    proc = _run(app, ["scan", "--format", "json", "m.onnx", "w.h5", "a.npy"], tmp_path)
    doc = json.loads(proc.stdout)
    formats = {Path(f["path"]).name: f["format"] for f in doc["files"]}
    assert formats == {"m.onnx": "onnx", "w.h5": "keras", "a.npy": "npy"}, proc.stderr
    worst = {Path(f["path"]).name: f["severity"] for f in doc["files"]}
    assert all(s not in ("high", "critical") for s in worst.values()), doc  # no crashed child parser
    assert proc.returncode == 0


@pytest.mark.slow
def test_frozen_missing_policy_refuses_to_scan(app, tmp_path):
    copy = tmp_path / "app"
    shutil.copytree(app, copy, symlinks=True)
    (copy / "_internal" / "airlock" / "resources" / "policy" / "denylist.json").unlink()
    (tmp_path / "benign.pkl").write_bytes(BENIGN)
    proc = _run(copy, ["scan", "benign.pkl"], tmp_path)
    assert proc.returncode == 2
    assert "denylist.json is missing" in proc.stderr


@pytest.mark.slow
def test_frozen_screenshot_and_single_instance(app, tmp_path):
    (tmp_path / "hostile.pkl").write_bytes(HOSTILE)
    out = tmp_path / "shot.png"
    proc = _run(app, ["--screenshot", str(out), "hostile.pkl"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width >= 1280 and height >= 800

    (tmp_path / "benign.pkl").write_bytes(BENIGN)
    first = subprocess.Popen([str(app / "airlock"), "hostile.pkl"], env=_frozen_env(tmp_path), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "i.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        second = _run(app, ["benign.pkl"], tmp_path, timeout=60)
        assert second.returncode == 0 and "already running" in second.stderr, second.stderr
    finally:
        first.kill()
        first.wait(10)
