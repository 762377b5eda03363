"""GGUF input: tensors whose type is a plain SafeTensors dtype are copied; quantized ones are
dequantized with the `gguf` package when asked. A quantized GGUF converted without
`dequantize` is refused unless `skip_quantized` says a file without those tensors is wanted: the
quantized tensors are usually the model's weights, and a SafeTensors file holding only the
norms and embeddings must never look like a finished conversion.

The header is read here with explicit bounds checks rather than with gguf-py's `GGUFReader`,
which builds numpy views of every field eagerly and trusts counts from the file. GGUF lists
dimensions innermost first; SafeTensors (like torch) outermost first, so they are reversed.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import Any

from airlock.core import dtypes
from airlock.core.convert.model import ConvertError, OutTensor, Plan
from airlock.core.tensor_spec import StorageRef, TensorSpec, contiguous_strides
from airlock.core.text import safe_text

_PLAIN = dtypes.ggml_plain()  # GGML types that are plain arrays → their SafeTensors code
# KV value types: struct format of fixed-size ones.
_FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
          12: "<d"}
STRING, ARRAY = 8, 9
MAX_DIMS = 8


class _Reader:
    def __init__(self, fh: io.BufferedReader, size: int) -> None:
        self.fh, self.size = fh, size

    def take(self, n: int) -> bytes:
        pos = self.fh.tell()
        if n < 0 or pos + n > self.size:
            raise ConvertError(f"GGUF header: {n} bytes wanted at offset {pos}, the file has {self.size}")
        return self.fh.read(n)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        return self.take(n).decode("utf-8", "replace")

    def skip_string(self) -> None:
        n = self.unpack("<Q")
        if self.fh.tell() + n > self.size:
            raise ConvertError(f"GGUF header: string of {n} bytes runs past the end of the file")
        self.fh.seek(n, io.SEEK_CUR)

    def value(self, vtype: int, depth: int = 0) -> Any:
        """A KV value; arrays are skipped (they never become metadata) and described instead."""
        if vtype in _FIXED:
            return self.unpack(_FIXED[vtype])
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY and depth < 4:
            itype, count = self.unpack("<I"), self.unpack("<Q")
            if itype in _FIXED:
                n = struct.calcsize(_FIXED[itype]) * count
                self.take(0)
                if self.fh.tell() + n > self.size:
                    raise ConvertError(f"GGUF header: array of {count} items runs past the end of the file")
                self.fh.seek(n, io.SEEK_CUR)
            elif itype == STRING:
                if count * 8 > self.size - self.fh.tell():
                    raise ConvertError(f"GGUF header: array of {count} strings cannot fit in the file")
                for _ in range(count):
                    self.skip_string()
            else:
                if count * 12 > self.size - self.fh.tell():
                    raise ConvertError(f"GGUF header: array of {count} arrays cannot fit in the file")
                for _ in range(count):
                    self.value(itype, depth + 1)
            return _ArrayInfo(count)
        raise ConvertError(f"GGUF header: unknown value type {vtype}")


class _ArrayInfo:
    def __init__(self, count: int) -> None:
        self.count = count


def plan_gguf(path: str, plan: Plan, *, dequantize: bool, skip_quantized: bool = False) -> None:
    with open(path, "rb") as fh:
        size = fh.seek(0, io.SEEK_END)
        fh.seek(0)
        r = _Reader(fh, size)
        if r.take(4) != b"GGUF":
            raise ConvertError("not a GGUF file")
        version = r.unpack("<I")
        if version not in (2, 3):
            raise ConvertError(f"GGUF version {version} is not supported")
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        if n_tensors * 24 > size or n_kv * 12 > size:
            raise ConvertError(f"GGUF header claims {n_tensors} tensors and {n_kv} values: more than the "
                               "file holds")
        alignment = 32
        for _ in range(n_kv):
            key = r.string()
            value = r.value(r.unpack("<I"))
            if key == "general.alignment" and isinstance(value, int) and not isinstance(value, bool):
                if value <= 0 or value & (value - 1):
                    raise ConvertError(f"GGUF alignment {value} is not a power of two")
                alignment = value
            if isinstance(value, _ArrayInfo):
                plan.skipped.append((safe_text(key), f"array of {value.count} values; not kept"))
            else:
                plan.metadata[key] = repr(value) if isinstance(value, float) else str(value)
        infos = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.unpack("<I")
            if n_dims > MAX_DIMS:
                raise ConvertError(f"GGUF tensor {safe_text(name)!r} has {n_dims} dimensions")
            dims = tuple(r.unpack("<Q") for _ in range(n_dims))
            infos.append((name, dims, r.unpack("<I"), r.unpack("<Q")))
        data_start = -(-fh.tell() // alignment) * alignment
    quantized: dict[str, int] = {}
    for name, dims, ttype, offset in infos:
        qtype = _add_tensor(path, plan, name, tuple(reversed(dims)), ttype, data_start + offset, size,
                            dequantize)
        if qtype is not None:
            quantized[qtype] = quantized.get(qtype, 0) + 1
    if quantized and not skip_quantized:
        kinds = ", ".join(f"{n} {q}" for q, n in sorted(quantized.items(), key=lambda kv: -kv[1]))
        raise ConvertError(
            f"{sum(quantized.values())} of {len(infos)} tensors are quantized ({kinds}) and SafeTensors "
            "has no quantized dtypes: pass --dequantize to write them as F32 (about 4-8x the size), or "
            "--skip-quantized to write only the other tensors")


def _add_tensor(path: str, plan: Plan, name: str, shape: tuple[int, ...], ttype: int, offset: int,
                size: int, dequantize: bool) -> str | None:
    """Add one tensor to the plan; the name of its quantization type when it was left out."""
    numel = 1
    for d in shape:
        numel *= d
    label = safe_text(name)
    dtype = _PLAIN.get(ttype)
    if dtype is not None:
        from airlock.core.tensor_spec import DTYPE_SIZES

        ref = StorageRef(name, dtype, numel * DTYPE_SIZES[dtype], offset)
        plan.tensors.append(OutTensor(name, dtype, shape, TensorSpec(dtype, shape, contiguous_strides(shape),
                                                                     0, ref), path=path))
        return None
    import gguf

    try:
        qtype = gguf.GGMLQuantizationType(ttype)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        plan.skipped.append((label, f"unknown GGML type {ttype}"))
        return None
    if not shape or shape[-1] % block:
        plan.skipped.append((label, f"{qtype.name}: innermost dimension is not a multiple of {block}"))
        return None
    nbytes = numel // block * type_size
    if offset + nbytes > size:
        raise ConvertError(f"GGUF tensor {label!r} at offset {offset} runs past the end of the file")
    if not dequantize:
        plan.skipped.append((label, f"quantized {qtype.name}: not converted (--skip-quantized)"))
        return str(qtype.name)
    producer = _dequantizer(path, offset, nbytes // type_size, block, type_size, qtype)
    plan.tensors.append(OutTensor(name, "F32", shape, producer=producer))
    return None


DEQUANTIZE_OUT = 8 * 1024 * 1024  # F32 bytes produced at once, whatever the tensor's size


def _dequantizer(path: str, offset: int, blocks: int, block: int, type_size: int, qtype: Any) -> Any:
    """Quantization blocks are dequantized a few thousand at a time: every row is a whole number
    of blocks, so the blocks in file order give the F32 elements in C order, and memory stays
    bounded (a whole 500 MB tensor at once became 4 GB of F32)."""
    def produce() -> Iterator[bytes]:
        import gguf
        import numpy as np

        step = max(1, DEQUANTIZE_OUT // (block * 4))
        with open(path, "rb") as fh:
            fh.seek(offset)
            for first in range(0, blocks, step):
                count = min(step, blocks - first)
                raw = fh.read(count * type_size)
                if len(raw) != count * type_size:
                    raise ConvertError(f"GGUF tensor data at offset {offset} ends early")
                rows = np.frombuffer(raw, dtype=np.uint8).reshape(count, type_size)
                out = np.ascontiguousarray(gguf.quants.dequantize(rows, qtype), dtype="<f4")
                yield out.tobytes()

    return produce
