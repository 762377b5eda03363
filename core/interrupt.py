"""Stopping cleanly on SIGINT, SIGTERM and SIGHUP: what Ctrl-C, `timeout(1)`, CI cancels and a
closed terminal send.

The CLI installs `handle_signals()` around every command. A signal then raises `Interrupted`
wherever the main thread is, so a scan or a conversion stops at once; the CLI writes what it
finished, marked incomplete, and exits 128 + the signal number, the shell's convention (130
Ctrl-C, 143 SIGTERM, 129 SIGHUP), without a traceback. `Interrupted` is a BaseException: the
`except Exception` that turns one file's failure into a finding must not swallow it.

Code that must not be cut in the middle (a `--jobs` scan while its workers run, publishing a
conversion's outputs, a worker sending its results) runs under `deferred()`: a first signal is
only recorded there, and that code asks `pending()` when it can act on it; a blocking wait inside
such a section watches `wakeup_fd()`, which becomes readable when a signal arrives. A second
signal raises at once, deferred or not: the user insists.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# The signals that ask a program to stop (SIGHUP does not exist on Windows).
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(BaseException):
    """A stop signal arrived: unwind, keep what is finished, exit with `exit_code`."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal_name(signum)}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _State:
    """Process-wide, like the signals themselves."""

    signum: int | None = None  # the first stop signal received (it decides the exit code)
    count = 0  # stop signals received: a second one means "stop now"
    defer = 0  # depth of deferred() sections
    wakeup_read: int | None = None


def pending() -> int | None:
    """The first stop signal received since `handle_signals()` was entered, if any."""
    return _State.signum


def received() -> int:
    """How many stop signals arrived (the `--jobs` parent kills its workers outright at the second)."""
    return _State.count


def wakeup_fd() -> int | None:
    """A descriptor that becomes readable when a signal arrives (inside `handle_signals()`)."""
    return _State.wakeup_read


def _handler(signum: int, frame: FrameType | None) -> None:
    if _State.signum is None:
        _State.signum = signum
    _State.count += 1
    if _State.defer == 0 or _State.count > 1:  # a second signal means now, deferred or not
        raise Interrupted(signum)


def _reset() -> None:
    _State.signum = None
    _State.count = 0
    _State.defer = 0


@contextmanager
def handle_signals() -> Iterator[None]:
    """Turn stop signals into `Interrupted` for the duration. Only the main thread can install
    signal handlers; elsewhere (a test thread, a GUI worker) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _reset()
    # A signal ignored when we started stays ignored: `nohup airlock scan` must survive a hangup.
    previous = {sig: signal.signal(sig, _handler) for sig in STOP_SIGNALS
                if signal.getsignal(sig) != signal.SIG_IGN}
    read_end, old_wakeup = _install_wakeup()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _remove_wakeup(read_end, old_wakeup)
        _reset()


def _install_wakeup() -> tuple[int | None, int]:
    """A non-blocking pipe whose write end Python's C-level handler writes the signal number to."""
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return None, -1
    try:
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        old = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (OSError, ValueError, AttributeError):
        os.close(read_end)
        os.close(write_end)
        return None, -1
    _State.wakeup_read = read_end
    return read_end, old


def _remove_wakeup(read_end: int | None, old: int) -> None:
    if read_end is None:
        return
    write_end = signal.set_wakeup_fd(old)
    _State.wakeup_read = None
    for fd in (read_end, write_end):
        try:
            os.close(fd)
        except OSError:
            pass


def drain_wakeup() -> None:
    fd = _State.wakeup_read
    if fd is None:
        return
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, OSError):
        pass


@contextmanager
def deferred(*, raise_after: bool = True) -> Iterator[None]:
    """A section a signal must not cut: signals are recorded, not raised. On leaving it, a pending
    signal raises `Interrupted` (unless `raise_after` is False: the caller looks at `pending()`)."""
    _State.defer += 1
    try:
        yield
    finally:
        _State.defer -= 1
    if raise_after and _State.defer == 0 and _State.signum is not None:
        raise Interrupted(_State.signum)


def in_forked_worker() -> None:
    """Signals in a `--jobs` worker, just after fork: Ctrl-C goes to the whole foreground process
    group, but only the parent decides (it stops its workers itself), so SIGINT is ignored; SIGTERM,
    which the parent sends, raises `Interrupted` so the worker reports what it finished. SIGHUP
    keeps the parent's disposition (ignored under nohup). A stop signal recorded before this (by
    the parent before it forked, or by the child before it got here) raises at once."""
    stop = _State.signum
    _reset()
    _State.wakeup_read = None
    try:
        signal.set_wakeup_fd(-1)  # the inherited one belongs to the parent
    except (ValueError, OSError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _handler)
    if stop is not None:
        raise Interrupted(stop)


def ignore_interactive_interrupt() -> None:
    """For pool workers (spawned, where fork does not exist): Ctrl-C reaches the whole console
    process group; the parent stops its workers, a worker must not print a KeyboardInterrupt."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass


__all__ = ["STOP_SIGNALS", "Interrupted", "deferred", "drain_wakeup", "handle_signals",
           "ignore_interactive_interrupt", "in_forked_worker", "pending", "received", "signal_name",
           "wakeup_fd"]
