"""core/isolate.py: a native parser's crash, hang or rejection in the child becomes a finding, and
a scan reuses one child for its files (replaced after any failure and after MAX_REQUESTS files)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fixtures import keras_files, onnx_files

from airlock.core import isolate
from airlock.core.context import ScanContext
from airlock.core.errors import Cancelled
from airlock.core.findings import Severity
from airlock.core.limits import DEFAULT_LIMITS
from airlock.core.scan import scan_bytes, scan_file
from airlock.core.source import Source


def _fake_child(monkeypatch, code):
    monkeypatch.setattr(isolate, "_command", lambda: [sys.executable, "-c", code])


@pytest.mark.parametrize("data", [onnx_files.matmul().SerializeToString(), keras_files.h5_file(None)],
                         ids=["onnx", "hdf5"])
def test_a_crashing_parser_is_a_high_finding(monkeypatch, data):
    _fake_child(monkeypatch, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    result = scan_bytes(data, "m")
    assert [f.rule for f in result.findings] == ["AIR001"]
    assert result.severity == Severity.HIGH and "SIGSEGV" in result.findings[0].message


def test_a_hanging_parser_is_killed_at_the_time_budget(monkeypatch, tmp_path):
    # The child notes its pid, then "hangs"; had the scan waited for it, it would have noted its waking.
    log = tmp_path / "child.log"
    _fake_child(monkeypatch, f"import os, time; log = open({str(log)!r}, 'a', buffering=1); "
                             "log.write(f'{os.getpid()}\\n'); time.sleep(60); log.write('woke\\n')")
    result = scan_bytes(onnx_files.matmul().SerializeToString(), "m.onnx",
                        limits=DEFAULT_LIMITS.replace(time_budget_s=1.0))
    assert [f.rule for f in result.findings] == ["AIR003"] and "time budget" in result.findings[0].message
    lines = log.read_text().split() if log.exists() else []  # a loaded machine may kill it before it writes
    assert "woke" not in lines  # it never finished its sleep: the scan did not wait for it
    for pid in lines:  # killed and reaped: the pid no longer names a live process of ours
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_a_task_time_out_of_its_own(monkeypatch):
    _fake_child(monkeypatch, "import time; time.sleep(60)")
    with pytest.raises(isolate.IsolationFailure) as info:
        isolate.run_isolated("onnx", Source.from_bytes(b"x", "x", member="x"), ScanContext(), timeout_s=0.5)
    assert info.value.kind == isolate.TIMEOUT


def test_a_silent_exit_is_a_crash(monkeypatch):
    _fake_child(monkeypatch, "import sys; sys.stderr.write('boom\\n'); sys.exit(3)")
    result = scan_bytes(onnx_files.matmul().SerializeToString(), "m.onnx")
    assert result.findings[0].rule == "AIR001" and "status 3" in result.findings[0].message
    assert "boom" in result.findings[0].message


def test_an_answer_that_is_not_json_is_a_crash(monkeypatch):
    _fake_child(monkeypatch, "import sys; sys.stdin.readline(); print('hello'); sys.stdout.flush()")
    with pytest.raises(isolate.IsolationFailure) as info:
        isolate.run_isolated("onnx", Source.from_bytes(b"x", "x", member="x"), ScanContext())
    assert info.value.kind == isolate.CRASH and "unreadable" in info.value.message


def test_cancel_kills_the_child(monkeypatch, tmp_path):
    pid_file = tmp_path / "pid"
    _fake_child(monkeypatch, f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)")
    ticks = iter(range(1000))
    ctx = ScanContext(cancelled=lambda: next(ticks) > 5)
    source = Source.from_bytes(b"x", "x", member="m")
    with pytest.raises(Cancelled):
        isolate.run_isolated("onnx", source, ctx)
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    if pid is not None:  # the child was reaped: the pid no longer names a live process of ours
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_child_answers_in_json():
    ctx = ScanContext()
    source = Source.from_bytes(keras_files.h5_file(None), "m.h5", member="m.h5")
    desc = isolate.run_isolated("hdf5", source, ctx)
    assert desc["attrs"]["keras_version"] == "2.15.0"
    assert any(o["path"] == "/model_weights/dense/dense/kernel:0" for o in desc["objects"])
    assert not ctx.findings  # fully confined here: no note


def test_malformed_input_is_reported_as_malformed():
    ctx = ScanContext()
    with pytest.raises(isolate.IsolationFailure) as info:
        isolate.run_isolated("hdf5", Source.from_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "x", member="x"), ctx)
    assert info.value.kind == isolate.MALFORMED


def test_unknown_task_is_refused():
    with pytest.raises(ValueError):
        isolate.run_isolated("pickle", Source.from_bytes(b"", "x"), ScanContext())


def test_signal_names_in_messages():
    assert "SIGKILL" in isolate._death_message(-signal.SIGKILL, b"")


def test_a_member_bigger_than_a_pipe_goes_through_whole():
    """Bytes of a container member are written while the answer is read (no deadlock at 64 KiB)."""
    import numpy as np
    from onnx import numpy_helper

    big = numpy_helper.from_array(np.ones((1024, 1024), dtype=np.float32), "w")  # 4 MiB
    data = onnx_files.model([], [big]).SerializeToString()
    desc = isolate.run_isolated("onnx", Source.from_bytes(data, "m.onnx", member="a.zip!m.onnx"), ScanContext())
    assert desc["graph"]["initializers"][0]["raw"] == 4 * 1024 * 1024


def test_a_file_given_by_a_relative_path_is_found(tmp_path, monkeypatch):
    """The child works in a folder of its own: a relative path is made absolute first."""
    (tmp_path / "m.onnx").write_bytes(onnx_files.matmul().SerializeToString())
    monkeypatch.chdir(tmp_path)
    result = scan_file("m.onnx")
    try:
        assert result.format == "onnx" and result.severity <= Severity.INFO, result.findings
    finally:
        result.close()


# One child per scan, reused


def _probe(session, ctx=None):
    return session.run("probe", Source.from_bytes(b"", "p", member="p"), ctx or ScanContext())


def test_a_session_reuses_its_child():
    with isolate.ParserSession() as session:
        pids = {_probe(session)["pid"] for _ in range(5)}
        model = Source.from_bytes(onnx_files.matmul().SerializeToString(), "m.onnx", member="m")
        assert session.run("onnx", model, ScanContext())["graph"]["nodes"][0]["op_type"] == "MatMul"
        pids.add(_probe(session)["pid"])
    assert len(pids) == 1 and session.started == 1


def test_a_fresh_child_after_a_failure():
    bad = Source.from_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "x", member="x")
    with isolate.ParserSession() as session:
        first = _probe(session)["pid"]
        with pytest.raises(isolate.IsolationFailure):
            session.run("hdf5", bad, ScanContext())
        second = _probe(session)["pid"]
    assert first != second and session.started == 2


def test_a_fresh_child_after_a_time_out(tmp_path):
    fifo = tmp_path / "endless.onnx"
    os.mkfifo(fifo)  # nobody writes it: the child's read never returns
    with isolate.ParserSession() as session:
        first = _probe(session)["pid"]
        with pytest.raises(isolate.IsolationFailure) as info:
            session.run("onnx", Source.from_bytes(b"", "endless.onnx", path=str(fifo)), ScanContext(),
                        timeout_s=0.5)
        assert info.value.kind == isolate.TIMEOUT
        second = _probe(session)["pid"]
    assert first != second and session.started == 2
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # killed and reaped


def test_a_fresh_child_after_max_requests():
    with isolate.ParserSession(max_requests=3) as session:
        pids = [_probe(session)["pid"] for _ in range(7)]
    assert len(set(pids)) == 3 and session.started == 3
    assert pids[0] == pids[2] != pids[3] == pids[5] != pids[6]


def test_a_crash_does_not_lose_the_next_file(monkeypatch):
    """The child dies on one file: that file is a finding, the next one gets a new child."""
    with isolate.ParserSession() as session:
        first = _probe(session)["pid"]
        os.kill(first, signal.SIGKILL)
        with pytest.raises(isolate.IsolationFailure) as info:
            _probe(session)
        assert info.value.kind == isolate.CRASH and "SIGKILL" in info.value.message
        assert _probe(session)["pid"] != first


def test_a_forked_process_does_not_use_its_parents_child():
    with isolate.ParserSession() as session, session.scanning():
        parent_child = _probe(session)["pid"]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the fork: run_isolated must start a child of its own
            try:
                seen = isolate.run_isolated("probe", Source.from_bytes(b"", "p", member="p"), ScanContext())["pid"]
                os.write(write, str(seen).encode())
            finally:
                os._exit(0)
        os.close(write)
        seen = int(os.read(read, 100) or b"0")
        os.waitpid(pid, 0)
        assert seen and seen != parent_child
        assert _probe(session)["pid"] == parent_child  # still serving the parent


def test_outside_a_session_each_file_gets_its_own_child():
    pids = {isolate.run_isolated("probe", Source.from_bytes(b"", "p", member="p"), ScanContext())["pid"]
            for _ in range(2)}
    assert len(pids) == 2


def test_a_note_when_the_child_could_not_confine_itself(monkeypatch):
    answer = json.dumps({"ok": True, "result": {"ir_version": 8},
                         "unconfined": ["seccomp filter (pyseccomp or libseccomp unavailable: test)"]})
    _fake_child(monkeypatch, f"import sys; sys.stdin.readline(); print({answer!r}); sys.stdout.flush()")
    ctx = ScanContext()
    assert isolate.run_isolated("probe", Source.from_bytes(b"", "p", member="p"), ctx) == {"ir_version": 8}
    assert [f.rule for f in ctx.findings] == ["ISO001"]
    assert ctx.findings[0].severity == Severity.INFO and "seccomp" in ctx.findings[0].message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_parser_dies_with_the_process_that_started_it():
    """A scan killed outright (SIGKILL, the OOM killer) leaves no parser process behind."""
    script = ("import sys; from airlock.core import isolate; from airlock.core.context import ScanContext\n"
              "from airlock.core.source import Source\n"
              "s = isolate.ParserSession()\n"
              "print(s.run('probe', Source.from_bytes(b'', 'p', member='p'), ScanContext())['pid'], flush=True)\n"
              "import time; time.sleep(120)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(owner.stdout.readline())
    assert _alive(child)
    owner.kill()
    owner.wait()
    owner.stdout.close()
    for _ in range(300):  # bounded: the kernel signals the orphan at once
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            state = next(line for line in fh if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state.split()[1]  # a zombie has ended; only its exit status is left


def test_where_pipes_cannot_be_polled_each_file_gets_a_child(monkeypatch):
    """Windows' path: one request per child, written whole, answered, then the child exits."""
    monkeypatch.setattr(isolate, "_REUSE", False)
    with isolate.ParserSession() as session:
        pids = {_probe(session)["pid"] for _ in range(3)}
        model = Source.from_bytes(onnx_files.matmul().SerializeToString(), "m.onnx", member="m")
        assert session.run("onnx", model, ScanContext())["graph"]["nodes"][0]["op_type"] == "MatMul"
    assert len(pids) == 3 and session.started == 4


def test_where_pipes_cannot_be_polled_a_crash_is_still_a_finding(monkeypatch):
    monkeypatch.setattr(isolate, "_REUSE", False)
    _fake_child(monkeypatch, "import sys; sys.stdin.buffer.read(); sys.stderr.write('gone\\n'); sys.exit(4)")
    with pytest.raises(isolate.IsolationFailure) as info:
        isolate.run_isolated("onnx", Source.from_bytes(b"x", "x", member="x"), ScanContext())
    assert info.value.kind == isolate.CRASH and "status 4" in info.value.message and "gone" in info.value.message
