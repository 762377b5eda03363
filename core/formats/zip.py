"""Zip archives that are not a known model container: every member listed, sniffed and parsed.

Also the helpers every zip-based format shares (torch zip, TorchScript): the local/central checks
of `airlock.core.zipread` turned into findings, the bytes in front of the archive (a pickle there
is a polyglot that `pickle.load` and torch's legacy path run), and one member's scan: pickles —
whatever the member is called — go through the symbolic machine, anything else is sniffed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airlock.core.context import ScanContext
from airlock.core.decompress import CHUNK, Decompressed, Inflater, decompress
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.findings import Malformed, NotInspected, Polyglot, TrailingData
from airlock.core.formats.contract import file_node
from airlock.core.pickle import PickleRun, scan_pickle
from airlock.core.pickle.opcodes import HIGHEST_PROTOCOL, PROTO, iter_ops
from airlock.core.pickle.policy import Policy
from airlock.core.pickle.probe import looks_like_pickle
from airlock.core.source import Source, SourceFile
from airlock.core.text import safe_text
from airlock.core.tree import DATA, MEMBER, Node
from airlock.core.zipread import (
    DEFLATED,
    LOCAL,
    Issue,
    PicklePrefix,
    ZipArchive,
    ZipMember,
    crc_issue,
    declared_members,
    member_crc,
    open_archive,
    open_member,
    peek_names,
    salvage,
)

if TYPE_CHECKING:
    import zipfile

NAME = "zip"
EXTENSIONS = (".zip",)
POLYGLOT_CHECK = True

MAX_MEMBER_NODES = 10_000  # members shown one by one; a generic zip with more is summarised
_SNIFF_BYTES = 4096
_SNIFF_WHOLE = 64 * 1024**2  # members up to this size are sniffed whole, bigger ones by their head


def zipfile_errors() -> tuple[type[BaseException], ...]:
    """What Python's zipfile raises on hostile archives (NotImplementedError: an unsupported version
    or method). zipfile, lzma and bz2 are imported on first use: ~10 ms of every scan's start-up."""
    import lzma
    import zipfile

    return (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, KeyError, RuntimeError,
            zlib.error, lzma.LZMAError)


# Python's zipfile lists a directory in one call that no clock can interrupt (~6 us a member: 1M
# members took 6.3 s, past a 3 s --timeout). Sniffers have no clock, so they ask zipfile only about
# archives it lists in a fraction of a second; larger ones are read by Airlock's own zip parser,
# which looks at the clock every 1,024 members and judges each member like a file (an .npz's arrays
# and a .keras's config.json included).
ZIPFILE_LISTING_CAP = 65_536


def zipfile_names(source: Source) -> list[str] | None:
    """Member names as Python's zipfile lists them (numpy.load and Keras open zips with it), or None
    when zipfile refuses the file or it declares more than ZIPFILE_LISTING_CAP members. Read once
    per source, however many sniffers ask."""
    cached: Any = source.cache.get("zipfile_names", source)
    if cached is not source:
        return cached  # type: ignore[no-any-return]
    import zipfile

    names: list[str] | None
    declared = declared_members(source)
    try:
        if declared is not None and declared > ZIPFILE_LISTING_CAP:
            raise zipfile.BadZipFile(f"{declared:,} members: more than zipfile lists within a sniff")
        with zipfile.ZipFile(SourceFile(source)) as archive:
            names = archive.namelist()
    except zipfile_errors():
        names = None
    source.cache["zipfile_names"] = names
    return names


def sniff(head: bytes, size: int) -> int:
    return 0  # sniff_source decides: a zip is known by its central directory at the end


