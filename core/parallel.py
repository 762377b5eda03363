"""Scanning many files in forked worker processes, where the OS can fork (Linux, macOS, BSD).

A forked child starts with everything the parent imported and costs a few milliseconds, where a
`multiprocessing` pool cost ~25 ms before the first file (measured: two small files took 50 ms
with one process and 74 ms with a pool of two).

The files stream through: the parent walks the folders while the workers scan, hands each worker
small batches of files as it needs them (a pipe per worker: one JSON line per batch), and yields
each result as it arrives (`index<TAB>entry` lines on a second pipe), so a million-file scan
holds neither the whole listing nor the results. A worker that dies loses only the files it had
been given and not reported: each is scanned again alone in a fresh worker, so that the file that
kills one is a finding and no other file is lost; a new worker takes over the dead one's place.

Stop signals (core/interrupt.py): each worker leads its own process group (with the parser process
it starts) and ignores Ctrl-C, which reaches the whole terminal process group: the parent decides.
While workers run, a first SIGINT/SIGTERM/SIGHUP is only recorded and wakes the parent, which then
stops walking and dispatching, sends SIGTERM to every worker group, yields what the workers report
as they stop (each sends the entries it finished before exiting), kills what is left after
STOP_GRACE_S, and returns: none outlives the scan. A second signal stops everything at once.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from airlock.core import interrupt

# (index in the walk, path to show, path to open, size in bytes)
Task = tuple[int, str, str, int]
_SEND_BYTES = 16 * 1024
BATCH_FILES = 32  # files per batch at most; fewer near the end, so that every worker gets some
BATCH_BYTES = 64 * 1024 * 1024  # a batch closes once it holds this much (a big file goes alone)
STOP_GRACE_S = 3.0  # after a stop signal: how long workers get to send what they finished


class Scanner(Protocol):
    """What a worker runs per file (`scanner(display, real) -> report entry`); `close()` once the
    worker is done; `forget_parent()` in a fresh fork, to let go of what the parent had open."""

    def __call__(self, display: str, real: str) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def forget_parent(self) -> None: ...


def can_fork() -> bool:
    return hasattr(os, "fork")


class _Worker:
    __slots__ = ("batches", "in_flight", "outbox", "pid", "results", "tasks", "unread")

    def __init__(self, pid: int, tasks: int, results: int) -> None:
        self.pid = pid
        self.tasks = tasks        # the parent writes batches here (-1 once closed: no more work)
        self.results = results    # and reads entries here
        self.batches = 0          # batches given and not finished
        self.in_flight: dict[int, tuple[str, str]] = {}  # files given, not yet reported
        self.outbox = bytearray()  # batches not yet written (the pipe was full)
        self.unread = bytearray()  # a result line not complete yet


def scan_stream(tasks: Iterator[Task], jobs: int, scanner: Scanner, memory_budget: int,
                dispatched: Callable[[str, int], None] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, entry) for every task, in the order they finish; `dispatched(path, size)` as each
    file is handed to a worker. Closing the generator early (or an exception in the caller) kills
    the workers. After a stop signal it yields what the workers finished and ends early (the caller
    sees `interrupt.pending()`)."""
    queue: deque[Task] = deque()
    workers: dict[int, _Worker] = {}  # by results descriptor
    exhausted = False
    lookahead = jobs * 2 * BATCH_FILES
    stop_at: float | None = None  # set once a stop signal is seen: when to kill what is left
    killed = False
    # Signals are only recorded while workers run, also while the caller handles a result: the
    # workers must be stopped by us, and what they finished must not be lost (a second signal
    # still raises at once).
    try:
        with interrupt.deferred(raise_after=False), selectors.DefaultSelector() as selector:
            wake = interrupt.wakeup_fd()
            if wake is not None:
                selector.register(wake, selectors.EVENT_READ, _WAKE)
            while True:
                if interrupt.pending() is not None and stop_at is None:
                    stop_at = _stop_all(workers, queue, selector)
                    exhausted = True
                elif stop_at is not None and not killed and time.monotonic() >= stop_at:
                    signal_workers([w.pid for w in workers.values()], signal.SIGKILL)
                    killed, stop_at = True, time.monotonic() + STOP_GRACE_S
                elif killed and stop_at is not None and time.monotonic() >= stop_at:
                    return  # a killed worker's pipe still open (held by another process): give up
                while not exhausted and len(queue) < lookahead:
                    task = next(tasks, None)
                    if task is None:
                        exhausted = True
                    else:
                        queue.append(task)
                for worker in workers.values():
                    _top_up(worker, queue, jobs, exhausted, selector, dispatched)
                while queue and len(workers) < jobs:
                    batch = _batch(queue, jobs, exhausted, dispatched)
                    started = _start(scanner, memory_budget, workers)
                    if started is None:  # out of processes or descriptors: scanned here
                        yield from ((i, _scan_safely(scanner, d, r)) for i, d, r in batch)
                        continue
                    workers[started.results] = started
                    selector.register(started.results, selectors.EVENT_READ)
                    _give(started, batch, selector)
                    _top_up(started, queue, jobs, exhausted, selector, dispatched)
                if exhausted and not queue:
                    for worker in workers.values():
                        if not worker.in_flight and not worker.outbox and worker.tasks >= 0:
                            os.close(worker.tasks)  # end of its input: it finishes and exits
                            worker.tasks = -1
                if not workers:
                    if queue or not exhausted:
                        continue
                    return
                timeout = None if stop_at is None else max(0.0, stop_at - time.monotonic())
                for key, _events in selector.select(timeout):
                    if key.data == _WAKE:
                        interrupt.drain_wakeup()
                        continue
                    found = workers.get(key.data if key.data is not None else key.fd)
                    if found is None:  # it ended while this batch of events was handled
                        continue
                    worker = found
                    if key.data is not None:  # a task pipe with room again
                        _flush(worker, selector)
                        continue
                    chunk = os.read(key.fd, 1 << 16)
                    if chunk:
                        yield from _received(worker, chunk)
                        continue
                    # End of the worker's results: it finished, or died.
                    selector.unregister(key.fd)
                    if worker.outbox:
                        selector.unregister(worker.tasks)
                    del workers[key.fd]
                    _close(worker)
                    os.waitpid(worker.pid, 0)
                    if stop_at is not None:
                        continue  # stopped by us: the files it had not finished are not scanned
                    for index, (display, real) in worker.in_flight.items():
                        entry = _scan_alone(display, real, scanner, memory_budget, workers)
                        yield index, entry if entry is not None else crash_entry(display, WORKER_DIED)
    finally:
        # Only on an early end (a finished worker is reaped above): each worker's whole group is
        # killed, its parser process too, before it is reaped (a reaped pid's group is reusable).
        signal_workers([w.pid for w in workers.values()], signal.SIGKILL)
        for worker in workers.values():
            _close(worker)
            os.waitpid(worker.pid, 0)


