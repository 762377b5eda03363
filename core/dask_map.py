"""Scan files on a Dask distributed cluster: `airlock scan --dask tcp://SCHEDULER:8786 PATHS...` and
`scan_paths(..., client=distributed.Client(...))`.

Files go in batches (up to BATCH_FILES files or BATCH_BYTES bytes per task; a URL alone; smaller
batches near the end of the listing), since a task costs a few milliseconds of scheduling, more than
the scan of a small pickle. Each task runs the same scan as `--jobs` (airlock.core.scan_worker's entry
of one file), with a parser session per worker process. Reports stream back as each batch finishes
(`as_completed`), with at most BATCHES_PER_THREAD batches in flight per worker thread, so a listing
of millions of files is walked while it is scanned, never held whole.

Every worker is guarded before its first scan (airlock.core.worker_guard: the no-execution audit hook
and the memory limit), by a WorkerPlugin registered here, which the scheduler also gives to workers
that join later.

A worker that dies while scanning is Dask's business first: the scheduler hands the task to another
worker, up to its `allowed-failures` (3 by default). A batch that still fails is scanned again one file
per task, so that a file that kills every worker it meets ends alone in `KilledWorker`, reported for
that file as a `high` "scanning worker failed" finding, as `--jobs` does, and no other file is lost.

`distributed` is the optional extra `[dask]` (`pip install 'model-airlock[dask]'`): a cluster map is
an operator's feature, and distributed with its tornado, msgpack, cloudpickle, psutil and zict tree
would weigh on every desktop and CI install that never uses it; the CLI says how to install it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airlock.core.file_report import Report
from airlock.core.scan_worker import WorkerScanner, file_size, scan_safely

if TYPE_CHECKING:
    from airlock.core.file_report import ScanObserver
    from airlock.core.limits import Limits

BATCH_FILES = 32  # files per task at most (a task costs a few ms of scheduling: small files go together)
BATCH_BYTES = 64 * 1024 * 1024  # a batch closes once it holds this much (a big file goes alone)
BATCHES_PER_THREAD = 2  # in flight per worker thread: one running, one waiting
LOOKAHEAD_BATCHES = 4  # of the listing walked ahead, per worker thread, to size the last batches
INSTALL_HINT = "pip install 'model-airlock[dask]'"
_SCANNER: WorkerScanner | None = None  # this worker process's scanner (its own parser session)


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
    """What a worker runs for one file: its report entry (a scan problem is a finding, as for --jobs),
    scanned under the worker's guard (airlock.core.worker_guard); what the guard refused during the
    scan is a high finding on the file."""
    from airlock.core import worker_guard
    from airlock.core.findings import Severity
    from airlock.core.parallel import crash_entry

    global _SCANNER
    if worker_guard.installed() is None:  # the plugin did not reach this worker: never scan unguarded
        worker_guard.install()
        worker_guard.limit_memory(limits.memory_budget_bytes)
    if _SCANNER is None:  # its parser session is opened (again, after a fork) by the scanner itself
        _SCANNER = WorkerScanner(limits)
    _SCANNER.limits = limits
    try:
        entry, refused = worker_guard.guarded_scan(_SCANNER, display, real)
    except MemoryError:
        return dict(crash_entry(display, "memory budget exceeded"))
    except Exception:  # noqa: BLE001 - a bug on one file is a finding, never a lost scan
        entry, refused = worker_guard.guarded_scan(lambda d, r: scan_safely(d, r, limits), display, real)
    entry = dict(entry)
    if refused:  # fail closed: what the guard stopped was not inspected
        severity = max(Severity.parse(str(entry.get("severity", "info"))), Severity.HIGH)
        entry["severity"] = severity.label
        entry["findings"] = [*entry.get("findings", []), worker_guard.refused_finding(refused)]
    return entry


def scan_batch(batch: list[tuple[int, str, str]], limits: Limits) -> list[tuple[int, dict[str, Any]]]:
    """What a worker runs for a batch of small files: (index, entry) of each."""
    return [(index, scan_task(display, real, limits)) for index, display, real in batch]


def guard_cluster(client: Any, memory_budget: int, record_to: str | None = None) -> None:
    """Register the worker guard on the cluster: run now on every worker, and by the scheduler on each
    worker that joins later, before its first task. A worker that cannot install it fails the scan."""
    from airlock.core.worker_guard import AirlockWorkerGuard

    plugin = AirlockWorkerGuard(memory_budget, record_to)
    replies = client.register_plugin(plugin, name=AirlockWorkerGuard.name)
    failed = {address: reply for address, reply in (replies or {}).items()
              if isinstance(reply, dict) and reply.get("status") != "OK"}
    if failed:
        address, reply = next(iter(failed.items()))
        raise RuntimeError(f"the Airlock worker guard could not be installed on {len(failed)} worker(s), "
                           f"e.g. {address}: {str(reply.get('exception', reply))[:200]}")


class _Batcher:
    """Groups the listing into batches by count and bytes; near the end of the listing batches shrink,
    so that the last files are spread over every worker thread. URLs go one per task: a remote read
    is slow, and a batch streams only when all of it is done."""

    def __init__(self, files: Iterable[tuple[str, str]], threads: int) -> None:
        self.listing = iter(enumerate(files))
        self.threads = threads
        self.queue: deque[tuple[int, str, str, int]] = deque()
        self.exhausted = False

    def next(self) -> list[tuple[int, str, str, int]]:
        from airlock.core.source import is_url

        while not self.exhausted and len(self.queue) < LOOKAHEAD_BATCHES * BATCH_FILES * self.threads:
            item = next(self.listing, None)
            if item is None:
                self.exhausted = True
            else:
                index, (display, real) = item
                self.queue.append((index, display, real, -1 if is_url(real) else file_size(real)))
        size = BATCH_FILES
        if self.exhausted:
            size = max(1, min(BATCH_FILES, -(-len(self.queue) // (2 * self.threads))))
        batch: list[tuple[int, str, str, int]] = []
        total = 0
        while self.queue and len(batch) < size and total < BATCH_BYTES:
            if self.queue[0][3] < 0 and batch:
                break  # a URL goes alone
            batch.append(self.queue.popleft())
            total += max(batch[-1][3], 0)
            if batch[-1][3] < 0:
                break
        return batch


def scan_on_cluster(files: Iterable[tuple[str, str]], client: Any, limits: Limits,
                    observer: ScanObserver | None = None) -> Iterator[Report]:
    """Reports of the listed (display, real) files, scanned on the cluster in batches, each batch's
    reports as it finishes. A batch that fails (its worker died on every retry) is scanned again one
    file per task, so that the file that kills workers is named and no other file is lost."""
    import distributed

    from airlock.core.parallel import crash_entry

    guard_cluster(client, limits.memory_budget_bytes)
    threads = sum(client.nthreads().values()) or 1
    window = BATCHES_PER_THREAD * threads
    batcher = _Batcher(files, threads)
    pending: dict[Any, tuple[list[tuple[int, str, str, int]], bool]] = {}  # future: its files, alone?
    as_completed: Any = distributed.as_completed  # distributed is untyped
    done = as_completed(loop=client.loop)

    def submit(batch: list[tuple[int, str, str, int]], *, alone: bool = False) -> None:
        if observer is not None and not alone:
            for _index, display, _real, size in batch:
                observer.started(display, max(size, 0))
        plain = [(index, display, real) for index, display, real, _size in batch]
        future = client.submit(scan_batch, plain, limits, pure=False)
        pending[future] = (batch, alone)
        done.add(future)

    def fill() -> None:
        while len(pending) < window:
            batch = batcher.next()
            if not batch:
                return
            submit(batch)

    fill()
    for future in done:
        batch, alone = pending.pop(future)
        try:
            result: list[tuple[int, dict[str, Any]]] = future.result()
        except Exception as exc:  # noqa: BLE001 - KilledWorker, a lost connection
            if not alone:
                for item in batch:  # each file of the batch again, one per task: the culprit is named
                    submit([item], alone=True)
                continue
            index, display = batch[0][0], batch[0][1]
            why = (f"Dask worker died or failed on it ({type(exc).__name__}: {str(exc)[:200]}), "
                   "after the scheduler's retries on other workers")
            result = [(index, crash_entry(display, why))]
        reals = {item[0]: item[2] for item in batch}
        for index, entry in result:
            report = Report(entry, index=index, real_path=reals[index])
            if observer is not None:
                observer.finished(report, 0)
            yield report
        fill()