def sniff_source(source: Source) -> int:
    head = source.head(512)
    if peek_names(source, 1) is None:
        # No end record: a truncated archive, still one by its first local header.
        return 40 if head[:4] == LOCAL else 0
    # A pickle in front of a zip: this module (or torch_zip) must read it, not the pickle module,
    # so that the archive behind it is seen too.
    if head[:4] != LOCAL and looks_like_pickle(head) > 0:
        return 92
    return 30


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    try:
        archive = open_checked(source, ctx, root)
    except FormatError as exc:
        if source.head(4) != LOCAL:
            raise
        ctx.report(Malformed, f"malformed zip: {exc.message}; members were recovered from their local "
                   "headers (torch and zipfile refuse the file)", node=root, offset=exc.offset)
        archive = salvage(source, ctx.limits.max_zip_members)
        root.attrs["salvaged"] = True
    nodes: dict[int, Node] = {}
    for m in ctx.each(archive.members[:MAX_MEMBER_NODES], "members", every=1):
        nodes[m.index] = node = member_node(root, m, source)
        scan_member(source, ctx, node, archive, m)
    hidden = len(archive.members) - MAX_MEMBER_NODES
    if hidden > 0:
        ctx.report(NotInspected, f"{hidden:,} more members were not inspected", node=root,
                   offset=archive.central_offset)
    report_issues(archive, ctx, root, nodes, source)
    from airlock.core.formats.model_folder_context import check_archive_code

    code = [(m.name, nodes[m.index]) for m in archive.members if m.index in nodes and m.name.endswith(".py")]
    check_archive_code(ctx, code, [m.name for m in archive.members[:MAX_MEMBER_NODES]])
    return root


# Shared by the zip-based formats.


def open_checked(source: Source, ctx: ScanContext, root: Node) -> ZipArchive:
    archive = open_archive(source, max_members=ctx.limits.max_zip_members, check=ctx.check)
    root.attrs["members"] = len(archive.members)
    if archive.zip64:
        root.attrs["zip64"] = True
    if archive.start > 0:
        report_prefix(source, ctx, root, archive)
    if archive.end < source.size:
        size = source.size - archive.end
        node = root.child(DATA, f"bytes after the archive ({size:,})", offset=archive.end, length=size,
                          member=source.member)
        ctx.report(TrailingData, f"{size:,} bytes after the zip's end record", node=node, offset=archive.end)
    return archive


def report_prefix(source: Source, ctx: ScanContext, root: Node, archive: ZipArchive) -> list[PickleRun]:
    """Bytes before the first local header. A pickle there is what pickle.load and torch.load run."""
    start = archive.start
    node = root.child(DATA, f"bytes before the archive ({start:,})", offset=0, length=start,
                      member=source.member, attrs={"preview": safe_text(source.read(0, 32), 48)})
    if looks_like_pickle(source.read(0, min(start, 512))) <= 0:
        ctx.report(TrailingData, f"{start:,} bytes in front of the zip archive; zip tools skip them",
                   node=node, offset=0)
        return []
    runs = scan_pickle(source, ctx, node, start=0, end=start, label="prefix pickle")
    ctx.report(Polyglot, "the file is a pickle followed by a zip archive: pickle.load and torch.load "
               "read the pickle, zip tools read the archive", node=node, offset=0)
    calls = [c for run in runs for c in run.calls]
    if calls:
        ctx.report(PicklePrefix, f"the pickle in front of the archive makes {len(calls):,} call(s) when "
                   "pickle.load or torch.load reads the file", node=node, offset=calls[0].offset)
    return runs


def member_node(parent: Node, m: ZipMember, source: Source) -> Node:
    attrs = {"size": m.size, "compressed": m.compressed_size, "method": "deflate" if m.method == DEFLATED
             else "stored" if m.method == 0 else str(m.method), "crc": f"{m.crc:08x}"}
    return parent.child(MEMBER, safe_text(m.name), offset=m.header_offset,
                        length=(m.data_offset or m.header_offset) + m.compressed_size - m.header_offset,
                        member=source.member, attrs=attrs)


def report_issues(archive: ZipArchive, ctx: ScanContext, root: Node, nodes: dict[int, Node],
                  source: Source) -> None:
    for issue in archive.issues:
        report_issue(issue, ctx, nodes.get(issue.member.index) if issue.member else None, root, source)


def report_issue(issue: Issue, ctx: ScanContext, node: Node | None, root: Node, source: Source) -> None:
    ctx.report(issue.rule, safe_text(issue.message, 400), node=node or root, offset=issue.offset,
               member=source.member, severity=issue.severity)


