"""NumPy `.npz` archives, read with Python's `zipfile` — the reader `numpy.load` itself uses.

Every member is parsed as its own subtree (`ctx.parse_nested`), sniffed by content: `.npy`
members go to the npy parser (object arrays are scanned as pickles), anything else to whatever
format it is. Stored members are sliced from the file without copying; compressed ones are
inflated with the decompression cap. numpy opens a member by name, so with duplicate names the
last one wins in numpy while other tools may read the first: that is a finding.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from airlock.core.context import ScanContext
from airlock.core.errors import LimitExceeded
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats.zip import zipfile_errors, zipfile_names
from airlock.core.source import Source, SourceFile
from airlock.core.text import safe_text
from airlock.core.tree import FILE, Node

if TYPE_CHECKING:
    import zipfile

NAME = "npz"
EXTENSIONS = (".npz",)

# numpy.load decides "npz" by these first bytes only; anything else is not read as an archive.
_ZIP_PREFIXES = (b"PK\x03\x04", b"PK\x05\x06")
_LOCAL_HEADER = 30


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
    root = ctx.current or Node(FILE, source.name, offset=0, length=source.size, member=source.member)
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
            data = _member_bytes(archive, info, source, ctx, root)
            ctx.progress((index + 1) / len(infos), label)
            if data is None:
                continue
            inner = Source(data, name=f"{source.name}!{name}", member=prefix + name, path=source.path)
            node = ctx.parse_nested(inner, root, label=label)
            node.attrs["member_offset"] = info.header_offset
            node.attrs["compression"] = _COMPRESSION.get(info.compress_type, str(info.compress_type))
            node.attrs["data_offset"] = _data_start(source, info)  # views map member offsets (core/locate.py)
    return root


_STORED = 0
_COMPRESSION = {_STORED: "stored", 8: "deflated", 12: "bzip2", 14: "lzma"}  # zipfile.ZIP_* values


def _member_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: Source, ctx: ScanContext,
                  root: Node) -> Any:
    """The member's bytes: a zero-copy slice when stored, inflated up to the cap otherwise."""
    name = safe_text(info.filename, 120)
    cap = ctx.limits.max_decompressed_bytes
    try:
        with archive.open(info) as fh:  # checks the local header (name, flags) as numpy.load's open does
            if info.compress_type == _STORED:
                start = _data_start(source, info)
                if start is not None and start + info.compress_size <= source.size:
                    return memoryview(source.buffer)[start : start + info.compress_size]
            if info.file_size > cap:
                raise LimitExceeded(f"member {name} declares {info.file_size:,} bytes, over the {cap:,} byte "
                                    "cap", info.header_offset)
            data = fh.read(cap + 1)
    except zipfile_errors() as exc:
        # CRC errors, encryption, unsupported methods: numpy.load fails on this member too.
        ctx.report(Malformed, f"malformed .npz member {name}: {safe_text(str(exc), 160)}", node=root,
                   offset=info.header_offset)
        return None
    if len(data) > cap:
        raise LimitExceeded(f"member {name} inflates past {cap:,} bytes (decompression bomb?)",
                            info.header_offset)
    return data


def _data_start(source: Source, info: zipfile.ZipInfo) -> int | None:
    """Where a member's data starts: after its local header, whose name/extra lengths zipfile uses."""
    local = source.read(info.header_offset, _LOCAL_HEADER)
    if len(local) < _LOCAL_HEADER or local[:4] != b"PK\x03\x04":
        return None
    name_len = int.from_bytes(local[26:28], "little")
    extra_len = int.from_bytes(local[28:30], "little")
    return info.header_offset + _LOCAL_HEADER + name_len + extra_len
