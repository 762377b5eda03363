"""Plain pickle files, under any name: every stacked pickle read, trailing bytes reported."""

from __future__ import annotations

from airlock.core.context import ScanContext
from airlock.core.findings import DataOnly, Malformed, TrailingData
from airlock.core.formats.contract import file_node
from airlock.core.pickle import is_data_only, scan_pickle
from airlock.core.pickle.opcodes import PROTO
from airlock.core.pickle.probe import looks_like_pickle, probe
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import DATA, Node

NAME = "pickle"
EXTENSIONS = (".pkl", ".pickle", ".p")
OVERLAPS = ("joblib", "compressed")  # joblib writes .pkl too; a compressed .pkl is a stream first


_PROBE_WINDOW = 64 * 1024**2


def sniff(head: bytes, size: int) -> int:
    return looks_like_pickle(head)


def sniff_source(source: Source) -> int:
    """A stream without a PROTO header is run on the machine over the file itself, not only its
    head: a pickle may open with a string longer than the head or thousands of plain opcodes."""
    head = source.head()
    if head[:1] == bytes([PROTO]) or len(head) >= source.size:
        return looks_like_pickle(head)
    return probe(source.view(), 0, min(source.size, _PROBE_WINDOW), source.size)


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    runs = scan_pickle(source, ctx, root)
    root.attrs["pickles"] = len(runs)
    if not runs:
        ctx.report(Malformed, "malformed pickle: no opcode could be read", node=root, offset=0)
        return root
    last = runs[-1]
    if last.complete and last.end < source.size:
        report_trailing(source, ctx, root, last.end)
    if is_data_only(runs):
        ctx.report(DataOnly, "data-only: every global is in Airlock's safe set", node=root, offset=0)
    return root


def report_trailing(source: Source, ctx: ScanContext, parent: Node, start: int) -> None:
    """Bytes after the last STOP that are not another pickle: loaders ignore them."""
    size = source.size - start
    preview = safe_text(source.read(start, 32), 48)
    node = parent.child(DATA, f"trailing bytes ({size:,})", offset=start, length=size, member=source.member,
                        attrs={"preview": preview})
    kind = "a pickle prefix" if looks_like_pickle(source.read(start, 512)) else "data"
    ctx.report(TrailingData, f"{size:,} bytes after the last STOP ({kind}: {preview}); pickle.load "
               "ignores them, but they can hide content", node=node, offset=start)
