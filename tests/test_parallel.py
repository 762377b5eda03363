"""`airlock scan --jobs N` on forked workers: same report as one process, no file lost when a worker
dies, and files streaming through (scanned while the walk goes on, yielded as they finish)."""

import json
import os
import pickle
import signal

import pytest

from airlock.core import api, cli, parallel, scan, scan_worker

pytestmark = pytest.mark.skipif(not parallel.can_fork(), reason="the fork runner exists only where os.fork does")

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."


@pytest.fixture
def folder(tmp_path):
    for i in range(12):
        (tmp_path / f"state_{i:02d}.pkl").write_bytes(pickle.dumps({"step": i, "names": ["a"] * i}, protocol=4))
    (tmp_path / "state_05.pkl").write_bytes(EVIL)
    return tmp_path


def scan_cli(capsys, *argv):
    code = cli.main(["scan", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)["files"]


def test_workers_report_every_file_once_in_order(folder, capsys):
    _, one = scan_cli(capsys, "--jobs", "1", str(folder))
    code, three = scan_cli(capsys, "--jobs", "3", str(folder))
    assert three == one
    assert code == 1 and [f["path"] for f in three] == sorted(str(p) for p in folder.iterdir())


@pytest.mark.parametrize("death", ["exit", "kill"])
def test_a_dying_worker_loses_no_file(folder, capsys, monkeypatch, death):
    """The worker dies on one file (a parser crash, the OOM killer): that file is a finding and
    every other file, including those the dead worker had not reached, is still scanned."""
    real = scan_worker.scan_entry

    def dies_on_state_07(display, path, limits):
        if display.endswith("state_07.pkl"):
            if death == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)
        return real(display, path, limits)

    monkeypatch.setattr(scan_worker, "scan_entry", dies_on_state_07)
    code, files = scan_cli(capsys, "--jobs", "2", str(folder))
    by_name = {os.path.basename(f["path"]): f for f in files}
    assert sorted(by_name) == sorted(p.name for p in folder.iterdir())
    assert len(files) == len(by_name)  # each once
    crashed = by_name["state_07.pkl"]
    assert crashed["severity"] == "high" and "worker process died" in crashed["findings"][0]["message"]
    assert by_name["state_05.pkl"]["severity"] == "critical"
    assert all(f["format"] == "pickle" for name, f in by_name.items() if name != "state_07.pkl")
    assert code == 1


def test_an_exception_in_a_worker_is_a_finding_for_that_file(folder, capsys, monkeypatch):
    real = scan_worker.scan_entry

    def raises_on_state_03(display, path, limits):
        if display.endswith("state_03.pkl"):
            raise RuntimeError("parser bug")
        return real(display, path, limits)

    monkeypatch.setattr(scan_worker, "scan_entry", raises_on_state_03)
    for jobs in ("1", "2"):
        _, files = scan_cli(capsys, "--jobs", jobs, str(folder))
        by_name = {os.path.basename(f["path"]): f for f in files}
        assert "RuntimeError: parser bug" in by_name["state_03.pkl"]["findings"][0]["message"]
        assert by_name["state_03.pkl"]["severity"] == "high"
        assert by_name["state_04.pkl"]["format"] == "pickle"


def _with_pid(monkeypatch):
    real = scan_worker.scan_entry

    def scan_and_say_who(display, path, limits):
        return {**real(display, path, limits), "pid": os.getpid()}

    monkeypatch.setattr(scan_worker, "scan_entry", scan_and_say_who)


def test_the_last_files_are_spread_over_every_worker(folder, monkeypatch):
    _with_pid(monkeypatch)
    pids = {r.to_dict()["pid"] for r in api.scan_paths([folder], jobs=3)}
    assert len(pids) == 3 and os.getpid() not in pids


