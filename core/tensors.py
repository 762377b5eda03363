"""A tensor's bytes in the file, and its values decoded a window at a time.

`describe(node)` turns a tensor node of any format into a `TensorData`: where its bytes start in
the file on disk, its dtype (`airlock.core.dtypes`) and shape. Its values are then decoded from
the file without ever reading it whole: `chunks()` streams them in bounded pieces (what a
comparison of two tensors walks in step), `window()` and `first()` give a short run, `sample()`
evenly spaced runs, `select()` a slice and `rows()` a page of a values table. GGML
block-quantised tensors are dequantised block by block on the fly with gguf's own `gguf.quants`;
SafeTensors' 8-bit floats are decoded here with small tables, since numpy has no such types.

Values come back as numpy arrays in native byte order: the type numpy has for the dtype, or
float32 for the types it lacks (BF16, the 8-bit floats and dequantised blocks hold exactly).
Every read asks `read(offset, n)` (a `Source.read`) for at most one chunk of bytes, so memory is
bounded by the chunk size whatever the tensor's size. numpy and gguf load only when values are
decoded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from airlock.core import dtypes
from airlock.core.dtypes import QUANT, DType
from airlock.core.errors import FormatError
from airlock.core.text import safe_text

if TYPE_CHECKING:
    import numpy as np

    from airlock.core.tree import Node

Read = Callable[[int, int], bytes]  # read(offset, n) -> up to n bytes (fewer at the end of the file)

DEFAULT_CHUNK = 1 << 20  # elements per chunk: a multiple of every GGML block size (32, 64, 128, 256)
MAX_CHUNK_BYTES = 64 << 20  # raw bytes read at once, whatever chunk size a caller asks for
MAX_WINDOW = 1 << 24  # elements `window` / `select` return at most: larger requests stream `chunks`

_F8_TABLES = ("F8_E4M3", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0")


@dataclass(frozen=True)
class TensorData:
    """One tensor's bytes: `numel` elements of `dtype` from file offset `offset`, in C order, or in
    Fortran order (first index fastest) when `fortran` (a NumPy array saved that way)."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    offset: int
    big_endian: bool = False
    fortran: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def unit_elems(self) -> int:
        """Elements per unit read: 1, or a GGML block."""
        return self.dtype.block

    @property
    def unit_bytes(self) -> int:
        return self.dtype.block_bytes

    @property
    def units(self) -> int:
        return -(-self.numel // self.unit_elems)

    @property
    def nbytes(self) -> int:
        return self.units * self.unit_bytes

    def available(self, file_size: int) -> int:
        """Elements whose bytes lie inside a file of `file_size` bytes (a truncated file holds fewer)."""
        units = max(0, min(self.nbytes, file_size - self.offset)) // self.unit_bytes
        return min(self.numel, units * self.unit_elems)

    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the tensor seen as a table: its last dimension across."""
        cols = self.shape[-1] if self.shape else 1
        return (self.numel // cols if cols else 0), cols


@dataclass(frozen=True)
class Chunk:
    start: int  # flat index (C order) of the first value
    values: np.ndarray  # decoded, one-dimensional

    @property
    def stop(self) -> int:
        return self.start + len(self.values)


def unsupported(dtype: DType) -> str | None:
    """Why values of this dtype cannot be decoded, or None when they can."""
    if dtype.numpy is not None or dtype.code == "BF16" or dtype.code == "F8_E5M2" or dtype.code in _F8_TABLES:
        return None
    if dtype.kind == QUANT and dtype.ggml is not None:
        from airlock.core.ggml_blocks import DEQUANTISE, NOT_DECODED

        if dtype.ggml in DEQUANTISE:
            return None
        if dtype.ggml in NOT_DECODED:
            return NOT_DECODED[dtype.ggml]
        try:
            import gguf.quants
        except ImportError:
            return f"{dtype.code} blocks need the gguf package to be dequantised"
        try:
            known = gguf.GGMLQuantizationType(dtype.ggml) in gguf.quants._type_traits
        except ValueError:
            known = False
        return None if known else f"the installed gguf package cannot dequantise {dtype.code}"
    return f"values of dtype {dtype.code} are not decoded"


def describe(node: Node) -> TensorData | str:
    """Where a tensor node's bytes are, or why they cannot be read from the file."""
    from airlock.core.locate import resolve
    from airlock.core.tensor_spec import fortran_strides

    attrs = node.attrs
    dtype_text = attrs.get("st_dtype") or attrs.get("dtype")  # torch nodes carry both spellings
    shape = attrs.get("shape")
    if not isinstance(dtype_text, str) or not isinstance(shape, tuple | list):
        return "this node has no dtype and shape"
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        return "the shape is not a list of sizes"
    dims = tuple(int(d) for d in shape)
    if attrs.get("innermost_first") is True:  # GGUF lists a row's length first; numpy and torch last
        dims = dims[::-1]
    offset = attrs.get("data_offset")
    spec = attrs.get("spec")
    member = node.member
    transposed = False  # a torch view whose strides are Fortran order's (a matrix's .t())
    if not isinstance(offset, int) and spec is not None and hasattr(spec, "storage"):
        if getattr(spec.storage, "compression", 0) not in (0, None):
            return "the tensor's storage is compressed in the archive"
        transposed = not spec.is_contiguous and len(dims) > 1 and fortran_strides(dims, spec.strides)
        if not spec.is_contiguous and not transposed:
            return "the tensor is a non-contiguous view of its storage"
        offset = int(spec.storage.file_offset) + int(spec.storage_offset) * int(spec.storage.itemsize)
        member = None
    if not isinstance(offset, int) and isinstance(node.offset, int) and attrs.get("contiguous") is not False \
            and isinstance(node.length, int) and node.length == attrs.get("size") and node.length > 0:
        offset = node.offset  # the node's byte span is exactly the tensor's data (torch zip, npy)
    if not isinstance(offset, int) and attrs.get("contiguous") is False and isinstance(node.offset, int) \
            and len(dims) > 1 and fortran_strides(dims, attrs.get("strides")):
        offset, transposed = node.offset, True  # the reader's offset is the view's first element
    if not isinstance(offset, int) and attrs.get("contiguous") is False:
        return "the tensor is a non-contiguous view of its storage"
    if not isinstance(offset, int):
        return "the format reader did not record where this tensor's bytes are (data_offset)"
    if member is not None:
        loc = resolve(node, offset, from_member=member)
        if loc.offset is None:
            return loc.note
        offset = loc.offset
    parsed = dtypes.parse(dtype_text)
    if parsed is None:
        return f"dtype {safe_text(dtype_text, 40)} is not a known numeric type"
    dtype, big = parsed
    why = unsupported(dtype)
    if why is not None:
        return why
    name = attrs.get("name")
    return TensorData(safe_text(name if isinstance(name, str) else node.label, 200), dtype, dims, offset, big,
                      fortran=(attrs.get("fortran_order") is True or transposed) and len(dims) > 1)



def from_spec(name: str, spec: Any) -> TensorData | str:
    """A converter `TensorSpec` (a view of a storage) as TensorData, when its bytes are stored as is."""
    storage = spec.storage
    if getattr(storage, "compression", 0) not in (0, None):
        return "the tensor's storage is compressed in the archive"
    if not spec.is_contiguous:
        return "the tensor is a non-contiguous view of its storage"
    dtype = dtypes.get(spec.dtype)
    if dtype is None or dtype.itemsize is None:
        return f"dtype {safe_text(str(spec.dtype), 40)} is not a known numeric type"
    why = unsupported(dtype)
    if why is not None:
        return why
    offset = int(storage.file_offset) + int(spec.storage_offset) * dtype.itemsize
    return TensorData(name, dtype, tuple(int(d) for d in spec.shape), offset)


# Decoding


def value_dtype(t: TensorData) -> np.dtype[Any]:
    """The numpy type of the decoded values: numpy's own for the dtype, else float32."""
    import numpy as np

    return np.dtype(t.dtype.numpy) if t.dtype.numpy is not None else np.dtype(np.float32)


def decode(raw: bytes, t: TensorData) -> np.ndarray:
    """Values of whole units of `t` (elements, or GGML blocks) in `raw`."""
    import numpy as np

    code = t.dtype.code
    order = ">" if t.big_endian else "<"
    if t.dtype.numpy is not None:
        dt = np.dtype(order + t.dtype.numpy)
        return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))
    if code == "BF16":  # the top half of an IEEE float32
        return (np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16).view(np.float32)
    if code == "F8_E5M2":  # the top byte of an IEEE half
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.uint16) << 8).view(np.float16).astype(np.float32)
    if code in _F8_TABLES:
        return _f8_table(code)[np.frombuffer(raw, dtype=np.uint8)]
    if t.dtype.kind == QUANT and t.dtype.ggml is not None:
        import gguf

        from airlock.core.ggml_blocks import DEQUANTISE, dequantise

        blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, t.unit_bytes)
        if t.dtype.ggml in DEQUANTISE:
            return dequantise(blocks, t.dtype.ggml)
        with np.errstate(all="ignore"):  # a file's scales may be Inf or NaN: values, not warnings
            values = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType(t.dtype.ggml))
        return np.ascontiguousarray(values, dtype=np.float32).ravel()
    raise FormatError(f"tensor {t.name}: {unsupported(t.dtype)}", t.offset)


