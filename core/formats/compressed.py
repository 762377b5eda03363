"""gzip / bz2 / xz / lzma / zlib / lz4-wrapped files: decompressed under the per-file budget, then
sniffed again (`airlock.core.decompress`).

joblib's compressed dumps are such files; after decompression the joblib module recognises them.
A stream that expands past the budget is a high finding ("not inspected further"), and the bytes
it gave before are still parsed: a pickle bomb often opens with its payload.
"""

from __future__ import annotations

from airlock.core.context import ScanContext
from airlock.core.decompress import Inflater, decompress, kind_of
from airlock.core.errors import LimitExceeded
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.findings import Malformed, TrailingData
from airlock.core.formats.contract import file_node
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import DATA, Node

NAME = "compressed"
# joblib keeps .joblib / .pkl on its compressed dumps, so those names do not disagree with the content.
EXTENSIONS = (".gz", ".bz2", ".xz", ".lzma", ".z", ".zlib", ".lz4", ".joblib", ".jbl", ".pkl")
OVERLAPS = ("joblib", "pickle")  # compressed joblib dumps keep .joblib/.pkl


def sniff(head: bytes, size: int) -> int:
    kind = kind_of(head)
    if kind is None:
        return 0
    return 60 if kind in ("zlib", "lzma") else 85


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    kind = kind_of(source.head(64)) or "unknown"
    root.attrs["compression"] = kind
    member = f"{source.member}!{kind}" if source.member else f"<{kind} content>"
    out = decompress(lambda: Inflater(source, kind), ctx, name=member, member=member, path=source.path,
                     what=f"{kind} data")
    inner = out.source
    label = f"{kind}-decompressed ({inner.size:,} bytes)"
    if isinstance(out.error, LimitExceeded):
        ctx.report(LimitRule, f"{kind}: {out.error.message}; the first {inner.size:,} bytes are read below",
                   node=root, offset=0, member=source.member)
        label = f"{kind}-decompressed, first {inner.size:,} bytes"
    elif out.error is not None:
        ctx.report(Malformed, f"malformed {kind}: {out.error.message}; what came before is read below",
                   node=root, offset=out.error.offset, member=source.member)
    try:
        if inner.size or out.error is None:
            ctx.parse_nested(inner, root, label=label)
    finally:
        out.done()
    end = source.size if out.end is None else out.end
    if out.error is None and end < source.size:
        size = source.size - end
        node = root.child(DATA, f"trailing bytes ({size:,})", offset=end, length=size, member=source.member,
                          attrs={"preview": safe_text(source.read(end, 32), 48)})
        ctx.report(TrailingData, f"{size:,} bytes after the end of the {kind} data; readers ignore or "
                   "reject them, but they can hide content", node=node, offset=end)
        where = f"{source.member or ''}<bytes after the {kind} data at {end}>"
        ctx.parse_nested(source.slice(end, size, name=where, member=where), node, label="trailing content")
    return root