def member_head(source: Source, m: ZipMember, n: int = _SNIFF_BYTES) -> bytes:
    """The first n bytes of a member, decompressing only what that takes."""
    if m.data_offset is None:
        return b""
    raw = source.read(m.data_offset, min(m.compressed_size, n if m.method != DEFLATED else 1 << 16))
    if m.method != DEFLATED:
        return raw
    try:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, n)
    except zlib.error:
        return b""


def is_whole_pickle(sub: Source) -> bool:
    """A protocol 0/1 pickle that parses opcode by opcode up to a STOP at the end (a `.json`
    or `.txt` member can be one; pickle.load would run it)."""
    if looks_like_pickle(sub.head(_SNIFF_BYTES)) < 20:
        return False
    try:
        for op in iter_ops(sub.view(), 0, sub.size):
            if op.name == "STOP":
                return _blank_from(sub, op.offset + 1)
    except FormatError:
        return False
    return False


def _blank_from(sub: Source, pos: int) -> bool:
    """Only whitespace from pos to the end."""
    while pos < sub.size:
        chunk = sub.read(pos, 1 << 20)
        if chunk.strip():
            return False
        pos += len(chunk)
    return True


def starts_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == PROTO and 2 <= head[1] <= HIGHEST_PROTOCOL


def member_source(source: Source, m: ZipMember, data: bytes) -> Source:
    name = f"{source.member}!{m.name}" if source.member else m.name
    return Source.from_bytes(data, name=name, member=name, path=source.path)


def opened_member(source: Source, m: ZipMember) -> Source | None:
    """A pickle member `scan_member` already read (torch's weights-only replay reads it again)."""
    found: Source | None = source.cache.get(f"pickle member {m.index}")
    return found


def scan_member(source: Source, ctx: ScanContext, node: Node, archive: ZipArchive, m: ZipMember,
                *, force_pickle: bool = False, policy: Policy | None = None) -> list[PickleRun] | None:
    """Scan one member: a pickle (by content, whatever its name) or anything the sniffers claim.
    Returns the pickle runs when it was a pickle. Failures become findings on the member's node."""
    if m.is_dir or m.size == 0 or m.data_offset is None:
        return None
    opened: Decompressed | None = None
    try:
        head = member_head(source, m)
        pickle_like = force_pickle or starts_pickle(head) or looks_like_pickle(head) >= 20
        if pickle_like and m.size <= ctx.limits.max_pickle_member_bytes:
            opened = open_member(source, m, ctx, crc=True, in_memory=True)
            _report_open_error(opened, source, ctx, node, m)
            if force_pickle or starts_pickle(head) or is_whole_pickle(opened.source):
                return scan_pickle_member(source, ctx, node, archive, m, opened, policy)
        from airlock.core.dispatch import sniff

        label = safe_text(m.name.rsplit("/", 1)[-1])
        whole = head[:4] == LOCAL or m.size <= _SNIFF_WHOLE
        if whole or sniff(Source.from_bytes(head, name=m.name))[0] is not None:
            if opened is None:
                opened = open_member(source, m, ctx)
                _report_open_error(opened, source, ctx, node, m)
            sub = opened.source
            if sub.size and (head[:4] == LOCAL or not whole or sniff(sub)[0] is not None):
                ctx.parse_nested(sub, node, label=label)
    except FormatError as exc:
        ctx.report(Malformed, f"member {safe_text(m.name)}: {exc.message}", node=node,
                   offset=exc.offset if exc.offset is not None else m.header_offset, member=source.member)
    except LimitExceeded as exc:
        ctx.report(LimitRule, f"member {safe_text(m.name)}: {exc.message}; not inspected", node=node,
                   offset=m.header_offset, member=source.member)
    finally:
        if opened is not None:
            opened.done()
    return None


def _report_open_error(opened: Decompressed, source: Source, ctx: ScanContext, node: Node,
                       m: ZipMember) -> None:
    """A member whose inflation broke or went over budget: reported, and the bytes before are read."""
    error = opened.error
    if error is None:
        return
    offset = error.offset if error.offset is not None else m.header_offset
    if isinstance(error, LimitExceeded):
        ctx.report(LimitRule, f"member {safe_text(m.name)}: {error.message}; the first "
                   f"{opened.source.size:,} bytes are read below", node=node, offset=offset,
                   member=source.member)
    else:
        ctx.report(Malformed, f"member {safe_text(m.name)}: {error.message}; torch and zipfile refuse it, "
                   "a streaming reader acts on the bytes before the break (read below)", node=node,
                   offset=offset, member=source.member)


