"""What a scan of one file gives back (`Report`), and what a scan of many tells its caller along the
way (`ScanObserver`). Part of the public API: airlock.core.api re-exports both. They live here, below
the API, so that the cluster map (airlock.core.dask_map), which builds Reports too, does not import
the API back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from airlock.core.findings import Severity

if TYPE_CHECKING:
    from airlock.core.scan import ScanResult


class ScanObserver(Protocol):
    """Told what `scan_paths` is doing, e.g. to draw a progress display. Every method is optional
    in spirit: implement them all, doing nothing where nothing is wanted."""

    def found(self, files: int, nbytes: int, complete: bool) -> None:
        """The walk has found `files` files of `nbytes` bytes so far (`complete`: all of them)."""

    def started(self, path: str, size: int) -> None:
        """A file was handed to a scanner (this process or a worker)."""

    def finished(self, report: Report, size: int) -> None:
        """A file's report is ready (it is yielded next)."""


class Report:
    """What Airlock found in one file.

    `to_dict()` is the file's entry in the JSON report (schema_version 1): path, format, severity
    and findings (rule, severity, message, offset, member, node), plus whatever fields the report
    format adds. `result` is the parsed tree (airlock.core.scan.ScanResult, with its file kept open)
    when `scan_file(..., keep_tree=True)` was asked for it: call `close()` when done. A pickled
    Report carries the entry only.
    """

    __slots__ = ("_entry", "index", "real_path", "result")

    def __init__(self, entry: dict[str, Any], *, index: int | None = None, real_path: str | None = None,
                 result: ScanResult | None = None) -> None:
        self._entry = entry
        self.index = index  # position in the walk of `scan_paths` (reports arrive as files finish)
        self.real_path = entry["path"] if real_path is None else real_path  # the file opened
        self.result = result

    @property
    def path(self) -> str:
        return str(self._entry["path"])

    @property
    def format(self) -> str:
        return str(self._entry["format"])

    @property
    def severity(self) -> Severity:
        return Severity.parse(str(self._entry["severity"]))

    @property
    def findings(self) -> list[dict[str, Any]]:
        return [dict(f) for f in self._entry["findings"]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's entry for this file (a copy: changing it changes nothing here)."""
        return {k: ([dict(f) for f in v] if k == "findings" else v) for k, v in self._entry.items()}

    def close(self) -> None:
        if self.result is not None:
            self.result.close()
            self.result = None

    def __enter__(self) -> Report:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # The tree and its open file stay in this process.
        return {"entry": self._entry, "index": self.index, "real_path": self.real_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._entry, self.index, self.real_path = state["entry"], state["index"], state["real_path"]
        self.result = None

    def __repr__(self) -> str:
        return f"Report(path={self.path!r}, format={self.format!r}, severity={self.severity.label!r}, " \
               f"findings={len(self._entry['findings'])})"
