"""One file's scan as a worker runs it: the report entry, a crash turned into a finding, and the
per-process scanner with its own parser session.

The same code runs in this process (`scan_paths` with one job), in forked workers
(airlock.core.parallel), in a spawned pool (airlock.core.pool) and on Dask workers
(airlock.core.dask_map). It sits below all of them and below airlock.core.api, which hands files on
to them, so that none of them imports the public API back.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airlock.core.isolate import ParserSession
    from airlock.core.limits import Limits


def scan_entry(display: str, real: str, limits: Limits) -> dict[str, Any]:
    """One file's report entry (the JSON report's entry, before the chain of custody's additions)."""
    from airlock.core.report.json_report import file_dict
    from airlock.core.scan import scan_file as scan_one

    result = scan_one(real, display, limits=limits)
    try:
        return file_dict(result)
    finally:
        result.close()


def scan_safely(display: str, real: str, limits: Limits) -> dict[str, Any]:
    """`scan_entry`, with a crash or an exhausted memory budget as a finding on the file."""
    from airlock.core.parallel import crash_entry

    try:
        return scan_entry(display, real, limits)
    except MemoryError:
        return crash_entry(display, "memory budget exceeded")
    except Exception as exc:  # noqa: BLE001 - a bug on one file is a finding, never a lost scan
        return crash_entry(display, f"{type(exc).__name__}: {exc}")


def file_size(path: str) -> int:
    """The file's size for progress and batching; 0 for a URL (never looked up on disk) or a file gone."""
    from airlock.core.source import is_url

    if is_url(path):  # read by airlock.core.remote: never looked up on disk
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class WorkerScanner:
    """What a worker process runs per file, with a parser session of its own (opened in the worker,
    after the fork: a session is never shared between processes)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.session: ParserSession | None = None

    def __call__(self, display: str, real: str) -> dict[str, Any]:
        from airlock.core.isolate import ParserSession

        if self.session is None or self.session.owner != os.getpid():
            self.session = ParserSession()
        with self.session.scanning():
            return scan_entry(display, real, self.limits)

    def close(self) -> None:
        if self.session is not None and self.session.owner == os.getpid():
            self.session.close()
        self.session = None

    def forget_parent(self) -> None:
        if self.session is not None:
            self.session.abandon()  # the parent's child: its pipes closed here, the parent keeps it
            self.session = None
