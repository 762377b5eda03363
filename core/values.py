"""A tensor's values as pages of a table: the first values, an evenly spaced sample, or a slice.

The values table asks for one page at a time; each page is decoded from the file's bytes by
`airlock.core.tensors` (every dtype it knows, GGML blocks dequantised on the fly), so a page of a
100 GB tensor reads a few kilobytes. A tensor is shown as a table with its last dimension across
(rows labelled with their leading indices); a vector, or a last dimension wider than `MAX_COLUMNS`,
is shown `FLAT_COLUMNS` values a row. Slices are typed as numpy spells them (`0, :, 2:5`) and read
by a small parser here: nothing the user types is evaluated.

ONNX initializers are described here too: their tree nodes locate the TensorProto, and its bytes
(raw_data, or packed float_data/double_data, which are stored the same way) are found by a short
protobuf walk over the node's span.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airlock.core import dtypes, tensors
from airlock.core.errors import FormatError
from airlock.core.formats.protowire import read_varint
from airlock.core.tensors import Read, TensorData
from airlock.core.text import safe_text
from airlock.core.tree import INITIALIZER, Node

if TYPE_CHECKING:
    import numpy as np

FIRST, SAMPLE, SLICE = "first", "sample", "slice"
MAX_COLUMNS = 1024  # wider last dimensions are shown FLAT_COLUMNS values a row
FLAT_COLUMNS = 16
PAGE_VALUES = 20_000  # values decoded for one page (rows × columns)
SAMPLE_COUNT = 1_000  # values in an evenly spaced sample
MAX_SLICE_VALUES = 1_000_000  # a typed slice larger than this is refused, with its size

_INDEX_ITEM = re.compile(r"^\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?(?::\s*(-?\d+)?\s*)?$")


@dataclass(frozen=True)
class Page:
    """One page of the table: `values` is (rows, columns); labels are already escaped."""

    values: np.ndarray
    row_labels: list[str]
    column_labels: list[str]
    start_row: int  # of the whole table (FIRST); 0 for a sample or a slice
    total_rows: int  # rows of the whole table
    note: str = ""  # what the page leaves out (a truncated file, a capped slice)
    valid: int = -1  # values that exist, row by row (the rest of the last row is blank); -1: all
    # Where the cells come from in the tensor (see cell_flat_index): ("rows", columns) for the first
    # values, ("flat", indices) for a sample, ("slice", starts, picked shape, tensor shape) for a slice.
    origin: tuple[Any, ...] = ()

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])


def describe(node: Node, read: Read) -> TensorData | str:
    """Where a tensor's values are (tensors.describe), ONNX initializers included."""
    found = tensors.describe(node)
    if isinstance(found, TensorData) or node.kind != INITIALIZER:
        return found
    return _onnx_initializer(node, read)


