"""A TensorFlow checkpoint bundle index (`variables.index`, `ckpt-1.index`) decoded, never judged: the
header and one `Tensor` per entry, plus what broke (tensorflow/core/util/tensor_bundle/tensor_bundle.proto).
A helper of airlock.core.formats.tf_checkpoint (which reports) and of its data-shard reading.

The index is an SSTable (airlock.core.formats.tf_table) whose keys are tensor names in byte order: key
`""` holds the BundleHeaderProto (num_shards 1, endianness 2, version 3 VersionDef), every other key a
BundleEntryProto (dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6, slices 7). The protos are
read with the bounded wire walk of airlock.core.formats.protowire.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.formats import tf_table
from airlock.core.formats.protowire import I32, LEN, VARINT, fields
from airlock.core.formats.tf_table import Issue, TableReader
from airlock.core.source import Source
from airlock.core.text import safe_text

MAX_ENTRIES = 2_000_000  # tensors kept per index (a few hundred bytes each)
KEY_CHARS = 300

# TF's DataType enum (tensorflow/core/framework/types.proto): number → (name, bytes per element or 0).
# Names are the ones airlock.core.dtypes parses, so a data shard's tensors open in the values view.
DTYPES: dict[int, tuple[str, int]] = {
    1: ("float32", 4), 2: ("float64", 8), 3: ("int32", 4), 4: ("uint8", 1), 5: ("int16", 2), 6: ("int8", 1),
    7: ("string", 0), 8: ("complex64", 8), 9: ("int64", 8), 10: ("bool", 1), 11: ("qint8", 1),
    12: ("quint8", 1), 13: ("qint32", 4), 14: ("bfloat16", 2), 15: ("qint16", 2), 16: ("quint16", 2),
    17: ("uint16", 2), 18: ("complex128", 16), 19: ("float16", 2), 20: ("resource", 0), 21: ("variant", 0),
    22: ("uint32", 4), 23: ("uint64", 8), 24: ("float8_e5m2", 1), 25: ("float8_e4m3fn", 1),
    26: ("float8_e4m3fnuz", 1), 27: ("float8_e4m3b11fnuz", 1), 28: ("float8_e5m2fnuz", 1),
    29: ("int4", 0), 30: ("uint4", 0), 31: ("int2", 0), 32: ("uint2", 0),  # sub-byte: size not checked
}
STRING, RESOURCE, VARIANT = 7, 20, 21
LITTLE, BIG = 0, 1


class Header(NamedTuple):
    num_shards: int
    endianness: int
    producer: int
    min_consumer: int
    at: int
    length: int


class Tensor(NamedTuple):
    name: str  # escaped for display
    dtype: int
    shape: tuple[int, ...] | None  # None: unknown rank
    shard: int
    offset: int
    size: int
    crc32c: int | None
    slices: int
    at: int  # the entry's offset in the index file
    length: int

    @property
    def dtype_name(self) -> str:
        return DTYPES[self.dtype][0] if self.dtype in DTYPES else f"DataType {self.dtype}"

    def expected_size(self) -> int | None:
        """Bytes a fixed-size dtype and fully known shape need; None when that cannot be said."""
        itemsize = DTYPES.get(self.dtype, ("", 0))[1]
        if not itemsize or self.shape is None or self.slices or any(d < 0 for d in self.shape):
            return None
        return math.prod(self.shape) * itemsize


class Bundle(NamedTuple):
    header: Header | None
    tensors: list[Tensor]
    issues: list[Issue]  # from the table: CRC mismatches, compressed blocks, unchecked checksums
    disorder: list[tuple[str, int]]  # (message, offset): keys out of order or repeated
    header_problem: tuple[str, int] | None  # the header is missing or does not decode


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def read_bundle(source: Source, ctx: ScanContext) -> Bundle:
    """Every entry of the index; FormatError / LimitExceeded when the table itself breaks."""
    table = TableReader(source, ctx)
    header: Header | None = None
    header_problem: tuple[str, int] | None = None
    tensors: list[Tensor] = []
    disorder: list[tuple[str, int]] = []
    previous: bytes | None = None
    for item in table.items():
        if previous is not None and item.key <= previous:
            what = "repeats the key before it" if item.key == previous else \
                f"sorts before the key before it ({safe_text(previous, 80)!r})"
            disorder.append((f"key {safe_text(item.key, 80)!r} at {item.at:,} {what}", item.at))
        previous = item.key
        if item.key == b"":
            try:
                header = _header(item.value, item.at, item.length)
            except FormatError as exc:
                header_problem = (f"the header entry at {item.at:,} does not decode: {exc.message}", item.at)
            continue
        if len(tensors) >= MAX_ENTRIES:
            raise LimitExceeded(f"more than {MAX_ENTRIES:,} tensor entries; the rest were not read", item.at)
        try:
            tensors.append(_entry(item.key, item.value, item.at, item.length))
        except FormatError as exc:
            raise FormatError(f"entry {safe_text(item.key, 80)!r} at {item.at:,} does not decode: "
                              f"{exc.message}", item.at) from None
    unread = any(i.kind == tf_table.COMPRESSED for i in table.issues)  # the header may sit in that block
    if header is None and header_problem is None and not unread:
        header_problem = ("no header entry (the empty key holding BundleHeaderProto)", 0)
    return Bundle(header, tensors, table.issues, disorder, header_problem)


def _header(value: bytes, at: int, length: int) -> Header:
    shards = endian = producer = min_consumer = 0
    for number, wire, v, pos in fields(value, 0, len(value)):
        if number == 1 and wire == VARINT:
            shards = signed(v)
        elif number == 2 and wire == VARINT:
            endian = v
        elif number == 3 and wire == LEN:
            for n2, w2, v2, _ in fields(value, pos, pos + v):
                if n2 == 1 and w2 == VARINT:
                    producer = signed(v2)
                elif n2 == 2 and w2 == VARINT:
                    min_consumer = signed(v2)
    return Header(shards, endian, producer, min_consumer, at, length)


def _entry(key: bytes, value: bytes, at: int, length: int) -> Tensor:
    dtype = shard = offset = size = slices = 0
    crc: int | None = None
    shape: tuple[int, ...] | None = ()
    for number, wire, v, pos in fields(value, 0, len(value)):
        if wire == VARINT and number in (1, 3, 4, 5):
            if number == 1:
                dtype = v
            elif number == 3:
                shard = signed(v)
            elif number == 4:
                offset = signed(v)
            else:
                size = signed(v)
        elif number == 2 and wire == LEN:
            shape = _shape(value, pos, pos + v)
        elif number == 6 and wire == I32:
            crc = int.from_bytes(value[pos:pos + 4], "little")
        elif number == 7 and wire == LEN:
            slices += 1
    return Tensor(safe_text(key, KEY_CHARS), dtype, shape, shard, offset, size, crc, slices, at, length)


def _shape(value: bytes, start: int, end: int) -> tuple[int, ...] | None:
    dims: list[int] = []
    for number, wire, v, pos in fields(value, start, end):
        if number == 3 and wire == VARINT and v:
            return None  # unknown_rank
        if number == 2 and wire == LEN:
            size = 0
            for n2, w2, v2, _ in fields(value, pos, pos + v):
                if n2 == 1 and w2 == VARINT:
                    size = signed(v2)
            dims.append(size)
    return tuple(dims)
