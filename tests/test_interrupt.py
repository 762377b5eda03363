"""Stop signals during a real `airlock scan` subprocess (issue 14, "Signals and processes").

SIGINT, SIGTERM and SIGHUP must stop the workers, write the report of the files finished, marked
incomplete (JSON "interrupted": true, SARIF executionSuccessful false), exit 128 + the signal, print
no traceback and leave no process behind. The scan is paused at a known file with a file lease
(tests/leases.py): the signal lands while it waits there, whatever the machine's load.
"""

import contextlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
from pathlib import Path

import jsonschema
import leases
import pytest

pytestmark = pytest.mark.skipif(not leases.AVAILABLE, reason="pausing a scan at a file needs Linux file leases")

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json").read_text())
N_FILES = 40
HELD = 10  # the scan is paused when it opens this file


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    command = b"echo " + b"x" * 19
    evil = b"\x80\x02cposix\nsystem\nq\x00X" + struct.pack("<I", len(command)) + command + b"q\x01\x85q\x02Rq\x03."
    for i in range(N_FILES):
        data = evil if i == 3 else pickle.dumps({"step": f"{i:03d}", "pad": "x" * 10}, protocol=2)
        # Equal sizes: `--jobs 2` deals them in name order, even indices to the first worker.
        assert len(data) == len(evil)
        (root / f"f{i:03d}.pkl").write_bytes(data)
    return root


