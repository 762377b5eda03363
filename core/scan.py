"""Scan entry points: sniff by content, parse, collect findings. Never raises on bad input."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator

from airlock.core import claims, formats, inspection, model_card
from airlock.core.context import CancelledFn, ProgressFn, ScanContext
from airlock.core.errors import Cancelled, FormatError, LimitExceeded
from airlock.core.findings import (
    EmptyFile,
    Finding,
    Malformed,
    NotInspected,
    ParserCrash,
    Severity,
    Skipped,
    Unreadable,
)
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.formats.contract import FormatModule
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.source import Source, is_url
from airlock.core.text import safe_path, safe_text
from airlock.core.tree import FILE, Node

UNKNOWN = "unknown"
EMPTY = "empty"


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


def sniff(source: Source,
          failures: list[str] | None = None) -> tuple[FormatModule | None, list[FormatModule]]:
    """The best format for these bytes, and every other format that also claims them.

    Modules sniff the head; one that needs more (a zip's central directory sits at the end)
    defines `sniff_source(source) -> int`, which may read small pieces anywhere. A sniffer that
    fails counts as "not mine"; its error goes to `failures` when given.
    """
    head = source.head()
    size = source.size
    scored = []
    for module, sniff_source in formats.sniffers():
        try:
            score = sniff_source(source) if sniff_source is not None else module.sniff(head, size)
        except Exception as exc:  # noqa: BLE001 - a sniffer bug must not take the whole scan down
            if failures is not None:
                failures.append(f"{module.NAME} sniffer failed: {type(exc).__name__}: {exc}")
            continue
        if score > 0:
            scored.append((score, module))
    if not scored:
        return None, []
    scored.sort(key=lambda pair: -pair[0])  # stable: registry order breaks ties
    best = scored[0][1]
    return best, [m for s, m in scored[1:] if s >= 50]


def parse_into(source: Source, ctx: ScanContext, parent: Node | None, *, label: str | None = None) -> Node:
    """Sniff and parse `source`; failures become findings on a partial tree. Returns its node."""
    failures: list[str] = []
    module, others = sniff(source, failures)
    name = module.NAME if module is not None else UNKNOWN
    if module is None:
        node = Node(FILE, label or source.name, offset=0, length=source.size, member=source.member,
                    attrs={"format": UNKNOWN if source.size else EMPTY, "size": source.size})
        if parent is not None:
            parent.add(node)
        _report_sniff_failures(failures, ctx, node)
        if source.size:
            # Fail closed: bytes no format claims are not known to be safe (medium, never clean).
            ctx.report(NotInspected, "unrecognised binary content: no format Airlock reads claims it, so it "
                       "was not inspected", node=node, offset=0)
        else:
            ctx.report(EmptyFile, "empty (0 bytes): nothing to inspect", node=node, offset=0)
        if parent is not None:
            claims.check_name(source.member or source.name, node.attrs["format"], source, ctx, node,
                              mismatch=False)
        return node

    outer = ctx.current
    placeholder = Node(FILE, label or source.name, offset=0, length=source.size, member=source.member,
                       attrs={"format": name, "size": source.size})
    if parent is not None:
        parent.add(placeholder)
    ctx.current = placeholder
    ctx.depth += 1
    _report_sniff_failures(failures, ctx, placeholder)
    try:
        if ctx.depth > ctx.limits.max_nesting_depth:
            raise LimitExceeded(f"nesting deeper than {ctx.limits.max_nesting_depth} containers")
        node = module.parse(source, ctx)
        if node is not placeholder:
            _adopt(placeholder, node)
        if placeholder.attrs.get("format") in model_card.TEXT_FORMATS:  # a README.md: hidden text
            model_card.check(source, ctx, placeholder)
        for other in others:
            if other is not module and getattr(other, "POLYGLOT_CHECK", True):
                placeholder.attrs.setdefault("also_valid_as", []).append(other.NAME)
    except Cancelled:
        raise
    except FormatError as exc:
        ctx.report(Malformed, f"malformed {name}: {exc.message}", node=placeholder,
                   offset=exc.offset, member=exc.member or source.member)
    except LimitExceeded as exc:
        ctx.report(LimitRule, f"{name}: {exc.message}; the rest was not inspected", node=placeholder,
                   offset=exc.offset)
    except (MemoryError, RecursionError) as exc:
        ctx.report(LimitRule, f"{name}: {type(exc).__name__} while parsing; the rest was not inspected",
                   node=placeholder)
    except Exception as exc:  # noqa: BLE001 - a parser bug must be a finding, never a dead scan
        ctx.report(ParserCrash, f"{name} parser failed: {type(exc).__name__}: {exc}", node=placeholder)
    finally:
        ctx.depth -= 1
        ctx.current = outer
    if parent is not None:  # a container member: its name claims a format as a file's would
        claims.check_name(source.member or source.name, placeholder.attrs.get("format", name), source, ctx,
                          placeholder, mismatch=False)
    return placeholder


def _report_sniff_failures(failures: list[str], ctx: ScanContext, node: Node) -> None:
    for failure in failures:
        ctx.report(ParserCrash, safe_text(failure, 300), node=node, offset=0)


def _adopt(placeholder: Node, node: Node) -> None:
    """Move a parser's returned root into the placeholder that findings may already point at."""
    placeholder.kind = node.kind
    placeholder.attrs = {**placeholder.attrs, **node.attrs}
    if node.is_lazy:
        placeholder.adopt_lazy_children(node)
    else:
        for child in node.children():
            placeholder.add(child)
    for finding in node.findings:
        placeholder.attach(finding)


def scan_source(source: Source, display_path: str, ctx: ScanContext) -> ScanResult:
    start = time.monotonic()
    root = parse_into(source, ctx, None, label=_label(display_path))
    fmt = root.attrs.get("format", UNKNOWN)
    claims.check_name(display_path, fmt, source, ctx, root, mismatch=True)
    if display_path.endswith((".py", ".jinja")):  # loaders run these by name and folder, whatever they hold
        from airlock.core.formats import model_folder_context

        model_folder_context.check(source, display_path, ctx, root)
    return ScanResult(display_path, fmt, root, ctx.findings, time.monotonic() - start, source.size, source)


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
        from airlock.core import remote

        return remote.scan_url(path, display, ScanContext(limits, progress=progress, cancelled=cancelled))
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
