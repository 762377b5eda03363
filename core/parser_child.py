"""The isolated parser process's side of core/isolate.py: confine itself, then answer requests.

Started by core/isolate.py as `python -I -B -c "…child_main()"` (or `<frozen app>
--airlock-isolated-child`). It confines itself (core/confine.py) before reading anything, then reads
requests from stdin until end of input: a JSON header line {"task", "path", "options", "length"}
and `length` raw bytes (or, with a path, nothing: it reads the file), and answers each with one JSON
line on its private copy of stdout. Tasks are named, never given: a task is "module:function" in
TASKS, imported on first use (after the confinement).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airlock.core.errors import AirlockError

if TYPE_CHECKING:
    from airlock.core.confine import Confinement

# Task name -> "module:function". The function takes (data: bytes | None, path: str | None,
# options: dict) and returns a JSON-serialisable value; it raises `ChildFormatError` for input
# its library rejects.
TASKS = {
    "onnx": "airlock.core.formats.onnx:describe",
    "hdf5": "airlock.core.formats.keras:describe_hdf5",
    "probe": "airlock.core.confine:probe",  # the child reports its own confinement (tests, diagnosis)
}

# Failure kinds the caller turns into findings.
CRASH = "crash"          # the child died on a signal or exited without an answer
TIMEOUT = "timeout"      # killed after the time budget
MALFORMED = "malformed"  # the library rejected the bytes
ERROR = "error"          # the task itself failed (a bug, or memory)


class ChildFormatError(AirlockError):
    """Raised by a task when its library rejects the input (a DecodeError, an HDF5 open error)."""


def child_main() -> None:
    """Entry point of the child: confine this process, then answer requests until end of input."""
    child_serve(child_prepare())


def child_prepare() -> Confinement:
    """Confine the process and keep its standard output for answers only. Runs before any request
    is read (and, in the no-execution proof, before the audit hook: confining loads libseccomp)."""
    from airlock.core.confine import confine

    state = confine()
    # A library that prints (from C, to descriptor 1) must not garble an answer: answers go to a
    # private copy of the pipe, and descriptor 1 now leads to stderr.
    global _ANSWERS
    sys.stdout.flush()
    _ANSWERS = os.dup(1)
    os.dup2(2, 1)
    return state


_ANSWERS: int | None = None


def child_serve(state: Confinement | None = None) -> None:
    stdin = sys.stdin.buffer
    unconfined = list(state.missing) if state is not None else ["confinement (not applied)"]
    out = _ANSWERS if _ANSWERS is not None else sys.stdout.fileno()
    while True:
        line = stdin.readline()
        if not line.strip():
            return  # end of input: the scan is over (or the parent died)
        header = json.loads(line)  # written by the parent, never by a file
        path = header.get("path")
        length = header.get("length")
        data = None
        if path is None:
            data = stdin.read() if length is None else stdin.read(int(length))
            if length is not None and len(data) < int(length):
                return  # the parent went away mid-request
        answer = _answer(str(header["task"]), data, path, header.get("options") or {})
        if unconfined:
            answer["unconfined"] = unconfined
        _write_all(out, json.dumps(answer, ensure_ascii=True, default=str).encode() + b"\n")
        if length is None and path is None:
            return  # the one-request form: the input ended with the data


def _answer(task: str, data: bytes | None, path: str | None, options: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"ok": True, "result": _resolve(task)(data, path, options)}
    except ChildFormatError as exc:
        return {"ok": False, "kind": MALFORMED, "message": str(exc)}
    except MemoryError:
        return {"ok": False, "kind": ERROR, "message": "memory budget exceeded while parsing"}
    except RecursionError:
        return {"ok": False, "kind": MALFORMED, "message": "structure nested too deeply"}
    except Exception as exc:  # noqa: BLE001 - the parent turns any failure into a finding
        return {"ok": False, "kind": ERROR, "message": f"{type(exc).__name__}: {exc}"}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _resolve(task: str) -> Callable[[bytes | None, str | None, dict[str, Any]], Any]:
    module_name, _, func_name = TASKS[task].partition(":")
    func: Callable[[bytes | None, str | None, dict[str, Any]], Any] = getattr(
        importlib.import_module(module_name), func_name)
    return func


def read_input(data: bytes | None, path: str | None) -> bytes:
    """The task's bytes: given through the pipe, or read from the file (the child may read it whole)."""
    if data is not None:
        return data
    if path is None:
        raise ChildFormatError("no input")
    with open(path, "rb") as fh:
        return fh.read()
