"""CatBoost binary models (`.cbm`, `save_model(format="cbm")`): `CBM1`, a little-endian uint32 core size,
the core as a FlatBuffer (catboost/libs/model/flatbuffers/model.fbs, root `TModelCore`), then the model
parts it names (CTR tables).

Read with the bounded FlatBuffers walk of airlock.core.formats.flatbuf, never with CatBoost: the format
version, the info map (training parameters, as text), the trees' sizes and leaf counts. The format holds
no code; what can go wrong is in CatBoost's C++ evaluator, which indexes its arrays with what the file
says. So the core must fit the file and the tree sizes must add up to the splits; an oblivious model
needs as many leaf values as its trees' leaves times the approximation dimension; in a non-symmetric
(Depthwise, Lossguide) model every step of a node must stay inside its tree, and every terminal node's
leaf index inside the leaf values. Otherwise malformed (high).
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

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
        _non_symmetric(trees, sizes, splits, leaf_values, max(approx, 1), ctx, 8 + trees.pos)
        return
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


def _non_symmetric(trees: Any, sizes: list[int], splits: int, leaf_values: int, approx: int, ctx: ScanContext,
                   at: int) -> None:
    """TObliviousTrees.NonSymmetricStepNodes (slot 10: uint16 left and right diffs per node) and
    NonSymmetricNodeIdToLeafId (slot 11): the evaluator walks node += diff until a diff is 0, then reads
    LeafValues[id ... id + approx dimension - 1], unchecked. (Real CatBoost 1.2 files, cross-checked: the
    id is an index into LeafValues, 0, 3, 6… for 3 classes; 0xFFFFFFFF on nodes that are not terminal.)"""
    steps_at, steps = trees.vector_bytes(10, 4, "non-symmetric step nodes")
    _, leaf_ids = trees.vector_bytes(11, 4, "node leaf ids")
    nodes = len(steps) // 4
    if any(s < 0 for s in sizes) or sum(sizes) != splits or nodes != splits:
        raise FormatError(f"{len(sizes):,} non-symmetric trees of {sum(sizes):,} nodes, {nodes:,} step nodes "
                          f"and {splits:,} splits: they must agree", at)
    if len(leaf_ids) != len(steps):
        raise FormatError(f"{nodes:,} step nodes but {len(leaf_ids) // 4:,} node leaf ids", at)
    if leaf_values % approx:
        raise FormatError(f"{leaf_values:,} leaf values for an approximation dimension of {approx}", at)
    walk = zip(struct.iter_unpack("<HH", steps), struct.iter_unpack("<I", leaf_ids), strict=True)
    first = 0  # of the tree's nodes
    for tree, size in enumerate(sizes):
        for i, ((left, right), (leaf,)) in enumerate(itertools.islice(walk, size)):
            ctx.tick(4096)
            if i + max(left, right) >= size:
                raise FormatError(f"node {i:,} of tree {tree:,} steps to node {i + max(left, right):,}, past "
                                  f"the tree's {size:,} nodes", 8 + steps_at + 4 * (first + i))
            if (left == 0 or right == 0) and leaf + approx > leaf_values:
                raise FormatError(f"terminal node {i:,} of tree {tree:,} reads leaf values {leaf:,} to "
                                  f"{leaf + approx - 1:,}, the model has {leaf_values:,}", at)
        first += size