@cache
def _f8_table(code: str) -> np.ndarray:
    """float32 value of each of the 256 bytes of an 8-bit float type."""
    import numpy as np

    b = np.arange(256)
    if code == "F8_E8M0":  # a bare power of two; 0xFF is NaN
        return np.where(b == 255, np.nan, np.exp2(b - 127.0)).astype(np.float32)
    if code == "F8_E5M2FNUZ":
        exp_bits, bias = 5, 16
    else:
        exp_bits, bias = 4, (7 if code == "F8_E4M3" else 8)
    mant_bits = 7 - exp_bits
    sign = np.where(b >> 7, -1.0, 1.0)
    exp = (b >> mant_bits) & ((1 << exp_bits) - 1)
    frac = (b & ((1 << mant_bits) - 1)) / (1 << mant_bits)
    val = sign * np.where(exp == 0, frac * 2.0 ** (1 - bias), (1 + frac) * np.exp2(exp - float(bias)))
    if code == "F8_E4M3":  # E4M3FN: no infinities, one NaN pattern (all ones) per sign
        val[(b & 0x7F) == 0x7F] = np.nan
    else:  # the FNUZ types: no infinities, no negative zero; 0x80 is the only NaN
        val[b == 0x80] = np.nan
    return val.astype(np.float32)


