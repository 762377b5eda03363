"""`airlock scan --jobs N` on forked workers: same report as one process, no file lost when a worker dies."""

import json
import os
import pickle
import signal

import pytest

from airlock.core import cli, parallel

pytestmark = pytest.mark.skipif(not parallel.can_fork(), reason="the fork runner exists only where os.fork does")

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."


@pytest.fixture
def folder(tmp_path):
    for i in range(12):
        (tmp_path / f"state_{i:02d}.pkl").write_bytes(pickle.dumps({"step": i, "names": ["a"] * i}, protocol=4))
    (tmp_path / "state_05.pkl").write_bytes(EVIL)
    return tmp_path


def scan(capsys, *argv):
    code = cli.main(["scan", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)["files"]


def test_workers_report_every_file_once_in_order(folder, capsys):
    _, one = scan(capsys, "--jobs", "1", str(folder))
    code, three = scan(capsys, "--jobs", "3", str(folder))
    assert three == one
    assert code == 1 and [f["path"] for f in three] == sorted(str(p) for p in folder.iterdir())


@pytest.mark.parametrize("death", ["exit", "kill"])
def test_a_dying_worker_loses_no_file(folder, capsys, monkeypatch, death):
    """The worker dies on one file (a parser crash, the OOM killer): that file is a finding and
    every other file, including those the dead worker had not reached, is still scanned."""
    real = cli._scan_one

    def dies_on_state_07(display, path, limits):
        if display.endswith("state_07.pkl"):
            if death == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)
        return real(display, path, limits)

    monkeypatch.setattr(cli, "_scan_one", dies_on_state_07)
    code, files = scan(capsys, "--jobs", "2", str(folder))
    by_name = {os.path.basename(f["path"]): f for f in files}
    assert sorted(by_name) == sorted(p.name for p in folder.iterdir())
    crashed = by_name["state_07.pkl"]
    assert crashed["severity"] == "high" and "worker process died" in crashed["findings"][0]["message"]
    assert by_name["state_05.pkl"]["severity"] == "critical"
    assert all(f["format"] == "pickle" for name, f in by_name.items() if name != "state_07.pkl")
    assert code == 1


def test_an_exception_in_a_worker_is_a_finding_for_that_file(folder, capsys, monkeypatch):
    real = cli._scan_one

    def raises_on_state_03(display, path, limits):
        if display.endswith("state_03.pkl"):
            raise RuntimeError("parser bug")
        return real(display, path, limits)

    monkeypatch.setattr(cli, "_scan_one", raises_on_state_03)
    _, files = scan(capsys, "--jobs", "2", str(folder))
    by_name = {os.path.basename(f["path"]): f for f in files}
    assert "RuntimeError: parser bug" in by_name["state_03.pkl"]["findings"][0]["message"]
    assert by_name["state_04.pkl"]["format"] == "pickle"


def test_the_biggest_files_go_to_different_workers():
    shares = parallel.deal([1, 100, 2, 50, 3], 2)
    assert sorted(i for share in shares for i in share) == [0, 1, 2, 3, 4]
    assert {shares[0][0], shares[1][0]} == {1, 3}
    assert parallel.deal([5], 4) == [[0]]  # no idle worker is started


def test_default_jobs(tmp_path):
    small = [(str(tmp_path / "a"), str(tmp_path / "a"))] * 3
    (tmp_path / "a").write_bytes(b"N.")
    assert cli._default_jobs(small) == 1
    many = small * 40
    assert cli._default_jobs(many) == (os.cpu_count() or 1)


def test_when_the_os_cannot_fork_the_files_are_scanned_here(folder, capsys, monkeypatch):
    _, expected = scan(capsys, "--jobs", "1", str(folder))

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    code, files = scan(capsys, "--jobs", "2", str(folder))
    assert files == expected and code == 1
