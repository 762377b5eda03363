"""Scan entry points: sniff by content, parse, collect findings. Never raises on bad input."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator

from airlock.core import claims, inspection
from airlock.core.context import CancelledFn, ProgressFn, ScanContext
from airlock.core.dispatch import UNKNOWN, parse_into
from airlock.core.errors import Cancelled, LimitExceeded
from airlock.core.findings import Finding, ParserCrash, Severity, Skipped, Unreadable
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.source import Source, is_url
from airlock.core.text import safe_path, safe_text
from airlock.core.tree import FILE, Node


class ScanResult:
    __slots__ = ("elapsed_s", "findings", "format", "path", "root", "size", "source")

    def __init__(self, path: str, format: str, root: Node, findings: list[Finding] | None = None,
                 elapsed_s: float = 0.0, size: int | None = None, source: Source | None = None) -> None:
        self.path = path  # as the user gave it (or joined under a directory argument)
        self.format = format
        self.root = root
        self.findings: list[Finding] = [] if findings is None else findings
        self.elapsed_s = elapsed_s
        self.size = size
        self.source = source  # kept open so lazy nodes can read their bytes; see close()

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None

    @property
    def severity(self) -> Severity:
        return max((f.severity for f in self.findings), default=Severity.NONE)

    @property
    def inspected(self) -> str:
        """"full", "partial" or "none": see airlock.core.inspection."""
        return inspection.derive(self.format, self.root, self.findings)


def scan_source(source: Source, display_path: str, ctx: ScanContext) -> ScanResult:
    start = time.monotonic()
    root = parse_into(source, ctx, None, label=_label(display_path))
    fmt = root.attrs.get("format", UNKNOWN)
    claims.check_name(display_path, fmt, source, ctx, root, mismatch=True)
    if display_path.endswith((".py", ".jinja")):  # loaders run these by name and folder, whatever they hold
        _checks_by_name(source, display_path, ctx, root)
    return ScanResult(display_path, fmt, root, ctx.findings, time.monotonic() - start, source.size, source)


def _checks_by_name(source: Source, display_path: str, ctx: ScanContext, root: Node) -> None:
    """What a file's name and folder make a loader do with it, on top of its content's verdict: a
    `*.py` beside a model is imported, a `chat_template.jinja` rendered. Never raises on bad input."""
    from airlock.core.formats import chat_template, model_folder_context

    try:
        if display_path.endswith(".py"):
            model_folder_context.check_shipped_code(source, ctx, root)
        else:
            chat_template.check_by_name(source, ctx, root)
    except Cancelled:
        raise
    except LimitExceeded as exc:
        ctx.report(LimitRule, f"{exc.message}; the rest was not inspected", node=root)
    except Exception as exc:  # noqa: BLE001 - a bug here must be a finding, never a dead scan
        ctx.report(ParserCrash, f"model folder check failed: {type(exc).__name__}: "
                   f"{safe_text(str(exc), 200)}", node=root)


def scan_file(
    path: str | os.PathLike[str],
    display_path: str | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> ScanResult:
    """Scan one file. Problems with the file become findings; only `Cancelled` escapes.

    The result keeps the file mapped for lazy nodes: call `result.close()` when done with it.
    """
    display = display_path if display_path is not None else os.fspath(path)
    path = os.fspath(path)
    if is_url(path):  # read by range requests; never looked up as a local path
        return _scan_url(path, display, ScanContext(limits, progress=progress, cancelled=cancelled))
    ctx = ScanContext(limits, progress=progress, cancelled=cancelled, path=path)
    start = time.monotonic()
    try:
        st = os.stat(path)
    except OSError as exc:
        return _unreadable(display, ctx, exc, start)
    if stat.S_ISDIR(st.st_mode):
        try:
            with os.scandir(path):
                pass
        except OSError as exc:  # a folder the walk could not list: what it holds was not inspected
            root = Node(FILE, _label(display), attrs={"format": UNKNOWN})
            ctx.report(Unreadable, f"cannot list the folder: {exc.strerror or exc}; the files in it were not "
                       "inspected", node=root)
            return ScanResult(display, UNKNOWN, root, ctx.findings, time.monotonic() - start, None)
    if not stat.S_ISREG(st.st_mode):
        root = Node(FILE, _label(display), attrs={"format": "skipped"})
        ctx.report(Skipped, f"not a regular file ({_file_type(st.st_mode)}): not opened", node=root)
        return ScanResult(display, "skipped", root, ctx.findings, 0.0, None)
    try:
        source = Source.open(path, name=display)
    except OSError as exc:
        return _unreadable(display, ctx, exc, start)
    try:
        return scan_source(source, display, ctx)
    except OSError as exc:  # e.g. the file shrank under the map (SIGBUS is not catchable; EIO is)
        source.close()
        return _unreadable(display, ctx, exc, start)


def _scan_url(url: str, display: str, ctx: ScanContext) -> ScanResult:
    """Scan a remote file: open it (one range request), parse it as a local one, and add what the
    reads met: a budget passed, a server that misbehaved. Never raises for the file's sake."""
    from airlock.core import remote

    start = time.monotonic()
    limits = ctx.limits
    try:
        opener = remote.RemoteSource.open_url
        if url[:5].lower() == "s3://":
            from airlock.core.remote_s3 import S3Source

            opener = S3Source.open_s3
        source = opener(url, budget=limits.max_remote_bytes, timeout=limits.remote_timeout_s,
                        time_budget=limits.time_budget_s, name=display)
    except (LimitExceeded, ValueError) as exc:
        root = Node(FILE, _label(display), attrs={"format": UNKNOWN, "bytes_read": 0})
        rule = remote.RemoteBudget if isinstance(exc, remote.BudgetExceeded) else remote.RemoteReadFailed
        message = exc.message if isinstance(exc, LimitExceeded) else str(exc)
        ctx.report(rule, safe_text(message, 600), node=root, offset=0)
        return ScanResult(display, UNKNOWN, root, ctx.findings, time.monotonic() - start, None)
    result = scan_source(source, display, ctx)
    remote.note(source, result.root, ctx)
    return result