def layout(t: TensorData) -> tuple[int, int, bool]:
    """(rows, columns, flat) of the table for this tensor."""
    rows, cols = t.grid()
    if len(t.shape) <= 1 or cols > MAX_COLUMNS or cols == 0:
        return -(-t.numel // FLAT_COLUMNS), FLAT_COLUMNS, True
    return rows, cols, False


def rows_per_page(t: TensorData) -> int:
    _rows, cols, _flat = layout(t)
    return max(1, min(500, PAGE_VALUES // max(cols, 1)))


def first_page(read: Read, t: TensorData, start_row: int = 0, *, file_size: int | None = None) -> Page:
    """The rows of the table from `start_row`, one page of them."""
    import numpy as np

    total_rows, cols, flat = layout(t)
    start_row = max(0, min(start_row, max(total_rows - 1, 0)))
    count = min(rows_per_page(t), total_rows - start_row)
    available = t.numel if file_size is None else t.available(file_size)
    note = ""
    if available < t.numel:
        note = (f"the file ends before this tensor does: {available:,} of its {t.numel:,} values are in the "
                "file")
    if flat:
        begin = start_row * cols
        stop = min(begin + count * cols, available)
        values = tensors.window(read, t, begin, max(0, stop - begin)) if stop > begin else \
            np.zeros(0, dtype=tensors.value_dtype(t))
        padded = _pad(values, count * cols)
        labels = [f"[{(start_row + r) * cols:,}]" for r in range(count)]
        return Page(padded.reshape(count, cols), labels, [f"+{c}" for c in range(cols)], start_row,
                    total_rows, note, valid=values.size, origin=("rows", cols))
    if t.fortran:  # a table row is strided in the file: whole rows only
        last_row = min(start_row + count, available // cols)
        values = tensors.rows(read, t, start_row, max(0, last_row - start_row)).ravel()
    else:
        begin = start_row * cols
        stop = min(begin + count * cols, available)
        values = tensors.window(read, t, begin, max(0, stop - begin))
    valid = values.size
    values = _pad(values, count * cols).reshape(count, cols)  # the file may end inside this page
    leading = t.shape[:-1]
    labels = [_index_label(np.unravel_index(r, leading)) for r in range(start_row, start_row + count)]
    return Page(values, labels, [str(c) for c in range(cols)], start_row, total_rows, note, valid=valid,
                origin=("rows", cols))


def sample_page(read: Read, t: TensorData, count: int = SAMPLE_COUNT, *,
                file_size: int | None = None) -> Page:
    """`count` values at evenly spaced flat indices from the first to the last, one per row."""
    import numpy as np

    available = t.numel if file_size is None else t.available(file_size)
    count = max(0, min(count, available))
    indices = [0] if count == 1 else [i * (available - 1) // (count - 1) for i in range(count)]
    # `indices` are C-order positions; a Fortran-ordered tensor stores them elsewhere.
    values = np.array([tensors.window(read, t, _stored(t, i), 1)[0] for i in indices],
                      dtype=tensors.value_dtype(t))
    shape = t.shape or (1,)
    labels = [f"{i:,}  {_index_label(np.unravel_index(i, shape))}" for i in indices]
    note = "" if available == t.numel else f"sampled over the {available:,} values the file holds"
    return Page(values.reshape(-1, 1), labels, ["value"], 0, len(indices), note,
                origin=("flat", tuple(indices)))


def slice_page(read: Read, t: TensorData, text: str) -> Page:
    """The values of `tensor[text]`, the whole selection on one page (at most MAX_SLICE_VALUES)."""
    import numpy as np

    index = parse_index(text, t.shape)
    size = _selection_size(index, t.shape)
    if size > MAX_SLICE_VALUES:
        raise ValueError(f"the slice holds {size:,} values; the table shows at most {MAX_SLICE_VALUES:,} "
                         "at once (narrow it, or page through the first values)")
    picked = _select(read, t, index)
    origin = ("slice", _starts(index, t.shape), tuple(picked.shape), t.shape)
    if picked.ndim == 0:
        return Page(picked.reshape(1, 1), [_index_label(tuple(i for i in index if isinstance(i, int)))],
                    ["value"], 0, 1, origin=origin)
    if picked.ndim == 1:
        cols = FLAT_COLUMNS
        padded = _pad(picked, -(-picked.size // cols) * cols)
        return Page(padded.reshape(-1, cols), [f"[{r * cols:,}]" for r in range(padded.size // cols)],
                    [f"+{c}" for c in range(cols)], 0, padded.size // cols, valid=picked.size, origin=origin)
    leading = picked.shape[:-1]
    table = picked.reshape(-1, picked.shape[-1])
    labels = [_index_label(np.unravel_index(r, leading)) for r in range(table.shape[0])]
    return Page(table, labels, [str(c) for c in range(table.shape[1])], 0, table.shape[0],
                "indices are relative to the slice", origin=origin)


def cell_flat_index(page: Page, row: int, col: int) -> int | None:
    """The flat index (C order, in the whole tensor) of the value in a cell of the page, or None for a
    blank cell (past the tensor's end, or the file's)."""
    cols = len(page.column_labels)
    if not (0 <= row < page.rows and 0 <= col < cols) or 0 <= page.valid <= row * cols + col:
        return None
    kind = page.origin[0] if page.origin else None
    if kind == "rows":
        return (page.start_row + row) * cols + col
    if kind == "flat":
        return int(page.origin[1][row])
    if kind == "slice":
        starts, picked = page.origin[1], page.origin[2]
        inner = list(_unravel(row * cols + col, picked))
        index = [start if fixed else start + inner.pop(0) for fixed, start in starts]
        return _ravel(index, page.origin[3])
    return None


def value_index(t: TensorData, flat: int) -> tuple[int, ...]:
    """The index of the value at `flat` (C order), one integer per dimension."""
    return _unravel(flat, t.shape)


def value_span(t: TensorData, flat: int) -> tuple[int, int]:
    """(file offset, length) of the bytes that hold the value at `flat`: the element itself, or the
    GGML block it is decoded from."""
    stored = _stored(t, flat)
    return t.offset + (stored // t.unit_elems) * t.unit_bytes, t.unit_bytes


def parse_index(text: str, shape: tuple[int, ...]) -> list[int | slice]:
    """`0, :, 2:5` → [0, slice(None), slice(2, 5)]; brackets optional. Integers and slices only."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    if not body.strip():
        raise ValueError("type an index such as 0, :, 2:5 (integers and slices, one per dimension)")
    items = body.split(",")
    if items and not items[-1].strip() and len(items) > 1:
        items = items[:-1]  # a trailing comma, as numpy allows
    if len(items) > len(shape):
        raise ValueError(f"{len(items)} indices for a tensor of {len(shape)} dimension(s) ({_shape(shape)})")
    out: list[int | slice] = []
    for k, item in enumerate(items):
        match = _INDEX_ITEM.match(item)
        if match is None or not item.strip():
            shown = safe_text(item.strip(), 40)
            raise ValueError(f"index {k + 1} ({shown!r}) is not an integer or a start:stop slice")
        start, stop, step = (int(g) if g is not None else None for g in match.groups())
        if ":" not in item:
            assert start is not None
            if not -shape[k] <= start < shape[k]:
                raise ValueError(f"index {start} is out of range for dimension {k} of size {shape[k]}")
            out.append(start)
        else:
            if step not in (None, 1):
                raise ValueError("slices with a step are not read; use the evenly spaced sample instead")
            out.append(slice(start, stop))
    return out


def format_value(value: Any) -> str:
    """How a value is shown: floats with 7 significant digits, integers whole, booleans as words."""
    kind = getattr(value, "dtype", None)
    code = kind.kind if kind is not None else ""
    if code == "b" or isinstance(value, bool):
        return "true" if value else "false"
    if code in "iu" and code:
        return str(int(value))
    if code == "c" or isinstance(value, complex):
        return f"{complex(value).real:.7g}{complex(value).imag:+.7g}j"
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return f"{number:.7g}"


# Helpers


def _pad(values: np.ndarray, size: int) -> np.ndarray:
    """`values` followed by zeros up to `size` (a page's last row; Page.valid says where they start)."""
    import numpy as np

    if values.size >= size:
        return values[:size]
    filler = np.zeros(size - values.size, dtype=values.dtype)
    return np.concatenate([values, filler])


def _stored(t: TensorData, flat: int) -> int:
    """Where the value at C-order position `flat` is stored: the same place, unless the tensor is in
    Fortran order (first index fastest)."""
    if not t.fortran or not t.shape:
        return flat
    return _ravel(_unravel(flat, t.shape)[::-1], t.shape[::-1])


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's unravel_index in Python integers: a hostile shape may hold more values than an intp."""
    out = []
    for dim in reversed(shape):
        out.append(flat % dim if dim else 0)
        flat = flat // dim if dim else 0
    return tuple(reversed(out))


def _ravel(index: list[int] | tuple[int, ...], shape: tuple[int, ...]) -> int:
    flat = 0
    for i, dim in zip(index, shape, strict=True):
        flat = flat * dim + i
    return flat


def _starts(index: list[int | slice], shape: tuple[int, ...]) -> tuple[tuple[bool, int], ...]:
    """Per dimension: (True, i) for a fixed index, (False, first) for a slice that starts at `first`."""
    out = []
    for k, dim in enumerate(shape):
        ix = index[k] if k < len(index) else slice(None)
        out.append((False, ix.indices(dim)[0]) if isinstance(ix, slice) else (True, ix % dim))
    return tuple(out)


def _index_label(index: tuple[Any, ...]) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _shape(shape: tuple[int, ...]) -> str:
    return " × ".join(str(d) for d in shape) or "scalar"


def _selection_size(index: list[int | slice], shape: tuple[int, ...]) -> int:
    size = 1
    for k, dim in enumerate(shape):
        ix = index[k] if k < len(index) else slice(None)
        if isinstance(ix, slice):
            lo, hi, _ = ix.indices(dim)
            size *= max(0, hi - lo)
    return size


def _select(read: Read, t: TensorData, index: list[int | slice]) -> np.ndarray:
    try:
        return tensors.select(read, t, index)
    except IndexError as exc:
        raise ValueError(str(exc)) from None


# ONNX initializers: the TensorProto fields that hold the values as they are in memory.
_RAW, _FLOATS, _DOUBLES, _DATA_TYPE, _DATA_LOCATION = 9, 4, 10, 2, 14
_MAX_PROTO_READ = 1 << 20  # bytes of a TensorProto read to find where its values start


def _onnx_initializer(node: Node, read: Read) -> TensorData | str:
    from airlock.core.locate import node_location

    attrs = node.attrs
    if attrs.get("location") == "external":
        return "the values are stored in an external file, which is never read"
    if attrs.get("sparse"):
        return "sparse initializers are not shown as a table"
    loc = node_location(node)
    if loc.offset is None or node.length is None:
        return loc.note or "the initializer's bytes are not located in the file"
    parsed = dtypes.parse(str(attrs.get("dtype", "")))
    shape = attrs.get("shape")
    if parsed is None or not isinstance(shape, tuple | list) or not all(isinstance(d, int) for d in shape):
        return "the initializer has no known numeric dtype and shape"
    dtype, _big = parsed
    head = read(loc.offset, min(node.length, _MAX_PROTO_READ))
    try:
        found = _value_field(head, node.length)
    except FormatError as exc:
        return f"the TensorProto does not parse: {exc}"
    if found is None:
        return "the values are stored as protobuf varints (int32_data / int64_data), not as bytes"
    field, start, length = found
    fits = {_RAW: (dtype.code,), _FLOATS: ("F32", "C64"), _DOUBLES: ("F64", "C128")}[field]
    if dtype.code not in fits:
        return f"values in field {field} do not match dtype {dtype.code}"
    t = TensorData(safe_text(node.label, 200), dtype, tuple(int(d) for d in shape), loc.offset + start)
    if t.nbytes > length:
        return f"the initializer holds {length:,} bytes of values, {t.nbytes:,} expected for its shape"
    why = tensors.unsupported(dtype)
    return why if why is not None else t


def _value_field(data: bytes, total: int) -> tuple[int, int, int] | None:
    """(field, offset in the message, length) of raw_data / float_data / double_data."""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            if number in (_RAW, _FLOATS, _DOUBLES):
                if pos + length > total:
                    raise FormatError(f"field {number} runs past the message's end", pos)
                return number, pos, length
            pos += length
        else:
            raise FormatError(f"wire type {wire} at offset {pos}", pos)
    return None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    found = read_varint(data, pos, len(data))
    if found is None:
        raise FormatError("a varint is cut off", pos)
    return found
