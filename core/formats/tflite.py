"""TensorFlow Lite models (`.tflite`): a FlatBuffer with the `TFL3` identifier (lite/schema/schema.fbs).

Read with an own bounded FlatBuffers walk (airlock.core.formats.flatbuf), never with TensorFlow:
operator codes, every subgraph's operators and tensors, the buffers with their offsets (inside the
flatbuffer, or after it for models over 2 GB: `offset`/`size`), metadata entries.

What the interpreter runs besides builtin kernels:
- a custom operator (`custom_code`) runs whatever kernel the application registered under that name:
  native code outside TFLite (medium);
- a `Flex…` operator runs a full TensorFlow kernel through the Select-TF-ops delegate; most are math,
  but TensorFlow's file kernels (`FlexReadFile`, `FlexWriteFile`, `FlexMatchingFiles`, `FlexSave`…)
  read, list or write files on the device (high) and `FlexPyFunc`/`FlexEagerPyFunc` call Python
  (critical);
- indices that point outside their tables (operator codes, tensors, buffers) and buffers outside
  the file are malformed: the interpreter refuses them, another reader may not.
"""

from __future__ import annotations

from typing import NamedTuple

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats import tf_ops
from airlock.core.formats.contract import file_node
from airlock.core.formats.flatbuf import FlatBuffer, Table
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, DATA, GROUP, METADATA, OPERATOR, ROLE, TENSOR, Node

NAME = "tflite"
EXTENSIONS = (".tflite", ".lite")

CUSTOM = 32
MAX_LISTED = 50  # operator codes shown one by one in a finding's count
TENSOR_TYPES = ("float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16", "complex64",
                "int8", "float64", "complex128", "uint64", "resource", "variant", "uint32", "uint16", "int4")
_BUILTIN_NAMES = (  # BuiltinOperator, in enum order (0 ... 161)
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE "
    "EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D "
    "LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 "
    "RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM "
    "CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND "
    "SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE "
    "BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM "
    "CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT "
    "SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT "
    "SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND "
    "LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE "
    "RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL "
    "REVERSE_V2 ADD_N GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE "
    "MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 "
    "SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM "
    "CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND "
    "HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE "
    "ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL "
    "GELU DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX "
    "UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT"
)
BUILTINS = _BUILTIN_NAMES.split()


class CustomOperator(Rule):
    id = "TFL001"
    severity = Severity.MEDIUM
    title = "TFLite custom or Flex operator"
    help = ("The model uses an operator that is not a TFLite builtin: a custom kernel the application must "
            "register (native code outside TFLite), or a Flex op run by TensorFlow's Select-TF-ops delegate.")


class FlexFileAccess(Rule):
    id = "TFL002"
    severity = Severity.HIGH
    title = "TFLite Flex operator reads or writes files"
    help = ("A Flex op runs a TensorFlow kernel that reads, lists or writes files on the device (ReadFile, "
            "WriteFile, MatchingFiles, Save/Restore…) or loads a library: not something inference needs.")


class FlexPython(Rule):
    id = "TFL003"
    severity = Severity.CRITICAL
    title = "TFLite Flex operator calls Python"
    help = "A Flex op names PyFunc or EagerPyFunc, TensorFlow's kernels that call Python functions."


class Code(NamedTuple):
    label: str  # "CONV_2D", "custom MyOp", "Flex ReadFile"
    custom: str | None
    offset: int  # of the custom_code string, or of the table


class Tensor(NamedTuple):
    name: str
    dtype: str
    shape: list[int]
    buffer: int
    offset: int


def sniff(head: bytes, size: int) -> int:
    return 95 if len(head) >= 8 and head[4:8] == b"TFL3" else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    buf = FlatBuffer(source.view(), source.size)
    try:
        model = buf.root()
        root.attrs["schema version"] = model.scalar(0, "I")
        description = model.string(3, "description")
        if description:
            root.attrs["description"] = safe_text(description, 200)
        codes = _operator_codes(model, ctx, root, source)
        buffers = _buffers(model, ctx, root, source)
        _subgraphs(model, ctx, root, source, codes, buffers)
        _metadata(model, ctx, root, source, buffers)
    except FormatError as exc:
        ctx.report(Malformed, f"malformed TFLite flatbuffer: {exc.message}; the interpreter's verifier "
                   "refuses the file", node=root, offset=exc.offset)
    return root


