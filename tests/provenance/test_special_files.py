"""`hash`, `lock` and `approve` meet FIFOs and devices as `scan` does: named, never read (a FIFO blocked the
open and every read, /dev/zero never ends), and `hash … | head` stops without a traceback. Regressions from
the new-user trial; every command runs in a subprocess whose timeout turns a hang into a failure."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")


def airlock(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airlock.core.cli", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})}, check=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    models = tmp_path / "m"
    models.mkdir()
    (models / "ok.pkl").write_bytes(pickle.dumps([1, 2], protocol=4))
    os.mkfifo(models / "pipe")
    return models


def test_hash_names_the_fifo_and_hashes_the_rest(folder: Path) -> None:
    proc = airlock("hash", "m", cwd=folder.parent)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.endswith("  m/ok.pkl\n") and "m/pipe: not a regular file (a FIFO)" in proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
@pytest.mark.parametrize("command", [["hash"], ["lock", "-o", "lock.toml"], ["approve", "--note", "x"]])
def test_a_device_is_never_read(tmp_path: Path, command: list[str]) -> None:
    env = {"AIRLOCK_DB": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    proc = airlock(command[0], "/dev/zero", *command[1:], cwd=tmp_path, env=env)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr
    assert "/dev/zero" in proc.stderr and not (tmp_path / "lock.toml").exists()


@pytest.mark.parametrize("command", [["lock", "-o", "lock.toml"], ["approve", "--note", "x"]])
def test_a_folder_holding_a_fifo_is_not_locked_or_approved_halfway(folder: Path, command: list[str]) -> None:
    env = {"AIRLOCK_DB": f"sqlite:///{folder.parent / 'db.sqlite3'}"}
    proc = airlock(command[0], "m", *command[1:], cwd=folder.parent, env=env)
    assert proc.returncode in (1, 2) and "m/pipe" in proc.stderr and "Traceback" not in proc.stderr
    assert not (folder.parent / "lock.toml").exists()


def test_hash_into_a_closed_pipe_stops_quietly(folder: Path) -> None:
    (folder / "pipe").unlink()
    for i in range(200):
        (folder / f"f{i:03}.bin").write_bytes(os.urandom(64))
    with subprocess.Popen([sys.executable, "-m", "airlock.core.cli", "hash", "m"], cwd=folder.parent,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # as `| head -1` does
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 128 + 13 and "Traceback" not in err and "BrokenPipe" not in err