def scan_pickle_member(source: Source, ctx: ScanContext, node: Node, archive: ZipArchive, m: ZipMember,
                       opened: Decompressed, policy: Policy | None = None) -> list[PickleRun]:
    if opened.crc is not None and opened.error is None:
        issue = crc_issue(archive, m, opened.crc)
        if issue is not None:
            report_issue(issue, ctx, node, node, source)
    sub = opened.source
    source.cache[f"pickle member {m.index}"] = sub
    runs = scan_pickle(sub, ctx, node, label="pickle", policy=policy)
    node.attrs["pickle"] = True
    if not runs:
        ctx.report(Malformed, f"malformed pickle in member {safe_text(m.name)}: no opcode could be read",
                   node=node, offset=0, member=sub.member)
    elif runs[-1].complete and runs[-1].end < sub.size:
        from airlock.core.formats.pickle import report_trailing

        report_trailing(sub, ctx, node, runs[-1].end)
    return runs


# Members of zips read with Python's zipfile (numpy.load and Keras read them so).

_LOCAL_HEADER = 30
_STORED, _DEFLATED = 0, 8


def open_zipfile_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: Source, ctx: ScanContext,
                        member: str, *, stored_crc: bool = False) -> Decompressed:
    """A member as a Source: a window of the file when stored, else inflated under the file's
    decompression budget, with its CRC checked as zipfile checks it (for stored members too with
    `stored_crc`: a pass over the bytes). FormatError when zipfile refuses the member; a stream
    that breaks or goes over budget comes with the bytes before."""
    name = safe_text(info.filename, 120)
    try:
        with archive.open(info):  # checks the local header (name, flags, method) as the loader's open does
            pass
    except zipfile_errors() as exc:
        raise FormatError(safe_text(str(exc), 160), info.header_offset) from None
    start = member_data_start(source, info)
    if start is None or start + info.compress_size > source.size:
        raise FormatError(f"truncated: member {name}'s data runs past the end of the file",
                          info.header_offset)
    label = f"{source.name}!{info.filename}"
    if info.compress_type == _STORED:
        sub = source.slice(start, info.compress_size, name=label, member=member)
        opened = Decompressed(sub, None, None, None, sub.size)
        if stored_crc and (crc := member_crc(sub)) != info.CRC:
            opened.error = FormatError(f"Bad CRC-32 0x{crc:08x} (the directory says 0x{info.CRC:08x}): "
                                       "zipfile refuses it", info.header_offset)
        return opened
    if info.compress_type == _DEFLATED:
        raw = source.slice(start, info.compress_size, name=label, member=member)

        def opener() -> Iterable[bytes]:
            return Inflater(raw, "deflate")
    else:  # bzip2 or lzma members: read through zipfile, like the loader

        def opener() -> Iterable[bytes]:
            return _zipfile_chunks(archive, info)

    out = decompress(opener, ctx, name=label, member=member, path=source.path, what=f"member {name}",
                     declared=info.file_size, crc=True)
    if out.error is None and out.crc != info.CRC:
        out.error = FormatError(f"Bad CRC-32 0x{out.crc or 0:08x} (the directory says 0x{info.CRC:08x}): "
                                "zipfile refuses it", info.header_offset)
    if out.error is not None and out.error.offset is None:
        out.error.offset = info.header_offset
    return out


def member_data_start(source: Source, info: zipfile.ZipInfo) -> int | None:
    """Where a member's data starts: after its local header, whose name/extra lengths zipfile uses."""
    local = source.read(info.header_offset, _LOCAL_HEADER)
    if len(local) < _LOCAL_HEADER or local[:4] != LOCAL:
        return None
    name_len = int.from_bytes(local[26:28], "little")
    extra_len = int.from_bytes(local[28:30], "little")
    return info.header_offset + _LOCAL_HEADER + name_len + extra_len


def _zipfile_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    try:
        with archive.open(info) as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
    except zipfile_errors() as exc:
        raise FormatError(safe_text(str(exc), 160), info.header_offset) from None
