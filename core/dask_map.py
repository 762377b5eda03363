"""Scan files on a Dask distributed cluster: `airlock scan --dask tcp://SCHEDULER:8786 PATHS...` and
`scan_paths(..., client=distributed.Client(...))`.

Each file (a local path the workers can read, or a URL) is one task running the same scan as
`--jobs` (airlock.core.api's entry of one file), with a parser session per worker process. Results
stream back as they finish (`as_completed`), with at most WINDOW_PER_WORKER tasks in flight per
worker thread, so a listing of millions of files is walked while it is scanned, never held whole.

A worker that dies while scanning is Dask's business first: the scheduler hands the task to another
worker, up to its `allowed-failures` (3 by default); a file that kills every worker it meets ends in
`KilledWorker`, reported for that file as a `high` "scanning worker failed" finding, as `--jobs` does.

`distributed` is the optional extra `[dask]` (`pip install 'model-airlock[dask]'`): a cluster map is
an operator's feature, and distributed with its tornado, msgpack, cloudpickle, psutil and zict tree
would weigh on every desktop and CI install that never uses it; the CLI says how to install it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airlock.core.api import Report, ScanObserver, _WorkerScanner
    from airlock.core.limits import Limits

WINDOW_PER_WORKER = 8
INSTALL_HINT = "pip install 'model-airlock[dask]'"
_SCANNER: _WorkerScanner | None = None  # this worker process's scanner (its own parser session)


def available() -> bool:
    try:
        import distributed  # noqa: F401 - only asks whether it is installed
    except ImportError:
        return False
    return True


def connect(address: str) -> Any:
    """A distributed.Client on the scheduler at `address`; its shutdown noise kept off stderr."""
    import distributed

    quiet()
    client_class: Any = distributed.Client  # distributed is untyped
    return client_class(address, timeout=30, set_as_default=False)


def quiet() -> None:
    """distributed logs a 'ConnectionPool is closed' traceback while a client shuts down, and
    chatter on connect: only errors of its own reach stderr."""
    for name in ("distributed", "distributed.client", "distributed.core", "distributed.comm",
                 "distributed.batched", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def scan_task(display: str, real: str, limits: Limits) -> dict[str, Any]:
    """What a worker runs for one file: its report entry (a scan problem is a finding, as for --jobs)."""
    from airlock.core.api import _scan_safely, _WorkerScanner
    from airlock.core.parallel import crash_entry

    global _SCANNER
    if _SCANNER is None:  # its parser session is opened (again, after a fork) by the scanner itself
        _SCANNER = _WorkerScanner(limits)
    _SCANNER.limits = limits
    try:
        return _SCANNER(display, real)
    except MemoryError:
        return crash_entry(display, "memory budget exceeded")
    except Exception:  # noqa: BLE001 - a bug on one file is a finding, never a lost scan
        return _scan_safely(display, real, limits)


def scan_on_cluster(files: Iterable[tuple[str, str]], client: Any, limits: Limits,
                    observer: ScanObserver | None = None) -> Iterator[Report]:
    """Reports of the listed (display, real) files, scanned on the cluster, as they finish."""
    import distributed

    from airlock.core.api import Report
    from airlock.core.parallel import crash_entry

    threads = sum(client.nthreads().values()) or 1
    window = WINDOW_PER_WORKER * threads
    pending: dict[Any, tuple[int, str, str]] = {}
    listing = iter(enumerate(files))
    as_completed: Any = distributed.as_completed  # distributed is untyped
    done = as_completed(loop=client.loop)

    def submit() -> bool:
        item = next(listing, None)
        if item is None:
            return False
        index, (display, real) = item
        if observer is not None:
            observer.started(display, 0)
        future = client.submit(scan_task, display, real, limits, pure=False)
        pending[future] = (index, display, real)
        done.add(future)
        return True

    while len(pending) < window and submit():
        pass
    for future in done:
        index, display, real = pending.pop(future)
        try:
            entry = future.result()
        except Exception as exc:  # noqa: BLE001 - KilledWorker, a lost connection: that file's finding
            entry = crash_entry(display, f"Dask worker died or failed on it ({type(exc).__name__}: "
                                f"{str(exc)[:200]}), after the scheduler's retries on other workers")
        report = Report(entry, index=index, real_path=real)
        if observer is not None:
            observer.finished(report, 0)
        yield report
        while len(pending) < window and submit():
            pass
