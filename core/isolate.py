"""Run a native parser in a confined child process, so that its crash or hang is a finding, not a dead scan.

protobuf (ONNX) and libhdf5 (Keras .h5) are C parsers with a history of crash bugs on hostile
input. A format module names a *task*: a function `describe(data | path, limits) -> JSON value`
that runs in the child, imports only what it needs (the task's own module and its library), and
returns plain data. The parent builds nodes and findings from that data and never imports the
native library itself. The child's side is core/parser_child.py: it confines itself
(core/confine.py) before it reads anything.

Starting a child costs a fresh interpreter and the library's import (0.1-0.7 s), so a scan keeps
one per scanning process (`ParserSession`, opened by airlock.core.api around a scan's files): it
serves only the files of that scan, and is replaced after any answer but a clean result (malformed,
error, memory), after a crash or time-out, and after MAX_REQUESTS files. Outside a session (the
GUI's scans, api.scan_file) a file gets a child of its own.

The protocol is JSON, both ways; nothing is unpickled in either direction. Per request the parent
writes one header line {"task", "path", "options", "length"} and then `length` raw bytes (an
in-memory source; a file on disk goes by absolute path and the child reads it); the child answers
one line {"ok": true, "result": …} or {"ok": false, "kind": …, "message": …}, with "unconfined"
listing what confinement it could not apply. End of input ends the child.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess  # imported when a parser is isolated: `airlock scan` on a pickle never is

from airlock.core.context import ScanContext
from airlock.core.errors import AirlockError
from airlock.core.findings import Rule, Severity
from airlock.core.parser_child import (  # the child's side; re-exported for the format modules
    CRASH,
    ERROR,
    MALFORMED,
    TASKS,
    TIMEOUT,
    ChildFormatError,
    child_main,
    child_prepare,
    child_serve,
    read_input,
)
from airlock.core.parser_child import _resolve as _resolve
from airlock.core.source import Source

__all__ = ["CRASH", "ERROR", "MALFORMED", "TASKS", "TIMEOUT", "ChildFormatError", "IsolationFailure",
           "IsolationIncomplete", "ParserSession", "child_main", "child_prepare", "child_serve", "read_input",
           "run_isolated"]

MAX_REQUESTS = 50  # files one child serves before a fresh one replaces it
_POLL_S = 0.1      # how often a wait looks at cancel and the file's own deadline
_GRACE_S = 5.0     # for a child told to stop (its input closed) to exit before it is killed
_CHUNK = 1 << 20
_STDERR_TAIL = 4096
_CHILD_CODE = "from airlock.core.parser_child import child_main; child_main()"
# Pipes cannot be polled on Windows: there a child answers one request and exits.
_REUSE = os.name != "nt"


class IsolationFailure(AirlockError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class IsolationIncomplete(Rule):
    id = "ISO001"
    severity = Severity.INFO
    title = "Parser process not fully confined"
    help = ("The isolated parser process could not apply every restriction (seccomp filter, resource "
            "limits, no new privileges) on this platform; it still ran in its own process.")


def run_isolated(task: str, source: Source, ctx: ScanContext, options: dict[str, Any] | None = None,
                 *, timeout_s: float | None = None) -> Any:
    """Run `task` on the source's bytes in a child process and return its result.

    A file on disk is passed by path (the child reads it); bytes from a container member go
    through the pipe. Raises `IsolationFailure` for a crash, time-out, malformed input or task
    error, and `Cancelled` (killing the child) when the user cancels.
    """
    session = _CURRENT.get()
    if session is not None and session.owner == os.getpid():
        return session.run(task, source, ctx, options, timeout_s=timeout_s)
    with ParserSession(max_requests=1) as one:
        return one.run(task, source, ctx, options, timeout_s=timeout_s)


class ParserSession:
    """The parser child of one scan in this process, reused from file to file."""

    def __init__(self, max_requests: int | None = None) -> None:
        self.max_requests = MAX_REQUESTS if max_requests is None else max_requests
        self.owner = os.getpid()  # a forked worker must never talk to its parent's child
        self.started = 0  # children started so far
        self._child: _Child | None = None

    def __enter__(self) -> ParserSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def scanning(self) -> Iterator[ParserSession]:
        """Files scanned inside this block (in this thread) use this session's child."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def close(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.stop()

    def abandon(self) -> None:
        """In a forked copy of the owner: close this copy of the child's pipes (so that the child
        still sees its owner's end of input) and leave the child to its owner."""
        child, self._child = self._child, None
        if child is not None:
            child.close_pipes()

    def run(self, task: str, source: Source, ctx: ScanContext, options: dict[str, Any] | None = None,
            *, timeout_s: float | None = None) -> Any:
        if task not in TASKS:
            raise ValueError(f"unknown isolated task {task!r}")
        memory = ctx.limits.memory_budget_bytes
        if self._child is not None and (self._child.served >= self.max_requests or self._child.exhausted
                                        or self._child.memory != memory):
            self.close()
        if self._child is None:
            self._child = _Child(memory)
            self.started += 1
        child = self._child
        budget = ctx.limits.time_budget_s if timeout_s is None else timeout_s
        try:
            answer = child.request(task, source, options or {}, budget, ctx)
        except IsolationFailure as failure:
            self._child = None
            if failure.kind == TIMEOUT:
                child.kill()
            else:
                child.stop()  # it died, or wrote something that is not an answer
            raise
        except BaseException:
            # Cancelled, or the file's own time budget ran out (ctx.check): the child is killed.
            self._child = None
            child.kill()
            raise
        child.served += 1
        if not answer["ok"] or child.served >= self.max_requests:
            self.close()  # whatever made the parser fail must not meet the next file
        missing = answer.get("unconfined")
        if isinstance(missing, list) and missing:
            ctx.report(IsolationIncomplete, "the isolated parser process ran without: "
                       + "; ".join(str(m)[:200] for m in missing[:8]), offset=0)
        if not answer["ok"]:
            raise IsolationFailure(str(answer.get("kind", ERROR)), str(answer.get("message", "")))
        return answer.get("result")


