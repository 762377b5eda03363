"""NumPy `.npz` archives, read with Python's `zipfile` — the reader `numpy.load` itself uses.

Every member is parsed as its own subtree (`ctx.parse_nested`), sniffed by content: `.npy`
members go to the npy parser (object arrays are scanned as pickles), anything else to whatever
format it is. Stored members are read from the file in place; compressed ones are inflated under
the file's decompression budget. numpy opens a member by name, so with duplicate names the
last one wins in numpy while other tools may read the first: that is a finding.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from airlock.core.context import ScanContext
from airlock.core.decompress import Decompressed
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats.contract import file_node
from airlock.core.formats.zip import member_data_start, open_zipfile_member, zipfile_errors, zipfile_names
from airlock.core.source import Source, SourceFile
from airlock.core.text import safe_text
from airlock.core.tree import Node

if TYPE_CHECKING:
    import zipfile

NAME = "npz"
EXTENSIONS = (".npz",)

# numpy.load decides "npz" by these first bytes only; anything else is not read as an archive.
_ZIP_PREFIXES = (b"PK\x03\x04", b"PK\x05\x06")


class DuplicateMember(Rule):
    id = "NPY010"
    severity = Severity.HIGH
    title = "Duplicate member name in an .npz"
    help = ("numpy.load reads the last member of a name; other zip tools may show the first. A reviewer "
            "and the loader can see different arrays.")


def open_zip(source: Source) -> zipfile.ZipFile:
    import zipfile

    return zipfile.ZipFile(io.BufferedReader(SourceFile(source)))


def sniff(head: bytes, size: int) -> int:
    return 0  # sniff_source decides: it needs the central directory at the end of the file


def sniff_source(source: Source) -> int:
    """A zip (as numpy.load recognises one) whose members are .npy arrays."""
    if not source.head(4).startswith(_ZIP_PREFIXES):
        return 0
    names = zipfile_names(source)
    if names is None:
        return 0  # zipfile refuses it (e.g. an unsupported zip version): numpy.load would too
    npy = sum(1 for name in names if name.endswith(".npy"))
    if not npy:
        return 0
    return 80 if npy == len(names) else 40


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    try:
        archive = open_zip(source)
    except zipfile_errors() as exc:
        ctx.report(Malformed, f"malformed .npz: zipfile cannot open it ({safe_text(str(exc), 120)})",
                   node=root, offset=0)
        return root
    with archive:
        infos = archive.infolist()
        if len(infos) > ctx.limits.max_zip_members:
            limit = ctx.limits.max_zip_members
            raise LimitExceeded(f"{len(infos):,} members, over the limit of {limit:,}", 0)
        root.attrs["members"] = len(infos)
        last_of = {info.filename: info for info in infos}
        seen: set[str] = set()
        for index, info in enumerate(infos):
            ctx.check()
            name = info.filename
            prefix = source.member + "!" if source.member else ""
            label = safe_text(name, 200)
            if name in seen:
                ctx.report(DuplicateMember, f"member name {label} appears more than once; numpy.load reads "
                           "the last one", node=root, offset=info.header_offset)
            seen.add(name)
            if last_of[name] is not info:
                label += " (shadowed duplicate)"
            opened = _member(archive, info, source, ctx, root, prefix + name)
            ctx.progress((index + 1) / len(infos), label)
            if opened is None:
                continue
            try:
                node = ctx.parse_nested(opened.source, root, label=label)
            finally:
                opened.done()
            node.attrs["member_offset"] = info.header_offset
            node.attrs["compression"] = _COMPRESSION.get(info.compress_type, str(info.compress_type))
            node.attrs["data_offset"] = member_data_start(source, info)  # for core/locate.py
    return root


_STORED = 0
_COMPRESSION = {_STORED: "stored", 8: "deflated", 12: "bzip2", 14: "lzma"}  # zipfile.ZIP_* values


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: Source, ctx: ScanContext, root: Node,
            member: str) -> Decompressed | None:
    """The member as a source (`open_zipfile_member`); its problems are findings on the archive."""
    name = safe_text(info.filename, 120)
    try:
        out = open_zipfile_member(archive, info, source, ctx, member)
    except FormatError as exc:
        # Encryption, unsupported methods, a bad local header: numpy.load fails on this member too.
        ctx.report(Malformed, f"malformed .npz member {name}: {exc.message}", node=root,
                   offset=info.header_offset)
        return None
    if isinstance(out.error, LimitExceeded):
        ctx.report(LimitRule, f"{out.error.message}; the first {out.source.size:,} bytes are read below",
                   node=root, offset=info.header_offset)
    elif out.error is not None:
        ctx.report(Malformed, f"malformed .npz member {name}: {safe_text(out.error.message, 200)}; "
                   "numpy.load fails on it", node=root, offset=info.header_offset)
    return out
