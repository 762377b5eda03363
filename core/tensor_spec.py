"""Tensor descriptions shared by the format readers (which produce them) and the converter.

It lives in the engine, not in `convert/`: format readers never import the converter (an
import-linter contract in pyproject.toml).

A reader describes every tensor from the file's structure alone: where its storage's bytes
are, its dtype, shape, strides and storage offset. Nothing is loaded or executed. The
converter streams the described bytes into a SafeTensors file.
"""

from __future__ import annotations

from typing import Any

from airlock.core import dtypes

# SafeTensors dtype codes the converter writes, and their sizes in bytes (airlock.core.dtypes).
DTYPE_SIZES = dtypes.writable_sizes()

STORED = 0
DEFLATED = 8


class StorageRef:
    """Where one storage's bytes live in the file on disk."""

    __slots__ = ("compressed_size", "compression", "dtype", "file_offset", "key", "location", "member",
                 "nbytes")

    def __init__(self, key: str, dtype: str, nbytes: int, file_offset: int, location: str = "cpu",
                 member: str | None = None, compression: int = STORED,
                 compressed_size: int | None = None) -> None:
        self.key = key  # storage key in the checkpoint ("0", "1", "140234…")
        self.dtype = dtype  # SafeTensors dtype code of its elements
        self.nbytes = nbytes  # bytes of the storage (uncompressed)
        self.file_offset = file_offset  # of the first byte in the file (of compressed data if deflated)
        self.location = location  # device it was saved from; the bytes are the same
        self.member = member  # zip member holding it, if any
        self.compression = compression  # STORED, or DEFLATED (zip member compressed with raw deflate)
        self.compressed_size = compressed_size

    def _values(self) -> tuple[Any, ...]:
        return (self.key, self.dtype, self.nbytes, self.file_offset, self.location, self.member,
                self.compression, self.compressed_size)

    # By value: two views of one storage get equal refs from separate lookups.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageRef) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    @property
    def itemsize(self) -> int:
        return DTYPE_SIZES[self.dtype]


class TensorSpec:
    """One tensor: a strided view of a storage."""

    __slots__ = ("dtype", "shape", "storage", "storage_offset", "strides")

    def __init__(self, dtype: str, shape: tuple[int, ...], strides: tuple[int, ...], storage_offset: int,
                 storage: StorageRef) -> None:
        self.dtype = dtype
        self.shape = shape
        self.strides = strides  # in elements, like torch
        self.storage_offset = storage_offset  # in elements
        self.storage = storage

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


def fortran_strides(shape: tuple[int, ...], strides: object) -> bool:
    """Whether a view with these strides (in elements) is stored in Fortran order: the first index
    fastest, with no gaps (a matrix's `.t()`)."""
    if not isinstance(strides, tuple | list) or len(strides) != len(shape):
        return False
    expected = 1
    for dim, stride in zip(shape, strides, strict=True):
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
        return [(p.items[0], p.items[1]) for p in constructor_pairs(value)] + value.map_items
    return None


def constructor_pairs(value: Any) -> list[Any]:
    """The [key, value] pairs (symbolic lists or tuples) given to `OrderedDict(...)` or `dict(...)`
    as its one argument: how Python 2 pickled an OrderedDict, so how old torch checkpoints (saved
    under Python 2) hold their state dicts. Empty for any other value."""
    from airlock.core.pickle.values import Call, PList, PTuple

    if not isinstance(value, Call) or value.target is None or value.target.dotted not in (
            "collections.OrderedDict", "builtins.dict"):
        return []
    args = value.args
    if not isinstance(args, PTuple) or len(args.items) != 1 or not isinstance(args.items[0], (PList, PTuple)):
        return []
    items = args.items[0].items
    pairs = [p for p in items if isinstance(p, (PList, PTuple)) and len(p.items) == 2]
    return pairs if len(pairs) == len(items) else []
