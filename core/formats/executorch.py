"""ExecuTorch programs (`.pte`): a FlatBuffer with the `ET12` identifier (executorch/schema/program.fbs),
optionally followed by data segments located by the extended header (`eh00`) after the identifier.

Read with the bounded FlatBuffers walk of airlock.core.formats.flatbuf, never with ExecuTorch: every
execution plan's operators (name and overload) and backend delegates (backend id, where its blob is),
the data segments with their offsets.

What the runtime runs besides its portable kernels:
- an operator outside the namespaces ExecuTorch and torch ship (`aten`, `prim`, `quantized_decomposed`…)
  needs a kernel library registered by the application: native code (EXT001, medium);
- a delegate's blob is handed to the backend named by its id, whose native code parses it; a backend id
  ExecuTorch does not ship needs one registered outside it (EXT002, medium). Blobs another format
  claims (a zip, a pickle) are parsed as nested files;
- a delegate or segment that points outside its table or past the end of the file is malformed.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats.contract import file_node
from airlock.core.formats.flatbuf import FlatBuffer, Table
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, DATA, GROUP, OPERATOR, ROLE, Node

NAME = "executorch"
EXTENSIONS = (".pte",)

KNOWN_NAMESPACES = frozenset(
    {
        "aten",
        "prim",
        "prims",
        "executorch_prim",
        "quantized_decomposed",
        "dim_order_ops",
        "llama",
        "quantized",
        "torchao",
        "cadence",
        "et_vk",
        "tosa",
        "mlx",
    }
)
KNOWN_BACKENDS = frozenset(
    {
        "XnnpackBackend",
        "CoreMLBackend",
        "MPSBackend",
        "QnnBackend",
        "VulkanBackend",
        "ArmBackend",
        "EthosUBackend",
        "VgfBackend",
        "NeuropilotBackend",
        "MediaTekBackend",
        "OpenvinoBackend",
        "SamsungBackend",
        "CadenceBackend",
        "NXPBackend",
        "CudaBackend",
        "MetalBackend",
        "ExynosBackend",
        "TensorRTBackend",
        "BackendWithCompilerDemo",
    }
)
INLINE, SEGMENT = 0, 1


class CustomKernel(Rule):
    id = "EXT001"
    severity = Severity.MEDIUM
    title = "ExecuTorch program calls operators outside ExecuTorch's kernels"
    help = (
        "An operator's namespace is not one ExecuTorch or torch ships: the application must register a "
        "kernel library for it (native code outside ExecuTorch)."
    )


class UnknownBackend(Rule):
    id = "EXT002"
    severity = Severity.MEDIUM
    title = "ExecuTorch delegate for a backend ExecuTorch does not ship"
    help = (
        "A delegate's blob goes to a backend registered under this id by the application; its native "
        "code parses the blob."
    )


class Header(NamedTuple):
    program_size: int
    segment_base: int


def sniff(head: bytes, size: int) -> int:
    return 95 if len(head) >= 8 and head[4:8] == b"ET12" else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    try:
        header = _header(source, root)
        buf = FlatBuffer(source.view(), header.program_size or source.size)
        program = buf.root()
        root.attrs["schema version"] = program.scalar(0, "I")
        inline = _vector_spans(program, 3, "delegate data", source)
        segments = _segments(program, ctx, root, source, header)
        _plans(program, ctx, root, source, inline, segments)
    except FormatError as exc:
        ctx.report(
            Malformed,
            f"malformed ExecuTorch program: {exc.message}; the runtime's verifier refuses it",
            node=root,
            offset=exc.offset,
        )
    return root


def _header(source: Source, root: Node) -> Header:
    """The extended header after the identifier: b"eh00", its length, program size, segment base."""
    raw = source.read(8, 24)
    if len(raw) < 24 or raw[:4] != b"eh00":
        return Header(0, 0)
    length, program_size, segment_base = struct.unpack("<IQQ", raw[4:24])
    if length < 24 or program_size > source.size or segment_base > source.size:
        raise FormatError(
            f"extended header says the program is {program_size:,} bytes and segments start at "
            f"{segment_base:,}, in a file of {source.size:,} bytes",
            8,
        )
    root.attrs.update(program_size=program_size, segment_base=segment_base)
    return Header(program_size, segment_base)


def _vector_spans(program: Table, slot: int, what: str, source: Source) -> list[tuple[int, int]]:
    start, count = program.tables(slot, what)
    spans = []
    for i in range(count):
        table = program.element(start, i, what)
        spans.append(table.vector(0, 1, f"{what} {i}"))
    return spans


def _segments(
    program: Table, ctx: ScanContext, root: Node, source: Source, header: Header
) -> list[tuple[int, int]]:
    start, count = program.tables(4, "segments")
    spans = []
    for i in range(count):
        ctx.tick(256)
        seg = program.element(start, i, "segment")
        offset, size = header.segment_base + seg.scalar(0, "Q"), seg.scalar(1, "Q")
        if offset + size > source.size:
            ctx.report(
                Malformed,
                f"segment {i} claims {size:,} bytes at {offset:,}, past the end of the file "
                f"({source.size:,} bytes)",
                node=root,
                offset=seg.pos,
            )
        spans.append((offset, size))
    if spans:
        group = root.child(GROUP, f"segments ({len(spans):,})", member=source.member)
        for i, (offset, size) in enumerate(spans[:1000]):
            group.child(
                DATA, f"segment {i}", offset=offset, length=size, member=source.member, attrs={"size": size}
            )
    return spans


def _plans(
    program: Table,
    ctx: ScanContext,
    root: Node,
    source: Source,
    inline: list[tuple[int, int]],
    segments: list[tuple[int, int]],
) -> None:
    start, count = program.tables(1, "execution plans")
    custom: dict[str, int] = {}
    for p in range(count):
        ctx.check()
        plan = program.element(start, p, "execution plan")
        name = plan.string(0, "plan name") or f"plan {p}"
        node = root.child(
            GROUP,
            f"method {safe_text(name, 80)}",
            offset=plan.pos,
            member=source.member,
            attrs={ROLE: CONTENTS} if p == 0 else None,
        )
        ops_start, ops = plan.tables(6, "operators")
        group = node.child(GROUP, f"operators ({ops:,})", member=source.member)
        for i in range(ops):
            ctx.tick(256)
            op = plan.element(ops_start, i, "operator")
            op_name = op.string(0, "operator name") or ""
            overload = op.string(1, "overload") or ""
            group.child(
                OPERATOR,
                safe_text(op_name + (f".{overload}" if overload else ""), 160),
                offset=op.pos,
                member=source.member,
            )
            namespace = op_name.split("::", 1)[0] if "::" in op_name else ""
            if namespace and namespace not in KNOWN_NAMESPACES:
                custom.setdefault(op_name, op.string_offset(0) or op.pos)
        _delegates(plan, ctx, node, source, inline, segments)
    for op_name, offset in list(custom.items())[:20]:
        ctx.report(
            CustomKernel,
            f"operator {safe_text(op_name, 120)} is not in a namespace ExecuTorch ships: its "
            "kernel is native code the application registers",
            node=root,
            offset=offset,
        )


def _delegates(
    plan: Table,
    ctx: ScanContext,
    node: Node,
    source: Source,
    inline: list[tuple[int, int]],
    segments: list[tuple[int, int]],
) -> None:
    start, count = plan.tables(7, "delegates")
    for i in range(count):
        ctx.tick(64)
        delegate = plan.element(start, i, "delegate")
        backend = delegate.string(0, "backend id") or ""
        ref = delegate.table(1, "delegate data reference")
        location = ref.scalar(0, "b") if ref is not None else INLINE
        index = ref.scalar(1, "I") if ref is not None else 0
        table = inline if location == INLINE else segments
        where = "inline data" if location == INLINE else "segments"
        child = node.child(
            DATA,
            f"delegate {i}: {safe_text(backend, 80)}",
            offset=delegate.pos,
            member=source.member,
            attrs={"backend": safe_text(backend, 80), "location": where, "index": index},
        )
        if backend not in KNOWN_BACKENDS:
            ctx.report(
                UnknownBackend,
                f"delegate {i} names backend {safe_text(backend, 80)!r}, which ExecuTorch "
                "does not ship: its native code parses the delegate's blob",
                node=child,
                offset=delegate.string_offset(0) or delegate.pos,
            )
        if index >= len(table):
            ctx.report(
                Malformed,
                f"delegate {i} points at {where} {index:,}, but there are {len(table):,}",
                node=child,
                offset=delegate.pos,
            )
            continue
        offset, size = table[index]
        child.offset, child.length = offset, size
        child.attrs["size"] = size
        if size and offset + size <= source.size:
            _nested(source, ctx, child, offset, size, i)


def _nested(source: Source, ctx: ScanContext, node: Node, offset: int, size: int, i: int) -> None:
    """A blob another format claims (a zip, a pickle, a flatbuffer Airlock reads) is parsed as a file."""
    from airlock.core.dispatch import sniff

    blob = source.slice(offset, size, name=f"delegate {i}", member=source.member)
    module, _others = sniff(blob)
    if module is not None and module.NAME != "inert":
        ctx.parse_nested(blob, node, label=f"delegate {i} blob")