def _operator_codes(model: Table, ctx: ScanContext, root: Node, source: Source) -> list[Code]:
    start, count = model.tables(1, "operator codes")
    codes: list[Code] = []
    for i in range(count):
        ctx.tick(256)
        code = model.element(start, i, "operator code")
        builtin = max(code.scalar(0, "b"), code.scalar(3, "i"))
        custom = code.string(1, "custom code") if builtin == CUSTOM else None
        if custom is not None:
            label = f"Flex {custom[4:]}" if custom.startswith("Flex") else f"custom {custom}"
            codes.append(Code(safe_text(label, 120), custom, code.string_offset(1) or code.pos))
        else:
            name = BUILTINS[builtin] if 0 <= builtin < len(BUILTINS) else f"builtin {builtin}"
            codes.append(Code(name, None, code.pos))
    root.attrs["operator codes"] = len(codes)
    return codes


def _buffers(model: Table, ctx: ScanContext, root: Node, source: Source) -> list[tuple[int, int]]:
    """(offset, length) of every buffer's data in the file; (0, 0) for an empty one."""
    start, count = model.tables(4, "buffers")
    spans: list[tuple[int, int]] = []
    for i in range(count):
        ctx.tick(256)
        buffer = model.element(start, i, "buffer")
        data, length = buffer.vector(0, 1, f"buffer {i}")
        if not length:
            offset, size = buffer.scalar(1, "Q"), buffer.scalar(2, "Q")
            if offset > 1:  # outside the flatbuffer (models over 2 GB)
                if offset + size > source.size:
                    ctx.report(Malformed, f"buffer {i} claims {size:,} bytes at {offset:,}, past the end of "
                               f"the file ({source.size:,} bytes)", node=root, offset=buffer.pos)
                data, length = offset, size
        spans.append((data, length))
    group = root.child(GROUP, f"buffers ({len(spans):,})", member=source.member)
    root.attrs["buffer bytes"] = sum(length for _o, length in spans)

    def page(lo: int, hi: int) -> list[Node]:
        return [Node(DATA, f"buffer {i}", offset=spans[i][0] if spans[i][1] else None,
                     length=spans[i][1] or None, member=source.member, attrs={"size": spans[i][1]})
                for i in range(lo, hi)]

    group.set_lazy_children(len(spans), page)
    return spans


def _subgraphs(model: Table, ctx: ScanContext, root: Node, source: Source, codes: list[Code],
               buffers: list[tuple[int, int]]) -> None:
    start, count = model.tables(2, "subgraphs")
    root.attrs["subgraphs"] = count
    used: dict[int, int] = {}  # operator code index -> first operator's offset
    for s in range(count):
        ctx.check()
        graph = model.element(start, s, "subgraph")
        name = graph.string(4, "subgraph name") or ""
        node = root.child(GROUP, f"subgraph {s}" + (f": {safe_text(name, 80)}" if name else ""),
                          offset=graph.pos, member=source.member, attrs={ROLE: CONTENTS} if s == 0 else None)
        tensors = _tensors(graph, ctx, node, source, buffers, s)
        _operators(graph, ctx, node, source, codes, len(tensors), used, s)
    _judge_codes(ctx, root, codes, used)


def _tensors(graph: Table, ctx: ScanContext, parent: Node, source: Source, buffers: list[tuple[int, int]],
             s: int) -> list[Tensor]:
    start, count = graph.tables(0, f"tensors of subgraph {s}")
    tensors: list[Tensor] = []
    bad = 0
    for i in range(count):
        ctx.tick(256)
        t = graph.element(start, i, "tensor")
        kind = t.scalar(1, "b")
        index = t.scalar(2, "I")
        if index >= max(len(buffers), 1) and index:
            bad += 1
            if bad == 1:
                ctx.report(Malformed, f"subgraph {s} tensor {i} uses buffer {index:,}, but the model has "
                           f"{len(buffers):,} buffers: the interpreter refuses it", node=parent, offset=t.pos)
        dtype = TENSOR_TYPES[kind] if 0 <= kind < len(TENSOR_TYPES) else f"type {kind}"
        shape = t.ints(0, "tensor shape", 16)
        tensors.append(Tensor(t.string(3, "tensor name") or "", dtype, shape, index, t.pos))
    if bad > 1:
        ctx.report(Malformed, f"{bad - 1:,} more tensors of subgraph {s} use buffers that do not exist",
                   node=parent, offset=tensors[0].offset)
    group = parent.child(GROUP, f"tensors ({count:,})", member=source.member)

    def page(lo: int, hi: int) -> list[Node]:
        out = []
        for i in range(lo, hi):
            t = tensors[i]
            data = buffers[t.buffer] if 0 < t.buffer < len(buffers) else (0, 0)
            attrs: dict[str, object] = {"dtype": t.dtype, "shape": t.shape, "buffer": t.buffer}
            out.append(Node(TENSOR, safe_text(t.name or f"tensor {i}", 200), offset=data[0] if data[1] else
                            None, length=data[1] or None, member=source.member, attrs=attrs))
        return out

    group.set_lazy_children(len(tensors), page)
    return tensors


