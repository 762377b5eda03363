"""CatBoost binary models (`.cbm`, `save_model(format="cbm")`): `CBM1`, a little-endian uint32 core size,
the core as a FlatBuffer (catboost/libs/model/flatbuffers/model.fbs, root `TModelCore`), then the model
parts it names (CTR tables).

Read with the bounded FlatBuffers walk of airlock.core.formats.flatbuf, never with CatBoost: the format
version, the info map (training parameters, as text), the oblivious trees' sizes and leaf counts. The
format holds no code; what can go wrong is in CatBoost's C++ loader, which indexes its arrays with the
tree sizes. So the core must fit the file, the tree sizes must add up to the splits, and the leaf values
must be as many as the trees' leaves times the approximation dimension: otherwise malformed (high).
"""

from __future__ import annotations

import struct

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import Malformed
from airlock.core.formats.contract import file_node
from airlock.core.formats.flatbuf import FlatBuffer
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, GROUP, METADATA, ROLE, Node

NAME = "catboost"
EXTENSIONS = (".cbm",)

MAX_TREES = 1_000_000
MAX_DEPTH = 32  # oblivious trees deeper than this have more leaves than any file holds


def sniff(head: bytes, size: int) -> int:
    return 90 if head[:4] == b"CBM1" and size >= 8 else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    try:
        _core(source, ctx, root)
    except FormatError as exc:
        ctx.report(Malformed, f"malformed CatBoost model: {exc.message}; CatBoost refuses it", node=root,
                   offset=exc.offset)
    return root


def _core(source: Source, ctx: ScanContext, root: Node) -> None:
    (size,) = struct.unpack("<I", source.read(4, 4).ljust(4, b"\x00"))
    if 8 + size > source.size:
        left = max(source.size - 8, 0)
        raise FormatError(f"the core is {size:,} bytes, only {left:,} follow the header", 4)
    root.attrs["core size"] = size
    core = source.slice(8, size, name="core", member=source.member)
    buf = FlatBuffer(core.view(), size)
    model = buf.root()
    version = model.string(0, "format version")
    if version:
        root.attrs["format version"] = safe_text(version, 40)
    start, count = model.tables(2, "info map")
    for i in range(min(count, 256)):
        ctx.tick(64)
        pair = model.element(start, i, "info entry")
        key, value = pair.string(0, "key") or "", pair.string(1, "value") or ""
        root.child(METADATA, f"{safe_text(key, 80)} = {safe_text(value, 160)}", offset=8 + pair.pos,
                   member=source.member, attrs={"key": safe_text(key, 80), "value": safe_text(value, 2000)})
    _parts_at, parts = model.vector(3, 4, "model part ids")
    root.attrs["model parts"] = parts
    trees = model.table(1, "oblivious trees")
    if trees is None:
        return
    approx = trees.scalar(0, "i", 1)
    splits = trees.vector(1, 4, "tree splits")[1]
    sizes = trees.ints(2, "tree sizes", MAX_TREES)
    leaf_values = trees.vector(8, 8, "leaf values")[1]
    non_symmetric = trees.vector(10, 4, "non-symmetric step nodes")[1]
    root.attrs.update(trees=len(sizes), splits=splits, leaf_values=leaf_values, approx_dimension=approx)
    group = root.child(GROUP, f"trees ({len(sizes):,})", offset=8 + trees.pos, member=source.member,
                       attrs={ROLE: CONTENTS})
    if non_symmetric:
        group.attrs["non-symmetric"] = True
        return  # leaf counts follow the step nodes, not the sizes
    if any(s < 0 or s > MAX_DEPTH for s in sizes):
        raise FormatError(f"a tree has depth {max(sizes, key=abs)}: outside 0..{MAX_DEPTH}", 8 + trees.pos)
    if sum(sizes) != splits:
        raise FormatError(f"the tree sizes add up to {sum(sizes):,} splits, the model has {splits:,}",
                          8 + trees.pos)
    leaves = sum(1 << s for s in sizes) * max(approx, 1)
    if leaves != leaf_values:
        raise FormatError(f"{len(sizes):,} trees need {leaves:,} leaf values, the model has {leaf_values:,}",
                          8 + trees.pos)
    group.attrs["leaves"] = leaves