_WAKE = -1  # the selector key data of the signal wake-up descriptor


def _stop_all(workers: dict[int, _Worker], queue: deque[Task], selector: selectors.BaseSelector) -> float:
    """A stop signal: nothing more is walked or handed out, every worker is asked to stop."""
    queue.clear()
    for worker in workers.values():
        if worker.tasks >= 0:
            if worker.outbox:
                selector.unregister(worker.tasks)
                worker.outbox.clear()
            os.close(worker.tasks)
            worker.tasks = -1
    signal_workers([w.pid for w in workers.values()], signal.SIGTERM)
    return time.monotonic() + STOP_GRACE_S


def signal_workers(pids: list[int], sig: int) -> None:
    """Send `sig` to each worker's process group (the worker and any process it started)."""
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except OSError:
            try:
                os.kill(pid, sig)  # its own group could not be set up
            except OSError:
                pass  # already gone


def _own_group(pid: int) -> None:
    """A worker leads its own process group; set by both sides of the fork, so that neither acts
    before it is done."""
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass  # the child already did it, or is gone


def _batch(queue: deque[Task], jobs: int, exhausted: bool,
           dispatched: Callable[[str, int], None] | None = None) -> list[tuple[int, str, str]]:
    # Near the end, batches shrink so that the last files are spread over every worker.
    size = BATCH_FILES if not exhausted else max(1, min(BATCH_FILES, -(-len(queue) // (2 * jobs))))
    batch: list[tuple[int, str, str]] = []
    total = 0
    while queue and len(batch) < size and total < BATCH_BYTES:
        index, display, real, nbytes = queue.popleft()
        batch.append((index, display, real))
        total += nbytes
        if dispatched is not None:
            dispatched(display, nbytes)
    return batch


def _top_up(worker: _Worker, queue: deque[Task], jobs: int, exhausted: bool, selector: selectors.BaseSelector,
            dispatched: Callable[[str, int], None] | None) -> None:
    """Keep a second batch waiting in the worker's pipe, so that it never idles between batches."""
    while queue and worker.batches < 2 and worker.tasks >= 0:
        _give(worker, _batch(queue, jobs, exhausted, dispatched), selector)


def _give(worker: _Worker, batch: list[tuple[int, str, str]], selector: selectors.BaseSelector) -> None:
    for index, display, real in batch:
        worker.in_flight[index] = (display, real)
    worker.batches += 1
    waiting = bool(worker.outbox)
    worker.outbox += json.dumps(batch, ensure_ascii=True).encode() + b"\n"
    if not waiting:
        _flush(worker, selector, registered=False)


def _flush(worker: _Worker, selector: selectors.BaseSelector, *, registered: bool = True) -> None:
    try:
        written = os.write(worker.tasks, worker.outbox)
    except BlockingIOError:
        written = 0
    except OSError:  # the worker is gone: its results pipe will say so
        written = len(worker.outbox)
    del worker.outbox[:written]
    if worker.outbox and not registered:
        selector.register(worker.tasks, selectors.EVENT_WRITE, worker.results)
    elif not worker.outbox and registered:
        selector.unregister(worker.tasks)


def _received(worker: _Worker, chunk: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    worker.unread += chunk
    *lines, rest = bytes(worker.unread).split(b"\n")
    worker.unread[:] = rest
    for line in lines:
        if not line:  # the end of a batch
            worker.batches -= 1
            continue
        index_text, _, text = line.partition(b"\t")
        try:
            index, entry = int(index_text), json.loads(text)
        except ValueError:
            continue  # cannot happen short of a bug: the file stays in flight and is scanned again
        if worker.in_flight.pop(index, None) is not None:
            yield index, entry


def _close(worker: _Worker) -> None:
    for fd in (worker.tasks, worker.results):
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def _start(scanner: Scanner, memory_budget: int, workers: dict[int, _Worker]) -> _Worker | None:
    """Fork a worker waiting for batches; None when the OS refuses (out of processes or descriptors)."""
    try:
        task_read, task_write = os.pipe()
    except OSError:
        return None
    try:
        result_read, result_write = os.pipe()
    except OSError:
        os.close(task_read)
        os.close(task_write)
        return None
    # Objects the collector would visit in a child are written to (their GC headers), which copies
    # every page they sit on: frozen, the parent's objects stay shared (measured: ~10% faster).
    gc.freeze()
    try:
        pid = os.fork()
    except OSError:
        for fd in (task_read, task_write, result_read, result_write):
            os.close(fd)
        return None
    finally:
        gc.unfreeze()
    if pid == 0:  # the child: never returns
        try:
            for other in workers.values():  # else a worker never sees the end of its input
                _close(other)
            os.close(task_write)
            os.close(result_read)
            _worker_main(task_read, result_write, scanner, memory_budget)
        finally:
            _exit_worker(1)
    _own_group(pid)
    os.close(task_read)
    os.close(result_write)
    os.set_blocking(task_write, False)
    return _Worker(pid, task_write, result_read)


def _worker_main(tasks: int, results: int, scanner: Scanner, memory_budget: int) -> None:
    code = 1
    try:
        interrupt.in_forked_worker()
        _own_group(0)
        scanner.forget_parent()
        limit_memory(memory_budget)
        unread = bytearray()
        while chunk := os.read(tasks, 1 << 16):
            unread += chunk
            *lines, rest = bytes(unread).split(b"\n")
            unread[:] = rest
            for line in lines:
                _scan_batch(json.loads(line), scanner, results)
        scanner.close()
        code = 0
    except interrupt.Interrupted:  # the parent stops us; what was finished has been sent
        scanner.close()
        code = 0
    finally:
        _exit_worker(code)


def _exit_worker(code: int) -> None:
    """os._exit: no atexit handlers, no flushing the parent's inherited stdio buffers. A stop
    signal landing here must not raise: the exception would unwind, in the worker, into the
    parent's code below the fork (its scan loop, its report). Seen under coverage, whose patched
    os._exit saves its data in Python while the parent's SIGTERM arrives."""
    for _ in range(3):
        try:
            for sig in interrupt.STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            os._exit(code)
        except BaseException:  # noqa: BLE001 - a signal caught before it was ignored: once more
            continue
    os.kill(os.getpid(), signal.SIGKILL)


def _scan_batch(batch: list[list[Any]], scanner: Scanner, out: int) -> None:
    pending = bytearray()
    try:
        for index, display, real in batch:
            entry = _scan_safely(scanner, display, real)
            pending += f"{index}\t{json.dumps(entry, ensure_ascii=True)}\n".encode()
            # Sent in pieces, not line by line: each write wakes the parent, and 1,000 wake-ups
            # cost more than the scans of 1,000 small files. A crash loses at most one piece.
            if len(pending) >= _SEND_BYTES:
                _send(out, pending)
    except interrupt.Interrupted:
        _send(out, pending, raise_after=False)  # the files finished before the signal
        raise
    pending += b"\n"  # the batch is done
    _send(out, pending)  # before waiting for the next batch: the parent waits for these


def _send(fd: int, pending: bytearray, *, raise_after: bool = True) -> None:
    # Never cut by a signal: a line is sent whole or not at all.
    with interrupt.deferred(raise_after=raise_after):
        _write_all(fd, pending)
        pending.clear()


def _scan_safely(scanner: Scanner, display: str, real: str) -> dict[str, Any]:
    try:
        return scanner(display, real)
    except MemoryError:
        return crash_entry(display, "memory budget exceeded")
    except Exception as exc:  # noqa: BLE001 - one file's failure must not lose the others
        return crash_entry(display, f"{type(exc).__name__}: {exc}")


def _scan_alone(display: str, real: str, scanner: Scanner, memory_budget: int,
                workers: dict[int, _Worker]) -> dict[str, Any] | None:
    """Scan one file in a worker of its own; None if that worker dies too."""
    worker = _start(scanner, memory_budget, workers)
    if worker is None:
        return _scan_safely(scanner, display, real)
    os.set_blocking(worker.tasks, True)
    try:
        _write_all(worker.tasks, json.dumps([(0, display, real)], ensure_ascii=True).encode() + b"\n")
    except OSError:
        pass  # it died already: no answer below
    os.close(worker.tasks)  # end of input after the one file
    data = bytearray()
    while chunk := os.read(worker.results, 1 << 16):
        data += chunk
    os.close(worker.results)
    os.waitpid(worker.pid, 0)
    _, _, text = bytes(data).partition(b"\n")[0].partition(b"\t")
    try:
        entry: dict[str, Any] = json.loads(text)
    except ValueError:
        return None
    return entry


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def limit_memory(memory_budget: int) -> None:
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard == resource.RLIM_INFINITY or hard > memory_budget:
            # RLIMIT_DATA, not RLIMIT_AS: address space limits break large read-only maps.
            resource.setrlimit(resource.RLIMIT_DATA, (memory_budget, hard))
    except (ImportError, ValueError, OSError):
        pass  # not available on this platform: the per-format size checks still apply


WORKER_DIED = "the worker process died (crash or memory budget)"


def crash_entry(display: str, why: str) -> dict[str, Any]:
    from airlock.core.report.paths import path_fields

    finding = {"rule": "AIR001", "severity": "high", "message": f"scanning worker failed: {why}",
               "offset": None, "member": None, "node": None}
    return {**path_fields(display), "format": "unknown", "severity": "high", "inspected": "none",
            "findings": [finding]}
