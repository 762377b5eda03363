"""ONNX input: the main graph's initializers stored as `raw_data` (always little-endian).

The protobuf is walked field by field over the file, read in blocks (only tags and small fields
are touched; `raw_data` payloads are skipped and later streamed by the writer), so neither the
`onnx` package nor protobuf parses the file in this process. Initializers kept in typed fields
(`float_data`…), in external files, or of string type are listed as skipped.
"""

from __future__ import annotations

from typing import Any

from airlock.core import dtypes
from airlock.core.convert.model import ConvertError, OutTensor, Plan
from airlock.core.tensor_spec import DTYPE_SIZES, StorageRef, TensorSpec, contiguous_strides
from airlock.core.text import safe_text

# ONNX data types the converter writes → their SafeTensors code.
_DTYPES = {onnx: d.code for onnx, d in dtypes.BY_ONNX.items() if d.writable}
GRAPH, INITIALIZER = 7, 5
T_DIMS, T_TYPE, T_NAME, T_RAW, T_EXTERNAL, T_LOCATION = 1, 2, 8, 9, 13, 14


def _fields(buf: Any, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(number, wire type, value or length, payload offset) of one message's fields."""
    from airlock.core.formats.protowire import read_varint

    out = []
    pos = start
    while pos < end:
        tag = read_varint(buf, pos, end)
        if tag is None:
            raise ConvertError(f"ONNX: field tag cut off at offset {pos}")
        key, pos = tag
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = read_varint(buf, pos, end)
            if value is None:
                raise ConvertError(f"ONNX: varint cut off at offset {pos}")
            out.append((number, wire, value[0], pos))
            pos = value[1]
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            out.append((number, wire, int.from_bytes(buf[pos:pos + width], "little"), pos))
            pos += width
        elif wire == 2:
            length = read_varint(buf, pos, end)
            if length is None or length[1] + length[0] > end:
                raise ConvertError(f"ONNX: field {number} at offset {pos} runs past its message")
            out.append((number, wire, length[0], length[1]))
            pos = length[1] + length[0]
        else:
            raise ConvertError(f"ONNX: unsupported wire type {wire} at offset {pos}")
    if pos != end:
        raise ConvertError(f"ONNX: message overruns its end at offset {end}")
    return out


def plan_onnx(path: str, plan: Plan) -> None:
    from airlock.core.formats.onnx import top_fields
    from airlock.core.source import Source

    with Source.open(path) as source:
        buf = source.view()
        top, problem = top_fields(buf, source.size, source.size)
        if problem is not None:
            raise ConvertError(f"ONNX: {problem}")
        graphs = [(length, payload) for number, _s, length, payload in top if number == GRAPH]
        if not graphs:
            raise ConvertError("ONNX: the model has no graph")
        # A graph field repeated on the wire is one merged graph to protobuf (and so to onnx.load):
        # repeated fields such as the initializers are concatenated, in order.
        found = 0
        for length, payload in graphs:
            for number, wire, size, start in _fields(buf, payload, payload + length):
                if number == INITIALIZER and wire == 2:
                    found += 1
                    _initializer(buf, start, start + size, path, plan)
        if not found:
            raise ConvertError("ONNX: the main graph has no initializers; weights held in Constant "
                               "operators or in subgraphs (If/Loop bodies) are not converted")


def _initializer(buf: Any, start: int, end: int, path: str, plan: Plan) -> None:
    dims: list[int] = []
    dtype_code, name, raw, external = 0, "", None, False
    for number, wire, value, pos in _fields(buf, start, end):
        if number == T_DIMS and wire == 0:
            dims.append(value)
        elif number == T_DIMS and wire == 2:
            dims += [d for d, _ in _packed(buf, pos, pos + value)]
        elif number == T_TYPE and wire == 0:
            dtype_code = value
        elif number == T_NAME and wire == 2:
            name = bytes(buf[pos:pos + value]).decode("utf-8", "replace")
        elif number == T_RAW and wire == 2:
            raw = (pos, value)
        elif number in (T_EXTERNAL, T_LOCATION):
            external = external or number == T_EXTERNAL or value == 1
    label = safe_text(name or f"<unnamed at {start}>")
    dtype = _DTYPES.get(dtype_code)
    if dtype is None:
        plan.skipped.append((label, f"ONNX data type {dtype_code} has no SafeTensors equivalent"))
        return
    if external:
        plan.skipped.append((label, "stored in an external data file: not read"))
        return
    if raw is None:
        plan.skipped.append((label, "values kept in typed protobuf fields, not raw_data: not converted"))
        return
    shape = tuple(d if d < 1 << 63 else d - (1 << 64) for d in dims)
    numel = 1
    for d in shape:
        if d < 0:
            plan.skipped.append((label, f"negative dimension {d}"))
            return
        numel *= d
    if numel * DTYPE_SIZES[dtype] != raw[1]:
        plan.skipped.append((label, f"raw_data holds {raw[1]} bytes, {dtype} {list(shape)} needs "
                                    f"{numel * DTYPE_SIZES[dtype]}"))
        return
    ref = StorageRef(name, dtype, raw[1], raw[0])
    spec = TensorSpec(dtype, shape, contiguous_strides(shape), 0, ref)
    plan.tensors.append(OutTensor(name, dtype, shape, spec, path=path))


def _packed(buf: Any, start: int, end: int) -> list[tuple[int, int]]:
    from airlock.core.formats.protowire import read_varint

    out = []
    pos = start
    while pos < end:
        value = read_varint(buf, pos, end)
        if value is None:
            raise ConvertError(f"ONNX: packed dims cut off at offset {pos}")
        out.append((value[0], pos))
        pos = value[1]
    return out
