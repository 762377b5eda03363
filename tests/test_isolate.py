"""core/isolate.py: a native parser's crash, hang or rejection in the child becomes a finding."""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import keras_files, onnx_files

from airlock.core import isolate
from airlock.core.context import ScanContext
from airlock.core.errors import Cancelled
from airlock.core.findings import Severity
from airlock.core.limits import DEFAULT_LIMITS
from airlock.core.scan import scan_bytes
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


def test_a_hanging_parser_is_killed_at_the_time_budget(monkeypatch):
    _fake_child(monkeypatch, "import time; time.sleep(60)")
    start = time.monotonic()
    result = scan_bytes(onnx_files.matmul().SerializeToString(), "m.onnx",
                        limits=DEFAULT_LIMITS.replace(time_budget_s=1.0))
    assert time.monotonic() - start < 10
    assert [f.rule for f in result.findings] == ["AIR003"] and "time budget" in result.findings[0].message


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


def test_the_child_answers_in_json_and_removes_hdf5_plugin_paths():
    ctx = ScanContext()
    source = Source.from_bytes(keras_files.h5_file(None), "m.h5", member="m.h5")
    desc = isolate.run_isolated("hdf5", source, ctx)
    assert desc["attrs"]["keras_version"] == "2.15.0"
    assert any(o["path"] == "/model_weights/dense/dense/kernel:0" for o in desc["objects"])
    assert isolate._child_env()["HDF5_PLUGIN_PATH"] == os.devnull


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