# Reading


def _read_units(read: Read, t: TensorData, first_unit: int, n_units: int) -> np.ndarray:
    want = n_units * t.unit_bytes
    at = t.offset + first_unit * t.unit_bytes
    raw = read(at, want)
    if len(raw) < want:
        raise FormatError(f"tensor {t.name}: {want:,} bytes wanted at offset {at:,}, the file has "
                          f"{len(raw):,} there (it ends before the tensor does)", at + len(raw))
    return decode(raw, t)


def chunks(read: Read, t: TensorData, *, start: int = 0, stop: int | None = None,
           chunk: int = DEFAULT_CHUNK) -> Iterator[Chunk]:
    """The values of elements start..stop-1, in the order they are stored (C order, or Fortran order
    for a `fortran` tensor), in chunks of `chunk` elements (the last one shorter).

    Chunk boundaries depend on `start` and `chunk` only, never on the dtype, so walking two tensors
    with the same arguments yields chunks that line up. A caller that wants to stop (cancel, a
    budget) simply stops iterating. Raises FormatError if the file ends before the data does.
    """
    stop = t.numel if stop is None else min(stop, t.numel)
    if not 0 <= start <= stop:
        raise ValueError(f"element range {start}..{stop} is outside 0..{t.numel}")
    bytes_per_elem = max(1.0, t.unit_bytes / t.unit_elems)
    chunk = max(1, min(chunk, int(MAX_CHUNK_BYTES / bytes_per_elem)))
    pos = start
    while pos < stop:
        end = min(pos + chunk, stop)
        first_unit = pos // t.unit_elems
        last_unit = -(-end // t.unit_elems)
        values = _read_units(read, t, first_unit, last_unit - first_unit)
        skip = pos - first_unit * t.unit_elems
        yield Chunk(pos, values[skip: skip + end - pos])
        pos = end


def window(read: Read, t: TensorData, start: int, count: int) -> np.ndarray:
    """`count` values from flat index `start` (fewer at the end of the tensor)."""
    import numpy as np

    if count > MAX_WINDOW:
        raise ValueError(f"a window of {count:,} values is over the cap of {MAX_WINDOW:,}: use chunks()")
    parts = [c.values for c in chunks(read, t, start=start, stop=min(t.numel, start + count))]
    if not parts:
        return np.zeros(0, dtype=value_dtype(t))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def first(read: Read, t: TensorData, n: int) -> np.ndarray:
    return window(read, t, 0, min(n, t.numel))


def rows(read: Read, t: TensorData, start: int, count: int) -> np.ndarray:
    """Rows start..start+count-1 of the tensor seen as a table (`grid()`: its last dimension across),
    as a (rows, columns) array: one page of a values table."""
    import numpy as np

    n_rows, cols = t.grid()
    stop = min(n_rows, start + count)
    if not t.fortran:
        return window(read, t, start * cols, max(0, stop - start) * cols).reshape(-1, cols)
    # Fortran order: a table row is strided in the file; read each one as a slice.
    leading = t.shape[:-1]
    picked = [select(read, t, [int(i) for i in np.unravel_index(r, leading)]) for r in range(start, stop)]
    return np.stack(picked) if picked else np.zeros((0, cols), dtype=value_dtype(t))


def sample_ranges(t: TensorData, cap: int, *, runs: int = 64, available: int | None = None) \
        -> list[tuple[int, int]]:
    """Element ranges to read: everything if at most `cap` of the `available` values, else `runs`
    evenly spaced runs of whole units, about `cap` values together, from the first value to the last."""
    total = t.numel if available is None else max(0, min(available, t.numel))
    units = -(-total // t.unit_elems)
    cap_units = max(1, cap // t.unit_elems)
    if units <= cap_units:
        return [(0, total)] if total else []
    run = max(1, cap_units // runs)
    last = units - run
    starts = [i * last // (runs - 1) if runs > 1 else 0 for i in range(runs)]
    return [(s * t.unit_elems, min(total, (s + run) * t.unit_elems)) for s in starts]


def sample(read: Read, t: TensorData, cap: int, *, runs: int = 64, available: int | None = None) \
        -> Iterator[Chunk]:
    """The values of `sample_ranges`, chunk by chunk."""
    for begin, end in sample_ranges(t, cap, runs=runs, available=available):
        yield from chunks(read, t, start=begin, stop=end)


def select(read: Read, t: TensorData, index: Sequence[int | slice]) -> np.ndarray:
    """`tensor[index]` for integers and step-1 slices on leading dimensions (numpy's meaning), read
    as runs of contiguous elements: a page of rows is one read, a column many small ones."""
    import itertools

    import numpy as np

    if len(index) > len(t.shape):
        raise IndexError(f"{len(index)} indices for a tensor of {len(t.shape)} dimensions")
    if t.fortran:  # stored as its transpose in C order: select from that, then transpose back
        full = [*index, *[slice(None)] * (len(t.shape) - len(index))]
        stored = replace(t, shape=t.shape[::-1], fortran=False)
        return select(read, stored, full[::-1]).T
    bounds: list[tuple[int, int]] = []
    keep: list[bool] = []
    for dim, ix in itertools.zip_longest(t.shape, index):
        if ix is None:
            bounds.append((0, dim))
            keep.append(True)
        elif isinstance(ix, slice):
            lo, hi, step = ix.indices(dim)
            if step != 1:
                raise IndexError("only slices with step 1 are read")
            bounds.append((lo, max(lo, hi)))
            keep.append(True)
        else:
            i = ix + dim if ix < 0 else ix
            if not 0 <= i < dim:
                raise IndexError(f"index {ix} is out of range for a dimension of {dim}")
            bounds.append((i, i + 1))
            keep.append(False)
    sizes = [hi - lo for lo, hi in bounds]
    total = math.prod(sizes)
    if total > MAX_WINDOW:
        raise ValueError(f"a selection of {total:,} values is over the cap of {MAX_WINDOW:,}: use chunks()")
    strides = [math.prod(t.shape[k + 1:]) for k in range(len(t.shape))]
    inner = len(t.shape)  # dimensions from `inner` on are read whole: one contiguous run per outer index
    while inner > 0 and bounds[inner - 1] == (0, t.shape[inner - 1]):
        inner -= 1
    run_dim = max(inner - 1, 0)
    run = math.prod(sizes[run_dim:]) if t.shape else 1
    parts = []
    if total:
        for outer in itertools.product(*(range(lo, hi) for lo, hi in bounds[:run_dim])):
            flat = sum(i * s for i, s in zip(outer, strides, strict=False))
            flat += bounds[run_dim][0] * strides[run_dim] if t.shape else 0
            parts.append(window(read, t, flat, run))
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=value_dtype(t))
    shape = tuple(n for n, k in zip(sizes, keep, strict=True) if k)
    return values.reshape(shape)


def paired_chunks(read_a: Read, a: TensorData, read_b: Read, b: TensorData, *,
                  chunk: int = DEFAULT_CHUNK) -> Iterator[tuple[Chunk, Chunk]]:
    """Two tensors of the same number of elements walked in step, chunk by chunk (what a numeric
    comparison needs): each pair covers the same flat indices, whatever the two dtypes are."""
    if a.numel != b.numel:
        raise ValueError(f"{a.name} has {a.numel:,} values and {b.name} {b.numel:,}: they cannot be compared")
    if a.fortran != b.fortran:
        raise ValueError(f"{a.name} and {b.name} store their values in different orders (C and Fortran)")
    yield from zip(chunks(read_a, a, chunk=chunk), chunks(read_b, b, chunk=chunk), strict=True)
