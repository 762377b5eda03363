"""Scanning many files in a `multiprocessing` pool, where the OS cannot fork (Windows).

Files are sent in small batches as the walk finds them (one task per file costs more in
inter-process traffic than scanning a small pickle does), with a bounded number of batches
outstanding, and each batch's entries are yielded as it completes. When a worker dies, the pool
is broken: the files not reported yet are then scanned one per fresh single-worker pool, so that
the file that kills a worker is a finding and no other file is lost. A stop signal (raised here
by core/interrupt.py) tears the pool down at once: its workers are terminated, not waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airlock.core.limits import Limits

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

Task = tuple[int, str, str, int]
BATCH_FILES = 16


def scan_pooled(tasks: Iterator[Task], jobs: int, limits: Limits,
                dispatched: Callable[[str, int], None] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, entry) for every task, batch by batch as they complete."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    outstanding: dict[Future[list[tuple[int, dict[str, Any]]]], list[Task]] = {}
    leftover: list[Task] = []  # given to a pool that broke
    with _stopping(_pool(jobs, limits)) as pool:
        exhausted = False
        while True:
            while not exhausted and len(outstanding) < jobs * 2:
                batch = [task for _, task in zip(range(BATCH_FILES), tasks, strict=False)]
                exhausted = len(batch) < BATCH_FILES
                if batch:
                    outstanding[pool.submit(_scan_batch, [t[:3] for t in batch], limits)] = batch
                    if dispatched is not None:
                        for task in batch:
                            dispatched(task[1], task[3])
            if not outstanding:
                break
            done, _ = wait(outstanding, return_when=FIRST_COMPLETED)
            try:
                for future in done:
                    entries = future.result()
                    del outstanding[future]
                    yield from entries
            except (BrokenProcessPool, MemoryError):
                break  # a worker died: find the file that kills it, one file per worker from here
        for batch in outstanding.values():
            leftover.extend(batch)
    for task in [*leftover, *tasks]:
        yield task[0], _scan_alone(task[1], task[2], limits)


def _scan_alone(display: str, real: str, limits: Limits) -> dict[str, Any]:
    from concurrent.futures.process import BrokenProcessPool

    from airlock.core.parallel import WORKER_DIED, crash_entry

    with _stopping(_pool(1, limits)) as pool:
        try:
            return pool.submit(_scan_batch, [(0, display, real)], limits).result()[0][1]
        except BrokenProcessPool:
            return crash_entry(display, WORKER_DIED)
        except MemoryError:
            return crash_entry(display, "memory budget exceeded")


def _scan_batch(batch: list[tuple[int, str, str]], limits: Limits) -> list[tuple[int, dict[str, Any]]]:
    """Runs in a pool worker: one parser session for the batch."""
    from airlock.core import scan_worker
    from airlock.core.isolate import ParserSession

    with ParserSession() as session, session.scanning():
        return [(index, scan_worker.scan_safely(display, real, limits)) for index, display, real in batch]


def _worker_init(memory_budget: int) -> None:
    from airlock.core.interrupt import ignore_interactive_interrupt
    from airlock.core.parallel import limit_memory

    ignore_interactive_interrupt()  # Ctrl-C reaches the whole console group: the parent decides
    limit_memory(memory_budget)


@contextmanager
def _stopping(pool: ProcessPoolExecutor) -> Iterator[ProcessPoolExecutor]:
    """`with pool` waits for every queued batch when the block ends with an exception; a stop
    signal must not: queued batches are cancelled, running workers terminated and joined."""
    try:
        yield pool
    except BaseException:
        _quiet_feeder_threads()
        processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle
        manager = getattr(pool, "_executor_manager_thread", None)
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()
        if manager is not None:  # it sees the workers gone and closes its pipes before we exit
            manager.join(timeout=5)
        raise
    pool.shutdown(wait=True)


def _quiet_feeder_threads() -> None:
    """A pool torn down under its feeder thread can make that thread fail on a pipe the pool's
    manager has just closed (CPython 3.11 checks, then writes, its wake-up pipe without a lock),
    and print a traceback while the scan exits. Those errors are dropped; any other thread's
    still reaches the previous hook."""
    import threading

    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        thread = args.thread
        if isinstance(args.exc_value, OSError) and thread is not None and thread.name == "QueueFeederThread":
            return
        previous(args)

    threading.excepthook = hook


def _pool(jobs: int, limits: Limits) -> ProcessPoolExecutor:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor  # looked up here: the no-execution proof wraps it

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(limits.memory_budget_bytes,))
