"""Run a native parser in a child process, so that its crash or hang is a finding, not a dead scan.

protobuf (ONNX) and libhdf5 (Keras .h5) are C parsers with a history of crash bugs on hostile
input. A format module names a *task*: a function `describe(data | path, limits) -> JSON value`
that runs in a fresh interpreter, imports only what it needs (the task's own module and its
library), and returns plain data. The parent builds nodes and findings from that data and never
imports the native library itself.

The protocol is JSON, both ways: one header line, then the raw bytes of an in-memory source on
stdin; one JSON document on stdout. Nothing is unpickled in either direction.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess  # imported when a parser is isolated: `airlock scan` on a pickle never is

from airlock.core.context import ScanContext
from airlock.core.errors import AirlockError
from airlock.core.source import Source

# Task name -> "module:function". The function takes (data: bytes | None, path: str | None,
# options: dict) and returns a JSON-serialisable value; it raises `ChildFormatError` for input
# its library rejects.
TASKS = {
    "onnx": "airlock.core.formats.onnx:describe",
    "hdf5": "airlock.core.formats.keras:describe_hdf5",
}

# Failure kinds the caller turns into findings.
CRASH = "crash"          # the child died on a signal or exited without an answer
TIMEOUT = "timeout"      # killed after the time budget
MALFORMED = "malformed"  # the library rejected the bytes
ERROR = "error"          # the task itself failed (a bug, or memory)

_POLL_S = 0.1
_CHILD_CODE = "from airlock.core.isolate import child_main; child_main()"


class ChildFormatError(AirlockError):
    """Raised by a task when its library rejects the input (a DecodeError, an HDF5 open error)."""


class IsolationFailure(AirlockError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def run_isolated(task: str, source: Source, ctx: ScanContext, options: dict[str, Any] | None = None,
                 *, timeout_s: float | None = None) -> Any:
    """Run `task` on the source's bytes in a child process and return its result.

    A file on disk is passed by path (the child reads it); bytes from a container member go
    through stdin. Raises `IsolationFailure` for a crash, time-out, malformed input or task error,
    and `Cancelled` (killing the child) when the user cancels.
    """
    if task not in TASKS:
        raise ValueError(f"unknown isolated task {task!r}")
    by_path = source.member is None and source.path is not None
    header = {
        "task": task,
        "path": os.fspath(source.path) if by_path and source.path is not None else None,
        "options": options or {},
        "memory": ctx.limits.memory_budget_bytes,
    }
    payload = json.dumps(header).encode() + b"\n"
    if not by_path:
        payload += bytes(source.buffer[: source.size])
    budget = ctx.limits.time_budget_s if timeout_s is None else timeout_s
    import subprocess

    proc = subprocess.Popen(
        _command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_child_env(),
    )
    out, err = _communicate(proc, payload, budget, ctx)
    if proc.returncode != 0 or not out:
        raise IsolationFailure(CRASH, _death_message(proc.returncode, err))
    try:
        answer = json.loads(out)
    except ValueError:
        raise IsolationFailure(CRASH, "the parser process wrote an unreadable answer") from None
    if not isinstance(answer, dict) or "ok" not in answer:
        raise IsolationFailure(CRASH, "the parser process wrote an unexpected answer")
    if not answer["ok"]:
        raise IsolationFailure(str(answer.get("kind", ERROR)), str(answer.get("message", "")))
    return answer.get("result")


def _communicate(proc: subprocess.Popen[bytes], payload: bytes, budget: float,
                 ctx: ScanContext) -> tuple[bytes, bytes]:
    import subprocess
    import time

    deadline = time.monotonic() + budget
    data: bytes | None = payload
    while True:
        try:
            out, err = proc.communicate(input=data, timeout=_POLL_S)
            return out, err
        except subprocess.TimeoutExpired:
            data = None  # communicate() remembers the input it has not written yet
        try:
            ctx.check()
        except BaseException:
            _kill(proc)
            raise
        if time.monotonic() > deadline:
            _kill(proc)
            raise IsolationFailure(TIMEOUT, f"the parser did not finish within {budget:g} s") from None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    import subprocess

    proc.kill()
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _death_message(code: int | None, err: bytes) -> str:
    if code is not None and code < 0:
        try:
            import signal

            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the parser process was killed by {name}"
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
    detail = f": {tail[0][:200]}" if tail else ""
    return f"the parser process exited with status {code} and no answer{detail}"


def _command() -> list[str]:
    # -I: no user site, no PYTHONPATH, no current directory on sys.path; the installed package
    # (also an editable install, whose finder lives in site-packages) is still found.
    if getattr(sys, "frozen", False):
        return [sys.executable, "--airlock-isolated-child"]
    return [sys.executable, "-I", "-c", _CHILD_CODE]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # libhdf5 loads filter plugins from this path when a dataset names an unknown filter: point it
    # at nothing, so a file cannot make the child load a shared library.
    env["HDF5_PLUGIN_PATH"] = os.devnull
    env.pop("PYTHONSTARTUP", None)
    return env


# The child side.


def child_main() -> None:
    """Entry point of the child: read the request, run the task, print one JSON answer."""
    stdin = sys.stdin.buffer
    header = json.loads(stdin.readline())
    _limit_memory(int(header.get("memory", 0)))
    path = header.get("path")
    data = None if path is not None else stdin.read()
    try:
        func = _resolve(str(header["task"]))
        result = func(data, path, header.get("options") or {})
        answer: dict[str, Any] = {"ok": True, "result": result}
    except ChildFormatError as exc:
        answer = {"ok": False, "kind": MALFORMED, "message": str(exc)}
    except MemoryError:
        answer = {"ok": False, "kind": ERROR, "message": "memory budget exceeded while parsing"}
    except RecursionError:
        answer = {"ok": False, "kind": MALFORMED, "message": "structure nested too deeply"}
    except Exception as exc:  # noqa: BLE001 - the parent turns any failure into a finding
        answer = {"ok": False, "kind": ERROR, "message": f"{type(exc).__name__}: {exc}"}
    out = json.dumps(answer, ensure_ascii=True, default=str)
    sys.stdout.write(out)
    sys.stdout.flush()


def _resolve(task: str) -> Callable[[bytes | None, str | None, dict[str, Any]], Any]:
    module_name, _, func_name = TASKS[task].partition(":")
    func: Callable[[bytes | None, str | None, dict[str, Any]], Any] = getattr(
        importlib.import_module(module_name), func_name)
    return func


def _limit_memory(budget: int) -> None:
    if budget <= 0:
        return
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard == resource.RLIM_INFINITY or hard > budget:
            resource.setrlimit(resource.RLIMIT_DATA, (budget, hard))
    except (ImportError, ValueError, OSError):
        pass  # not on this platform; the time budget still bounds the child


def read_input(data: bytes | None, path: str | None) -> bytes:
    """The task's bytes: given on stdin, or read from the file (the child may read it whole)."""
    if data is not None:
        return data
    if path is None:
        raise ChildFormatError("no input")
    with open(path, "rb") as fh:
        return fh.read()
