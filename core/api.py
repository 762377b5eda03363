"""Airlock's public Python API: scan files and folders, get one `Report` per file.

    from airlock.core.api import scan_file, scan_paths

    report = scan_file("pytorch_model.bin")
    if report.severity >= Severity.HIGH: ...
    print(report.to_dict())          # the entry of `airlock scan --format json`'s "files" list

    for report in scan_paths(["models/"], jobs=4):   # each file as it finishes
        ...

This module (with `Report`, `Severity` and `Limits`) is the supported interface; every other module
of airlock.core is internal and may change. `scan_file` is a pure function of the path and its
settings: its arguments and its `Report` pickle, so a distributed map (Dask's `client.map`) can
wrap it unchanged. The command line (`airlock scan`) and the desktop app scan through it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airlock.core.file_report import Report, ScanObserver
from airlock.core.findings import Severity
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.scan_worker import WorkerScanner, file_size, scan_safely

if TYPE_CHECKING:
    from airlock.core.context import CancelledFn, ProgressFn
    from airlock.core.policy_file import UserPolicy

__all__ = ["Limits", "Report", "ScanObserver", "Severity", "load_policy", "scan_file", "scan_paths"]


def load_policy(path: str | None = None) -> UserPolicy:
    """A policy file (airlock.toml, or pyproject.toml's [tool.airlock]): the given one, else the one
    found from the current folder upward, else an empty policy. Raises
    airlock.core.policy_file.PolicyError (a ValueError) naming the bad key and its line."""
    from airlock.core.policy_file import resolve

    return resolve(path)


def scan_file(path: str | os.PathLike[str], *, policy: UserPolicy | None = None, limits: Limits | None = None,
              display_path: str | None = None, keep_tree: bool = False,
              progress: ProgressFn | None = None, cancelled: CancelledFn | None = None) -> Report:
    """Scan one file. Problems with the file (unreadable, malformed, a parser crash, a budget
    exceeded) are findings in the report; only `airlock.core.errors.Cancelled` escapes, when
    `cancelled()` returned true. `limits` defaults to `Limits()` (with the policy's budgets);
    `policy` (see `load_policy`) marks the findings it suppresses or re-rates, as `airlock scan`
    does, and its allowed globals join this process's pickle allowlist; `display_path` is the path
    the report shows (default: `path`); `progress(fraction, message)` is called along the way."""
    from airlock.core import scan
    from airlock.core.report.json_report import file_dict

    real = os.fspath(path)
    limits = _limits(limits, policy)
    result = scan.scan_file(real, real if display_path is None else display_path,
                            limits=limits, progress=progress, cancelled=cancelled)
    try:
        entry = _finish(file_dict(result), real, policy)
    except BaseException:
        result.close()
        raise
    if keep_tree:
        return Report(entry, real_path=real, result=result)
    result.close()
    return Report(entry, real_path=real)


def _limits(limits: Limits | None, policy: UserPolicy | None) -> Limits:
    limits = limits or DEFAULT_LIMITS
    if policy is None:
        return limits
    from airlock.core.policy_file import install

    install(policy)
    changed: Limits = policy.limits(limits)
    return changed


def _finish(entry: dict[str, Any], real: str, policy: UserPolicy | None) -> dict[str, Any]:
    """What the chain of custody adds to an entry, as `airlock scan` adds it: a Hugging Face
    cache's repository and revision, the policy's marks (and the hash a policy entry needs)."""
    from airlock.core.provenance.annotate import might_be_hf

    if policy is None and not might_be_hf(str(entry["path"])):
        return entry
    from airlock.core.provenance.annotate import annotate

    return next(annotate([entry], [(str(entry["path"]), real)], policy=policy, jobs=1))


# Scanning many files.

LOOKAHEAD = 4096  # files the walk runs ahead of the scan: totals for progress, not a whole listing
# Workers pay for themselves from about this much work (measured: forking two workers costs a few
# milliseconds; a small pickle scans in ~0.1 ms, a big checkpoint's header in tens of ms).
PARALLEL_MIN_FILES = 100
PARALLEL_MIN_BYTES = 64 * 1024 * 1024


def scan_paths(paths: Iterable[str | os.PathLike[str]], *, policy: UserPolicy | None = None,
               limits: Limits | None = None, jobs: int | None = 1,
               observer: ScanObserver | None = None, client: Any = None) -> Iterator[Report]:
    """Scan files and everything below folders, yielding each file's report as it finishes.

    Folders are walked while files are scanned (sorted, symlinks to files followed, symlinked
    folders not descended, a Hugging Face cache by revision); reports come in the order files
    finish, each with `index`, its place in the walk. `jobs` > 1 scans in that many worker
    processes (forked where the OS allows it); `jobs=None` chooses: one per core for 100 files or
    more (or more than 64 MiB), else one. Nothing is kept once yielded: a million files stream
    through in bounded memory. `policy` and `limits` as for `scan_file`. `client`, a
    `distributed.Client`, scans on that Dask cluster instead (airlock.core.dask_map; `jobs` unused).
    """
    limits = _limits(limits, policy)
    reports = iter_listed(_files_below(paths), limits=limits, jobs=jobs, observer=observer, client=client)
    for report in reports:
        entry = _finish(report.to_dict(), report.real_path, policy)
        yield Report(entry, index=report.index, real_path=report.real_path)


def iter_reports(paths: Iterable[str | os.PathLike[str]], *, limits: Limits, jobs: int | None = 1,
                 observer: ScanObserver | None = None) -> Iterator[Report]:
    """Internal (the CLI's): `scan_paths` without the chain of custody's additions, which the CLI
    makes itself (hashing the files in parallel for a one-document report)."""
    return iter_listed(_files_below(paths), limits=limits, jobs=jobs, observer=observer)


def iter_listed(files: Iterable[tuple[str, str]], *, limits: Limits, jobs: int | None = 1,
                observer: ScanObserver | None = None, client: Any = None) -> Iterator[Report]:
    """Internal: reports of files already listed as (path shown, path opened), e.g. a lock file's; on a
    Dask cluster when `client` is given (the one way in for `scan_paths` and `airlock scan --dask`)."""
    if client is not None:
        from airlock.core.dask_map import scan_on_cluster

        yield from scan_on_cluster(files, client, limits, observer)
        return
    walk = _Walk(files, observer)
    if jobs is None:
        jobs = _default_jobs(walk)
    if jobs > 1:
        yield from _scan_parallel(walk, jobs, limits, observer)
        return
    from airlock.core.isolate import ParserSession

    with ParserSession() as session:
        while (task := walk.next()) is not None:
            index, display, real, size = task
            if observer is not None:
                observer.started(display, size)
            with session.scanning():
                entry = scan_safely(display, real, limits)
            yield _report(entry, index, real, size, observer)


def _report(entry: dict[str, Any], index: int, real: str, size: int, observer: ScanObserver | None) -> Report:
    report = Report(entry, index=index, real_path=real)
    if observer is not None:
        observer.finished(report, size)
    return report


class _Walk:
    """The files below the paths, walked lazily LOOKAHEAD files ahead of the scan."""

    def __init__(self, files: Iterable[tuple[str, str]], observer: ScanObserver | None) -> None:
        self._files = iter(files)
        self._ahead: deque[tuple[int, str, str, int]] = deque()
        self._observer = observer
        self.found = 0
        self.found_bytes = 0
        self.complete = False

    def fill(self, ahead: int | None = None) -> None:
        ahead = LOOKAHEAD if ahead is None else ahead
        before = self.found
        while not self.complete and len(self._ahead) < ahead:
            pair = next(self._files, None)
            if pair is None:
                self.complete = True
                break
            size = file_size(pair[1])
            self._ahead.append((self.found, pair[0], pair[1], size))
            self.found += 1
            self.found_bytes += size
        if self._observer is not None and (self.found != before or self.complete):
            self._observer.found(self.found, self.found_bytes, self.complete)

    def next(self) -> tuple[int, str, str, int] | None:
        self.fill()
        return self._ahead.popleft() if self._ahead else None

    def __iter__(self) -> Iterator[tuple[int, str, str, int]]:
        while (task := self.next()) is not None:
            yield task


def files_below(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, str]]:
    """Internal: (path shown, path opened) of every file below the paths, walked lazily."""
    return _files_below(paths)


def _files_below(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, str]]:
    from airlock.core.scan import iter_files

    for path in paths:
        yield from iter_files(os.fspath(path))


def _default_jobs(walk: _Walk) -> int:
    cores = os.cpu_count() or 1
    if cores == 1:
        return 1
    walk.fill(PARALLEL_MIN_FILES)
    if walk.found >= PARALLEL_MIN_FILES or walk.found_bytes >= PARALLEL_MIN_BYTES:
        return cores
    return 1


def _scan_parallel(walk: _Walk, jobs: int, limits: Limits, observer: ScanObserver | None) -> Iterator[Report]:
    from airlock.core import parallel

    handed: dict[int, tuple[str, int]] = {}  # the files handed on and not reported yet: path, size

    def tasks() -> Iterator[tuple[int, str, str, int]]:
        for task in walk:
            handed[task[0]] = (task[2], task[3])
            yield task

    started = observer.started if observer is not None else None
    if not parallel.can_fork():
        from airlock.core.pool import scan_pooled

        for index, entry in scan_pooled(tasks(), jobs, limits, started):
            real, size = handed.pop(index, (entry["path"], 0))
            yield _report(entry, index, real, size, observer)
        return
    scanner = WorkerScanner(limits)
    try:
        for index, entry in parallel.scan_stream(tasks(), jobs, scanner, limits.memory_budget_bytes, started):
            real, size = handed.pop(index, (entry["path"], 0))
            yield _report(entry, index, real, size, observer)
    finally:
        scanner.close()  # a session of its own only if a fork failed and files were scanned here