_CURRENT: contextvars.ContextVar[ParserSession | None] = contextvars.ContextVar(
    "airlock_parser_session", default=None)


class _Child:
    """One child process, answering requests in turn."""

    def __init__(self, memory: int) -> None:
        import subprocess

        from airlock.core.confine import child_environment

        self.memory = memory
        self.served = 0
        self.exhausted = False  # it has exited after its one request (where pipes cannot be polled)
        self._out = bytearray()
        self._err = bytearray()
        from airlock.core import interrupt

        # A stop signal between fork and exec would leave a child nobody kills: it is acted on
        # once the child exists (core/interrupt.py).
        with interrupt.deferred(raise_after=False):
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                _command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=child_environment(memory))
        stop = interrupt.pending()
        if stop is not None:
            self.kill()
            raise interrupt.Interrupted(stop)
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self._in_fd = self.proc.stdin.fileno()
        self._out_fd = self.proc.stdout.fileno()
        self._err_fd = self.proc.stderr.fileno()
        if _REUSE:
            os.set_blocking(self._in_fd, False)

    def request(self, task: str, source: Source, options: dict[str, Any], budget: float,
                ctx: ScanContext) -> dict[str, Any]:
        by_path = source.member is None and source.path is not None
        length = 0 if by_path else source.size
        header = {"task": task, "options": options, "length": length,
                  # absolute: the child works in a folder of its own
                  "path": os.path.abspath(os.fspath(source.path)) if by_path and source.path else None}
        chunks = _payload(json.dumps(header).encode() + b"\n", source, length)
        self._err.clear()
        if _REUSE:
            line = self._exchange(chunks, budget, ctx)
        else:
            line = self._exchange_once(b"".join(chunks), budget, ctx)
        try:
            answer = json.loads(line)
        except ValueError:
            raise IsolationFailure(CRASH, "the parser process wrote an unreadable answer") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise IsolationFailure(CRASH, "the parser process wrote an unexpected answer")
        return answer

    def _exchange(self, chunks: Iterator[bytes], budget: float, ctx: ScanContext) -> bytes:
        """Write the request while reading the answer and the child's stderr, so that no pipe fills
        up and blocks either side; look at cancel and the deadline every _POLL_S."""
        import selectors

        deadline = time.monotonic() + budget
        pending = memoryview(b"")
        with selectors.DefaultSelector() as sel:
            sel.register(self._in_fd, selectors.EVENT_WRITE)
            sel.register(self._out_fd, selectors.EVENT_READ)
            sel.register(self._err_fd, selectors.EVENT_READ)
            while b"\n" not in self._out:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise IsolationFailure(TIMEOUT, f"the parser did not finish within {budget:g} s")
                for key, _ in sel.select(min(_POLL_S, remaining)):
                    if key.fd == self._in_fd:
                        if not pending:
                            pending = memoryview(next(chunks, b""))
                            if not pending:
                                sel.unregister(self._in_fd)
                                continue
                        try:
                            pending = pending[os.write(self._in_fd, pending):]
                        except BlockingIOError:
                            pass
                        except OSError:  # the child closed its input: it died or gave up
                            sel.unregister(self._in_fd)
                    elif not self._read(key.fd):
                        sel.unregister(key.fd)
                        if key.fd == self._out_fd:
                            raise IsolationFailure(CRASH, self._died())
                ctx.check()
        line, _, rest = bytes(self._out).partition(b"\n")
        self._out[:] = rest
        return line

    def _exchange_once(self, payload: bytes, budget: float, ctx: ScanContext) -> bytes:
        import subprocess

        deadline = time.monotonic() + budget
        data: bytes | None = payload
        while True:
            try:
                out, err = self.proc.communicate(input=data, timeout=_POLL_S)
                break
            except subprocess.TimeoutExpired:
                data = None  # communicate() remembers the input it has not written yet
            ctx.check()
            if time.monotonic() > deadline:
                raise IsolationFailure(TIMEOUT, f"the parser did not finish within {budget:g} s")
        self._err += err[-_STDERR_TAIL:]
        self.exhausted = True
        if not out.strip():
            raise IsolationFailure(CRASH, self._died())
        return out.split(b"\n", 1)[0]

    def _read(self, fd: int) -> bool:
        try:
            data = os.read(fd, 1 << 16)
        except OSError:
            return False
        if fd == self._out_fd:
            self._out += data
        else:
            self._err += data
            del self._err[:-_STDERR_TAIL]
        return bool(data)

    def _died(self) -> str:
        """The child closed its output without an answer: wait for its end and say how it ended."""
        import subprocess

        try:
            code = self.proc.wait(timeout=_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if _REUSE:
            with contextlib.suppress(OSError):
                while self._read(self._err_fd):
                    pass
        return _death_message(code, bytes(self._err))

    def stop(self) -> None:
        """End the child by closing its input (it exits at end of input); kill it if it lingers."""
        import subprocess

        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
        self.close_pipes()

    def kill(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=_GRACE_S)
        self.close_pipes()

    def close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _payload(header: bytes, source: Source, length: int) -> Iterator[bytes]:
    """The request's bytes, read from the source a chunk at a time (a member is never copied whole)."""
    yield header
    for offset in range(0, length, _CHUNK):
        yield source.read(offset, min(_CHUNK, length - offset))


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
    # (also an editable install, whose finder lives in site-packages) is still found. -B: the
    # child writes no bytecode (it may write no file at all).
    if getattr(sys, "frozen", False):
        return [sys.executable, "--airlock-isolated-child"]
    return [sys.executable, "-I", "-B", "-c", _CHILD_CODE]