def test_default_jobs(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.pkl").write_bytes(b"N.")
    assert api._default_jobs(api._Walk(api._files_below([tmp_path]), None)) == 1
    for i in range(3, api.PARALLEL_MIN_FILES):
        (tmp_path / f"{i}.pkl").write_bytes(b"N.")
    assert api._default_jobs(api._Walk(api._files_below([tmp_path]), None)) == (os.cpu_count() or 1)


def test_when_the_os_cannot_fork_the_files_are_scanned_here(folder, capsys, monkeypatch):
    _, expected = scan_cli(capsys, "--jobs", "1", str(folder))

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    code, files = scan_cli(capsys, "--jobs", "2", str(folder))
    assert files == expected and code == 1


def test_where_the_os_has_no_fork_a_spawned_pool_scans(folder, capsys, monkeypatch):
    _, expected = scan_cli(capsys, "--jobs", "1", str(folder))
    monkeypatch.setattr(parallel, "can_fork", lambda: False)
    code, files = scan_cli(capsys, "--jobs", "2", str(folder))
    assert files == expected and code == 1


# Streaming: results come while the walk goes on; nothing waits for the whole listing.

class _RecordingWalk:
    """Stands in for scan.iter_files: yields `count` names of one real file, recording how far
    the walk has got each time a report reaches the consumer."""

    def __init__(self, real, count):
        self.real, self.count, self.walked = str(real), count, 0

    def __call__(self, path):
        for i in range(self.count):
            self.walked += 1
            yield f"{path}/virtual_{i:05d}.pkl", self.real


@pytest.mark.parametrize("jobs", [1, 2])
def test_reports_are_yielded_before_the_walk_ends(tmp_path, monkeypatch, jobs):
    real = tmp_path / "one.pkl"
    real.write_bytes(pickle.dumps([1, 2, 3]))
    walk = _RecordingWalk(real, 3000)
    monkeypatch.setattr(scan, "iter_files", walk)
    monkeypatch.setattr(api, "LOOKAHEAD", 16)
    ahead = []  # files walked but not yet reported, each time a report arrives
    reports = 0
    for report in api.scan_paths(["walk"], jobs=jobs):
        reports += 1
        ahead.append(walk.walked - reports)
        assert report.format == "pickle"
    assert reports == walk.count
    # The first report came when only a small part of the folder was walked, and the walk never
    # ran further ahead than the look-ahead plus the workers' queues: memory does not grow with
    # the number of files.
    bound = api.LOOKAHEAD + (jobs * 2 * parallel.BATCH_FILES + 2 * jobs * parallel.BATCH_FILES if jobs > 1 else 0)
    assert ahead[0] <= bound
    assert max(ahead) <= bound


def test_the_consumer_stopping_early_kills_the_workers(tmp_path, monkeypatch):
    real = tmp_path / "one.pkl"
    real.write_bytes(pickle.dumps([1]))
    monkeypatch.setattr(scan, "iter_files", _RecordingWalk(real, 2000))
    _with_pid(monkeypatch)
    reports = api.scan_paths(["walk"], jobs=2)
    pids = {next(reports).to_dict()["pid"] for _ in range(5)}
    reports.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already: no zombie, no orphan
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_jsonl_lines_are_the_json_entries(folder, capsys):
    _, files = scan_cli(capsys, "--jobs", "1", str(folder))
    for jobs in ("1", "2"):
        code = cli.main(["scan", "--format", "jsonl", "--jobs", jobs, str(folder)])
        lines = capsys.readouterr().out.splitlines()
        assert code == 1
        assert sorted(lines) == sorted(json.dumps(f, ensure_ascii=True) for f in files)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_jsonl_writes_each_line_while_the_walk_goes_on(tmp_path, monkeypatch, jobs):
    """The CLI keeps no list for jsonl: lines reach stdout before the folder is fully walked."""
    import io
    import sys

    real = tmp_path / "one.pkl"
    real.write_bytes(pickle.dumps([1, 2, 3]))
    walk = _RecordingWalk(real, 3000)
    monkeypatch.setattr(scan, "iter_files", walk)
    monkeypatch.setattr(api, "LOOKAHEAD", 16)

    class Recording(io.StringIO):
        walked_at_first_line = None

        def write(self, text):
            if self.walked_at_first_line is None:
                self.walked_at_first_line = walk.walked
            return super().write(text)

    out = Recording()
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main(["scan", "--format", "jsonl", "--quiet", "--jobs", jobs, str(tmp_path)]) == 0
    assert len(out.getvalue().splitlines()) == walk.count
    assert out.walked_at_first_line < walk.count // 4