def _operators(graph: Table, ctx: ScanContext, parent: Node, source: Source, codes: list[Code], tensors: int,
               used: dict[int, int], s: int) -> None:
    start, count = graph.tables(3, f"operators of subgraph {s}")
    ops: list[tuple[int, int, list[int], list[int]]] = []
    for i in range(count):
        ctx.tick(256)
        op = graph.element(start, i, "operator")
        index = op.scalar(0, "I")
        inputs, outputs = op.ints(1, "operator inputs", 64), op.ints(2, "operator outputs", 64)
        if index >= len(codes):
            ctx.report(Malformed, f"subgraph {s} operator {i} uses operator code {index:,}, but the model "
                       f"has {len(codes):,}: the interpreter refuses it", node=parent, offset=op.pos)
        else:
            used.setdefault(index, op.pos)
        wild = [t for t in inputs + outputs if not -1 <= t < tensors]
        if wild:
            ctx.report(Malformed, f"subgraph {s} operator {i} names tensor {wild[0]:,}, but the subgraph has "
                       f"{tensors:,}: the interpreter refuses it", node=parent, offset=op.pos)
        ops.append((index, op.pos, inputs, outputs))
    group = parent.child(GROUP, f"operators ({count:,})", member=source.member)

    def page(lo: int, hi: int) -> list[Node]:
        out = []
        for i in range(lo, hi):
            index, pos, inputs, outputs = ops[i]
            label = codes[index].label if index < len(codes) else f"operator code {index}"
            out.append(Node(OPERATOR, f"{i}: {label}", offset=pos, member=source.member,
                            attrs={"inputs": inputs[:16], "outputs": outputs[:16]}))
        return out

    group.set_lazy_children(len(ops), page)


def _judge_codes(ctx: ScanContext, root: Node, codes: list[Code], used: dict[int, int]) -> None:
    group = root.child(GROUP, f"operator codes ({len(codes):,})", member=root.member)
    plain: list[Code] = []
    for i, code in enumerate(codes):
        node = group.child(OPERATOR, code.label, offset=code.offset, member=root.member,
                           attrs={"used": i in used})
        if code.custom is None or i not in used:
            continue
        op = code.custom[4:] if code.custom.startswith("Flex") else None
        shown = safe_text(code.custom, 120)
        if op in tf_ops.PYTHON_OPS:
            ctx.report(FlexPython, f"operator {shown} runs TensorFlow's {op} kernel, which calls a Python "
                       "function", node=node, offset=code.offset)
        elif op in tf_ops.FILE_OPS or op in tf_ops.LIBRARY_OPS:
            ctx.report(FlexFileAccess, f"operator {shown} runs TensorFlow's {op} kernel, which reaches files "
                       "or libraries on the device", node=node, offset=code.offset)
        else:
            plain.append(code)
            node.attrs["kernel"] = "TensorFlow (Flex delegate)" if op is not None else "the application's"
    if plain:
        names = ", ".join(safe_text(c.custom or "", 60) for c in plain[:MAX_LISTED])
        more = f" and {len(plain) - MAX_LISTED:,} more" if len(plain) > MAX_LISTED else ""
        ctx.report(CustomOperator, f"the model uses {len(plain):,} operator(s) that are not TFLite builtins "
                   f"({names}{more}): their kernels come from outside TFLite", node=group,
                   offset=plain[0].offset)


def _metadata(model: Table, ctx: ScanContext, root: Node, source: Source,
              buffers: list[tuple[int, int]]) -> None:
    start, count = model.tables(6, "metadata")
    for i in range(min(count, 256)):
        ctx.tick(64)
        entry = model.element(start, i, "metadata")
        name = entry.string(0, "metadata name") or ""
        index = entry.scalar(1, "I")
        data = buffers[index] if index < len(buffers) else (0, 0)
        if index >= len(buffers):
            ctx.report(Malformed, f"metadata {safe_text(name, 60)} uses buffer {index:,}, but the model has "
                       f"{len(buffers):,} buffers", node=root, offset=entry.pos)
        root.child(METADATA, f"metadata {safe_text(name, 80)}", offset=data[0] if data[1] else entry.pos,
                   length=data[1] or None, member=source.member, attrs={"buffer": index, "size": data[1]})