def scan_bytes(data: bytes, name: str = "<bytes>", *, limits: Limits = DEFAULT_LIMITS) -> ScanResult:
    ctx = ScanContext(limits)
    return scan_source(Source.from_bytes(data, name), name, ctx)


def _label(path: str) -> str:
    # A file name is text from outside like any other: escaped before a view shows it (bytes that
    # are not UTF-8 as \xNN).
    return safe_path(os.path.basename(path) or path, 500)


def _unreadable(display: str, ctx: ScanContext, exc: OSError, start: float) -> ScanResult:
    root = Node(FILE, _label(display), attrs={"format": UNKNOWN})
    ctx.report(Unreadable, f"cannot read the file: {exc.strerror or exc}", node=root)
    return ScanResult(display, UNKNOWN, root, ctx.findings, time.monotonic() - start, None)


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISDIR(mode):
        return "directory"
    return "special file"


_HF_REPO_PREFIXES = ("models--", "datasets--", "spaces--")  # airlock.core.provenance.hf_cache.PREFIXES


def iter_files(path: str) -> Iterator[tuple[str, str]]:
    """(display path, real path) for a path argument: the file itself or every file below a folder.

    Symlinks to files are followed (the Hugging Face cache is made of them); symlinked folders
    are not descended, so a link loop cannot make a scan endless. `.git` folders (a repository's
    own store, never model files) are skipped. A folder that cannot be listed is yielded itself:
    its scan is a high "cannot list" finding, since a file hidden in it was not inspected. Sorted
    for stable reports. A Hugging Face cache's repository folders are listed by
    `provenance.hf_cache` (each revision's files under their snapshot paths, blobs no snapshot
    links to under blobs/).
    """
    if is_url(path) or not os.path.isdir(path):
        yield path, path
        return
    if os.path.basename(os.path.normpath(path)).startswith(_HF_REPO_PREFIXES):
        from airlock.core.provenance import hf_cache

        if hf_cache.is_repo_folder(path):
            yield from hf_cache.iter_repo(path)
            return
    unlisted: list[str] = []

    def failed(exc: OSError) -> None:
        unlisted.append(os.fsdecode(exc.filename) if exc.filename is not None else path)

    for dirpath, dirnames, filenames in os.walk(path, onerror=failed):
        while unlisted:
            folder = unlisted.pop(0)
            yield folder, folder
        dirnames[:] = sorted(name for name in dirnames if name != ".git")
        if any(d.startswith(_HF_REPO_PREFIXES) for d in dirnames):
            # A Hugging Face cache: each revision once under its snapshot path, not again under blobs/.
            from airlock.core.provenance import hf_cache

            yield from hf_cache.take_repos(dirpath, dirnames)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            yield full, full
    for folder in unlisted:
        yield folder, folder