def start(*argv, **kwargs):
    kwargs.setdefault("preexec_fn", leases.stop_signals_default)
    return subprocess.Popen([sys.executable, "-m", "airlock.core.cli", "scan", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


def paused_scan(folder, *argv, workers=0, **kwargs):
    """Start a scan and return once it is blocked opening file number HELD (and, with `workers`,
    once that many worker processes exist: the one blocked may have been forked before the other)."""
    held = str(folder / f"f{HELD:03d}.pkl")
    with leases.gate() as g:
        g.hold([held])
        proc = start(*argv, str(folder), **kwargs)
        seen: set[int] = set()  # every worker seen: one may finish its share and exit meanwhile

        def enough() -> bool:
            seen.update(leases.children(proc.pid))
            return len(seen) >= workers

        with leases.killed_on_error(proc):
            leases.step_until(g, proc, [held], lambda: True)
            assert leases.wait_for(enough, proc)
        running = sorted(seen)
        yield proc, running
        # the caller has signalled it: it must finish while the file is still held
        out, err = proc.communicate(timeout=120)
        survivors = [pid for pid in running if leases.alive(pid)]
    yield out, err, survivors


def names(doc):
    return [os.path.basename(f["path"]) for f in doc["files"]]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_one_process_reports_the_files_before_the_signal(folder, sig):
    steps = paused_scan(folder, "--format", "json", "--jobs", "1")
    proc, _ = next(steps)
    os.kill(proc.pid, sig)
    out, err, _ = next(steps)
    assert proc.returncode == 128 + sig, err
    assert b"Traceback" not in err and b"interrupted by" in err
    doc = json.loads(out.decode("utf-8"))  # one document, valid UTF-8
    assert doc["interrupted"] is True and doc["signal"] == signal.Signals(sig).name
    assert names(doc) == [f"f{i:03d}.pkl" for i in range(HELD)]  # every file finished, none after
    assert doc["files"][3]["severity"] == "critical"


def test_sigterm_stops_the_workers_and_keeps_what_they_finished(folder):
    # The worker waiting on the held file is seen; the other may have finished its share and
    # exited already (not an orphan: reaped by the scan).
    steps = paused_scan(folder, "--format", "json", "--jobs", "2", workers=1)
    proc, workers = next(steps)
    assert workers
    os.kill(proc.pid, signal.SIGTERM)  # what timeout(1) and CI cancels send: to the parent only
    out, err, survivors = next(steps)
    assert proc.returncode == 143, err
    assert survivors == []  # gone before the parent exited, not left to init
    assert b"Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["signal"] == "SIGTERM"
    done = names(doc)
    assert f"f{HELD:03d}.pkl" not in done
    assert done == sorted(done) and len(done) < N_FILES  # in walk order, whatever order they finished
    assert all(f["format"] == "pickle" for f in doc["files"])  # finished entries, not crash stubs


def test_ctrl_c_to_the_process_group_prints_no_traceback(folder):
    """A terminal sends SIGINT to the whole foreground process group: workers and parent alike."""
    steps = paused_scan(folder, "--jobs", "2", "--color", "never", workers=1, start_new_session=True)
    proc, _ = next(steps)
    os.killpg(proc.pid, signal.SIGINT)
    out, err, survivors = next(steps)
    assert proc.returncode == 130, err
    assert survivors == []
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    text = out.decode("utf-8")
    assert "[CRITICAL]" in text and "f003.pkl" in text
    assert "INTERRUPTED by SIGINT" in text and "this report is incomplete" in text


def test_sarif_marks_the_run_unsuccessful(folder):
    steps = paused_scan(folder, "--format", "sarif", "--jobs", "1")
    proc, _ = next(steps)
    os.kill(proc.pid, signal.SIGHUP)
    out, err, _ = next(steps)
    assert proc.returncode == 129, err
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    invocation = doc["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False and invocation["exitSignalName"] == "SIGHUP"
    assert "incomplete" in invocation["toolExecutionNotifications"][0]["message"]["text"]
    assert len(doc["runs"][0]["artifacts"]) == HELD


def test_report_file_is_written_whole(folder, tmp_path):
    report = tmp_path / "report.json"
    steps = paused_scan(folder, "--format", "json", "--jobs", "1", "-o", str(report))
    proc, _ = next(steps)
    os.kill(proc.pid, signal.SIGTERM)
    out, _, _ = next(steps)
    assert proc.returncode == 143 and out == b""
    assert json.loads(report.read_text())["interrupted"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "report.json"]  # no temp file left


POOL = ("import sys\nfrom airlock.core import parallel\nparallel.can_fork = lambda: False  # the Windows path\n"
        "from airlock.core.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def test_spawned_pool_workers_are_stopped_too(folder):
    """Where fork does not exist, workers come from a spawn pool: SIGTERM must end them as well."""
    held = str(folder / f"f{HELD:03d}.pkl")
    with leases.gate() as g:
        g.hold([held])
        proc = subprocess.Popen([sys.executable, "-c", POOL, "scan", "--format", "json", "--jobs", "2",
                                 str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with leases.killed_on_error(proc):
            leases.step_until(g, proc, [held], lambda: True)
            workers = [pid for pid in leases.children(proc.pid) if b"spawn_main" in _cmdline(pid)]
            assert workers
            os.kill(proc.pid, signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
        survivors = [pid for pid in workers if leases.alive(pid)]
    assert proc.returncode == 143, err
    assert survivors == []
    assert b"Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True and f"f{HELD:03d}.pkl" not in names(doc)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def test_a_clean_scan_is_not_marked_interrupted(folder):
    proc = start("--format", "sarif", "--jobs", "2", str(folder))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # f003 is critical
    doc = json.loads(out)
    assert doc["runs"][0]["invocations"] == [{"executionSuccessful": True}]
    assert len(doc["runs"][0]["artifacts"]) == N_FILES


def test_the_isolated_parser_process_dies_with_the_scan(tmp_path):
    """ONNX is parsed in a child process; a signal while the scan waits for it must not orphan it.
    The child is stopped (SIGSTOP) as soon as it appears, so it cannot finish before the signal."""
    import onnx
    from fixtures import onnx_files

    path = tmp_path / "model.onnx"
    onnx.save(onnx_files.matmul(), str(path))
    for _attempt in range(5):  # the child may come and go between two looks: try again
        proc = start("--format", "json", "--jobs", "1", str(path))
        child = None
        while proc.poll() is None and child is None:  # the parser process, once it runs its own code
            found = [pid for pid in leases.children(proc.pid) if b"child_main" in _cmdline(pid)]
            child = found[0] if found else None
        if child is None:
            proc.communicate()
            continue
        try:
            os.kill(child, signal.SIGSTOP)
        except ProcessLookupError:
            proc.communicate()
            continue
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        alive = leases.alive(child)
        if alive:
            os.kill(child, signal.SIGKILL)
        assert proc.returncode == 143, err
        assert not alive, "the parser process outlived the scan"
        assert json.loads(out)["interrupted"] is True
        return
    pytest.fail("never saw the isolated parser process")


def test_a_signal_ignored_at_start_stays_ignored(folder):
    """`nohup airlock scan …` must survive the hangup: SIGHUP ignored by the caller is not handled."""
    held = str(folder / f"f{HELD:03d}.pkl")
    with leases.gate() as g:
        g.hold([held])
        proc = start("--format", "json", "--jobs", "2", str(folder),
                     preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
        with leases.killed_on_error(proc):
            leases.step_until(g, proc, [held], lambda: True)
            os.kill(proc.pid, signal.SIGHUP)  # discarded by the kernel at once: the signal is ignored
            for pid in leases.children(proc.pid):
                with contextlib.suppress(ProcessLookupError):  # a worker may have just finished
                    os.kill(pid, signal.SIGHUP)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    doc = json.loads(out)
    assert doc["interrupted"] is False and len(doc["files"]) == N_FILES


def test_hashes_of_an_interrupted_scan_belong_to_their_files(folder):
    """--hash adds each file's sha256 in file order; the files an interrupted --jobs scan finished
    are not a prefix of the list, and each must still get its own hash."""
    import hashlib

    steps = paused_scan(folder, "--format", "json", "--jobs", "2", "--hash", workers=1)
    proc, _ = next(steps)
    os.kill(proc.pid, signal.SIGTERM)
    out, err, _ = next(steps)
    assert proc.returncode == 143, err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["files"]
    for entry in doc["files"]:
        assert entry["sha256"] == hashlib.sha256(Path(entry["path"]).read_bytes()).hexdigest(), entry["path"]


DRIVER = r"""
import json, sys
from airlock.core import formats, interrupt, parallel, scan_worker
from airlock.core.limits import DEFAULT_LIMITS
formats.load_all_modules()
paths = sys.argv[1:]
tasks = ((i, p, p, 0) for i, p in enumerate(paths))
got = []
with interrupt.handle_signals():
    # One worker: the files it finished before the held one are exactly those before it.
    for index, entry in parallel.scan_stream(tasks, 1, scan_worker.WorkerScanner(DEFAULT_LIMITS),
                                             DEFAULT_LIMITS.memory_budget_bytes):
        got.append((index, entry["format"]))
    print(json.dumps({"got": sorted(got), "pending": interrupt.pending()}))
"""


def test_a_stopped_worker_sends_the_files_it_finished(folder):
    """The worker has scanned f000 … f009 and holds their results (they are sent a batch or
    16 KiB at a time); stopped by the parent's SIGTERM while it waits on f010, it sends them."""
    held = str(folder / f"f{HELD:03d}.pkl")
    paths = [str(folder / f"f{i:03d}.pkl") for i in range(N_FILES)]
    with leases.gate() as g:
        g.hold([held])
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, *paths], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        with leases.killed_on_error(proc):
            leases.step_until(g, proc, [held], lambda: True)
            workers = leases.children(proc.pid)
            os.kill(proc.pid, signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
        survivors = [pid for pid in workers if leases.alive(pid)]
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["pending"] == signal.SIGTERM
    assert result["got"] == [[i, "pickle"] for i in range(HELD)]
    assert workers and survivors == []


def test_jsonl_keeps_the_lines_of_the_files_finished(folder, tmp_path):
    out_file = tmp_path / "lines.jsonl"
    steps = paused_scan(folder, "--format", "jsonl", "--jobs", "1", "-o", str(out_file))
    proc, _ = next(steps)
    os.kill(proc.pid, signal.SIGTERM)
    _, err, _ = next(steps)
    assert proc.returncode == 143, err
    lines = out_file.read_text().splitlines()
    assert [os.path.basename(json.loads(line)["path"]) for line in lines] == [f"f{i:03d}.pkl" for i in range(HELD)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lines.jsonl", "models"]
