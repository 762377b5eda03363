"""GGUF tensor infos and tensor data: read each info, check it as llama.cpp does, lay the data out.

A helper of the `gguf` format module, not a format (it is not in the registry). It is separate
because it is the second, self-contained stage of a GGUF file: once the KV pairs have given the
alignment, the tensor infos are read, checked against ggml's limits (names, dimensions, types,
block sizes), placed where llama.cpp's loader expects their data, and any bytes after the last
tensor are sniffed. The functions take the format's `Parser` for its reader, constants and
context (a type only: `gguf` imports this module, never the other way). The rules they report
are in `gguf_rules` with the other GGUF rules.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from airlock.core.errors import FormatError
from airlock.core.findings import Rule, TrailingData
from airlock.core.formats.gguf_rules import (
    BadLayout,
    BadShape,
    DuplicateTensor,
    MalformedHeader,
    Truncated,
    UnknownTensorType,
)
from airlock.core.formats.gguf_values import Short
from airlock.core.source import Source
from airlock.core.text import human_size, safe_text
from airlock.core.tree import DATA, GROUP, TENSOR, Node

if TYPE_CHECKING:
    from airlock.core.formats.gguf import Parser

# Real files have at most tens of thousands of tensors; a hostile count with a file full of tiny
# records would otherwise cost a record per entry (memory, not just time).
MAX_TENSORS = 1_000_000
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME: names of 64 bytes or more are refused
INT64_MAX = 2**63 - 1
HIDDEN_SNIFF_CAP = 64 * 1024**2


class TensorInfo:
    __slots__ = ("data", "dims", "name", "name_len", "nbytes", "offset", "ttype")

    def __init__(self, name: str, offset: int, dims: tuple[int, ...], ttype: int, data: int, name_len: int,
                 nbytes: int | None = None) -> None:
        self.name = name
        self.offset = offset  # of its info record
        self.dims = dims
        self.ttype = ttype
        self.data = data  # offset relative to the data section
        self.name_len = name_len
        self.nbytes = nbytes


def read_infos(p: Parser, pos: int) -> tuple[list[TensorInfo], int]:
    r, n, w = p.r, p.n_tensors, p.r.cnt.size
    infos: list[TensorInfo] = []
    try:
        for j in range(min(n, MAX_TENSORS)):
            p.ctx.tick(256)
            start = pos
            noff, nlen, pos = r.string(pos, f"tensor info #{j + 1} name")
            name = r.text(noff, nlen, 512)
            what = f"tensor info #{j + 1} {safe_text(name, 80)!r}"
            n_dims = r.u32(pos, f"{what} dimension count")
            pos += 4
            if n_dims > MAX_DIMS and n_dims * w > r.size - pos:
                raise FormatError(f"{what} has {n_dims:,} dimensions (at most {MAX_DIMS})", pos - 4)
            r.need(pos, n_dims * w, f"{what} dimensions")
            dims = struct.unpack_from(f"{r.endian}{n_dims}{'Q' if w == 8 else 'I'}", *r.span(pos, n_dims * w))
            pos += n_dims * w
            ttype = r.u32(pos, f"{what} type")
            r.need(pos + 4, 8, f"{what} data offset")
            (data,) = struct.unpack_from(r.endian + "Q", *r.span(pos + 4, 8))
            pos += 12
            infos.append(TensorInfo(name, start, tuple(int(d) for d in dims), ttype, int(data), nlen))
        if n > MAX_TENSORS:
            p.over_limit(n, MAX_TENSORS, "tensors", pos)
    except Short as short:
        p.truncated(short, f"tensor infos {len(infos) + 1:,} to {n:,} of {n:,} and the tensor data")
    except FormatError as exc:
        p.ctx.report(MalformedHeader, f"malformed: {exc.message}; {n - len(infos):,} tensor infos "
                     "were not read", node=p.root, offset=exc.offset)
    return infos, pos


def check_tensors(p: Parser, infos: list[TensorInfo], header_end: int, alignment: int, *,
                  complete: bool) -> None:
    ctx, size, quant = p.ctx, p.r.size, p.c.quant
    data_start = -(-header_end // alignment) * alignment
    p.root.attrs["data_offset"] = data_start
    problems: list[tuple[type[Rule], TensorInfo, str]] = []
    seen: set[str] = set()
    for t in infos:
        ctx.tick(1024)
        label = repr(safe_text(t.name, 80))
        if t.name in seen:
            problems.append((DuplicateTensor, t, f"duplicate tensor name {label}"))
        seen.add(t.name)
        if t.name_len >= MAX_NAME:
            problems.append((BadShape, t, f"tensor name {label} is {t.name_len} bytes (llama.cpp: "
                             f"< {MAX_NAME})"))
        if len(t.dims) > MAX_DIMS:
            problems.append((BadShape, t, f"tensor {label} has {len(t.dims)} dimensions (at most "
                             f"{MAX_DIMS})"))
        numel = 1
        for d in t.dims:
            numel *= d
        if any(d > INT64_MAX for d in t.dims) or numel > INT64_MAX:
            problems.append((BadShape, t, f"tensor {label} shape {t.dims} is negative or overflows "
                             "int64"))
            continue
        if t.ttype not in quant:
            problems.append((UnknownTensorType, t, f"tensor {label} has unknown type {t.ttype}"))
            continue
        _, block, per_block = quant[t.ttype]
        if t.dims and t.dims[0] % block:
            problems.append((BadShape, t, f"tensor {label}: first dimension {t.dims[0]:,} is not a "
                             f"multiple of the {quant[t.ttype][0]} block size {block}"))
            continue
        t.nbytes = numel // block * per_block
    wrong, end, padded = layout(infos, alignment)
    past = [t for t in infos if t.nbytes is not None and data_start + t.data + t.nbytes > size]
    anchors = _add_tensor_nodes(p, infos, data_start, {id(t) for t in past})
    for rule, t, message in problems:
        ctx.report(rule, message, node=anchors.get(t.name, p.root), offset=t.offset)
    if wrong:
        t, want = wrong[0]
        ctx.report(BadLayout, f"tensor {safe_text(t.name, 80)!r} has data offset {t.data:,} where "
                   f"llama.cpp expects {want:,} (the aligned end of the tensor before it); "
                   f"{len(wrong):,} of {len(infos):,} tensors are out of place (holes, overlaps or "
                   "reordering)",
                   node=anchors.get(t.name, p.root), offset=t.offset)
    if past and complete:
        first = min(past, key=lambda t: t.data)
        needed = max(data_start + t.data + (t.nbytes or 0) for t in past)
        ctx.report(Truncated, f"truncated: the file ends at {size:,} but tensor data runs to {needed:,}; "
                   f"{len(past):,} of {len(infos):,} tensors are missing or cut (first "
                   f"{safe_text(first.name, 80)!r}), {human_size(needed - size)} missing",
                   node=anchors.get(first.name, p.root), offset=size)
    if complete and end is not None:
        _trailing(p, header_end if not infos else data_start + end, data_start + padded)


def layout(infos: list[TensorInfo], alignment: int) -> tuple[list[tuple[TensorInfo, int]], int | None, int]:
    """Tensors not where llama.cpp's loader expects them, and the end of the data (bare, padded)."""
    expected, wrong = 0, list[tuple[TensorInfo, int]]()
    for t in infos:
        if t.nbytes is None:
            return wrong, None, 0  # the size of everything after an unknown type is unknown
        if t.data != expected:
            wrong.append((t, expected))
        expected += -(-t.nbytes // alignment) * alignment
    ends = [t.data + (t.nbytes or 0) for t in infos]
    return wrong, max(ends, default=0), max([expected, *ends])


def _add_tensor_nodes(p: Parser, infos: list[TensorInfo], data_start: int, past: set[int]) -> dict[str, Node]:
    from airlock.core.tensor_tree import add_tensor_tree

    quant, member = p.c.quant, p.member
    group = p.root.child(GROUP, f"tensors ({len(infos):,})", offset=data_start, member=member,
                         attrs={"size": sum(t.nbytes or 0 for t in infos)})

    def leaf(label: str, t: TensorInfo) -> Node:
        dtype = quant[t.ttype][0] if t.ttype in quant else f"unknown ({t.ttype})"
        attrs: dict[str, Any] = {"name": safe_text(t.name), "dtype": dtype, "shape": t.dims,
                                 "size": t.nbytes, "data_offset": data_start + t.data,
                                 "info_offset": t.offset, "innermost_first": True}  # GGUF's order of dims
        if id(t) in past:
            attrs["missing"] = True
        return Node(TENSOR, label, offset=data_start + t.data, length=t.nbytes, member=member,
                    attrs=attrs)

    return add_tensor_tree(group, [(t.name, t.nbytes or 0, t) for t in infos], leaf, tick=p.ctx.tick)


def _trailing(p: Parser, start: int, padded_end: int) -> None:
    """Bytes after the last tensor that are more than zero padding: shown and sniffed."""
    source, ctx = p.source, p.ctx
    length = source.size - start
    if length <= 0:
        return
    if source.size <= padded_end and not source.read(start, length).strip(b"\0"):
        return  # alignment padding
    node = p.root.child(DATA, f"bytes after the tensor data ({length:,})", offset=start, length=length,
                        member=p.member, attrs={"size": length,
                                                "preview": safe_text(source.read(start, 32), 48)})
    label = f"<bytes after the GGUF data at {start}>"
    data = source.read(start, min(length, HIDDEN_SNIFF_CAP))
    what = ctx.read_as(Source.from_bytes(data, name=label, member=label, path=source.path), node, label=label)
    ctx.report(TrailingData, f"{length:,} bytes after the tensor data at offset {start:,}; {what}. "
               "llama.cpp ignores them, but they can hide content", node=node, offset=start)
