"""Tensor descriptions shared by the format readers (which produce them) and the converter.

A reader describes every tensor from the file's structure alone: where its storage's bytes
are, its dtype, shape, strides and storage offset. Nothing is loaded or executed. The
converter streams the described bytes into a SafeTensors file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# SafeTensors dtype codes and their sizes in bytes.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1,  # safetensors >= 0.6 reads and writes these too
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
    "C64": 8,
}

STORED = 0
DEFLATED = 8


@dataclass(frozen=True, slots=True)
class StorageRef:
    """Where one storage's bytes live in the file on disk."""

    key: str                 # storage key in the checkpoint ("0", "1", "140234…")
    dtype: str               # SafeTensors dtype code of its elements
    nbytes: int              # bytes of the storage (uncompressed)
    file_offset: int         # offset in the file of the first byte (of compressed data if deflated)
    location: str = "cpu"    # device it was saved from; the bytes are the same
    member: str | None = None  # zip member holding it, if any
    compression: int = STORED  # STORED, or DEFLATED (zip member compressed with raw deflate)
    compressed_size: int | None = None

    @property
    def itemsize(self) -> int:
        return DTYPE_SIZES[self.dtype]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor: a strided view of a storage."""

    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements, like torch
    storage_offset: int       # in elements
    storage: StorageRef

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_SIZES[self.dtype]

    @property
    def is_contiguous(self) -> bool:
        expected = 1
        for dim, stride in zip(reversed(self.shape), reversed(self.strides), strict=True):
            if dim != 1 and stride != expected:
                return False
            expected *= dim
        return True


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides = []
    step = 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


def as_mapping(value: Any) -> list[tuple[Any, Any]] | None:
    """Key/value pairs of a dict-like symbolic value (dict, OrderedDict(), dict(...)), else None."""
    from airlock.core.pickle.values import Call, PDict

    if isinstance(value, PDict):
        return value.items
    if isinstance(value, Call) and value.target is not None and value.target.dotted in (
            "collections.OrderedDict", "builtins.dict", "collections.defaultdict"):
        return value.map_items
    return None
