"""Pausing a real Airlock process at a chosen file, without a hook in Airlock and without timing.

A Linux write lease (fcntl F_SETLEASE) on a file makes another process's open() of it block until
the lease holder lets go (or /proc/sys/fs/lease-break-time, 45 s by default, runs out). The holder
sees the break: F_GETLEASE stops answering F_WRLCK. So a test learns exactly when a scan or a
conversion reaches a file, and signals it while it waits there, mid-work and deterministically.
A lease can only be taken while no process has the file open, and by its owner (or root).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

AVAILABLE = sys.platform.startswith("linux") and hasattr(fcntl, "F_SETLEASE")


class ProcessEnded(AssertionError):
    pass


class LeaseGate:
    def __init__(self) -> None:
        self.held: dict[str, int] = {}  # path -> descriptor holding the lease

    def take(self, path: str) -> bool:
        """Hold a write lease on `path`; False while some process has it open."""
        if path in self.held:
            return True
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        except OSError:
            os.close(fd)
            return False
        self.held[path] = fd
        return True

    def hold(self, paths: list[str]) -> None:
        for path in paths:
            assert self.take(path), f"could not lease {path}"

    def release(self, path: str) -> None:
        fd = self.held.pop(path, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
            os.close(fd)

    def release_all(self) -> None:
        for path in list(self.held):
            self.release(path)

    def broken(self) -> str | None:
        """A held file some process is now blocked opening, if any."""
        for path, fd in self.held.items():
            if fcntl.fcntl(fd, fcntl.F_GETLEASE) != fcntl.F_WRLCK:
                return path
        return None

    def wait_break(self, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
        """Block until `proc` (or a process it started) opens a held file; fail if it ends first.
        The timeout is only a safety net for a broken test, never a condition of the test."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            path = self.broken()
            if path is not None:
                return path
            if proc.poll() is not None:
                raise ProcessEnded(f"the process ended (exit {proc.returncode}) without opening a held file")
            time.sleep(0.002)
        raise AssertionError("no held file was opened in time")


@contextlib.contextmanager
def gate() -> Iterator[LeaseGate]:
    """A LeaseGate; SIGIO (how the kernel tells a holder about a break, fatal by default) ignored."""
    previous = signal.signal(signal.SIGIO, signal.SIG_IGN)
    g = LeaseGate()
    try:
        yield g
    finally:
        g.release_all()
        signal.signal(signal.SIGIO, previous)


def stop_signals_default() -> None:
    """A `preexec_fn` for a child that a test stops with SIGINT. A shell without job control starts
    background commands (`pytest &` in a script) with SIGINT ignored, children inherit that, and
    Airlock rightly keeps an ignored signal ignored (`nohup`): the child must start with the default."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@contextlib.contextmanager
def killed_on_error(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    """A test that fails mid-way leaves no process behind (nor a ResourceWarning)."""
    try:
        yield
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        raise


def step_until(g: LeaseGate, proc: subprocess.Popen[bytes], files: list[str], ready: Callable[[], bool]) -> str:
    """Walk `proc` through its opens of `files` until it blocks opening one while `ready()` holds.
    The leases must be held before the process starts (else it may open a file first).

    At each break the process is blocked in open(): the test re-takes the leases of the other files
    (possible now that the process has closed them) and lets this open go. Returns the file the
    process is then blocked on."""
    assert all(path in g.held for path in files), "take the leases before starting the process"
    while True:
        path = g.wait_break(proc)
        if ready():
            return path
        for other in files:
            if other != path:
                g.take(other)
        g.release(path)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 120.0) -> bool:
    """Poll `condition` while `proc` runs (the timeout is only a safety net for a broken test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.002)
    return condition()


def children(pid: int) -> list[int]:
    """Every process whose parent is `pid`, recursively (from /proc)."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry))
                frontier.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"
