"""LevelDB-format SSTables as TensorFlow writes them for checkpoint indexes (tensorflow/core/lib/io/table*,
the format of leveldb's doc/table_format.md). A helper of airlock.core.formats.tf_checkpoint, not a format.

Layout: data blocks, a metaindex block, an index block (one entry per data block: the block's last key or a
separator, then its BlockHandle), and a 48-byte footer (the metaindex and index BlockHandles as varint64
offset/size pairs, zero padding, the 8-byte magic 0xdb4775248b80fb57). Every block is followed by a 5-byte
trailer: a compression type byte (0 none, 1 Snappy) and the masked CRC32C of the block and that byte.
A block holds prefix-compressed entries (shared, non-shared and value-length varints, the key's new bytes,
the value), then a restart array of uint32 offsets and its uint32 count.

Read one block at a time with bounded reads, never decompressed: a Snappy block (TF writes bundle indexes
uncompressed) is reported and skipped. CRC32C is computed here in pure Python from a table, since index
files are small; past `CRC_CAP` bytes per file the checksums are not verified and the caller says so.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.formats.protowire import read_varint
from airlock.core.source import Source

MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")
FOOTER = 48
TRAILER = 5
NO_COMPRESSION, SNAPPY = 0, 1
MAX_BLOCK = 64 << 20  # one block read into memory at most (TF's are ~4 KiB; its index block grows with data)
CRC_CAP = 4 << 20  # bytes checksummed per file: pure-Python CRC32C runs at a few MB/s

# Issue kinds the caller turns into findings.
CRC_MISMATCH, COMPRESSED, CRC_UNCHECKED = "crc", "compressed", "crc-unchecked"


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return tuple(table)


_TABLE = _crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """leveldb's masked CRC32C: rotate right by 15 bits, add a constant (a CRC of data holding CRCs)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class Handle(NamedTuple):
    offset: int
    size: int


class Item(NamedTuple):
    key: bytes
    value: bytes
    at: int  # file offset of the entry
    length: int  # bytes of the entry (its varints, key delta and value)


class Issue(NamedTuple):
    kind: str
    message: str
    offset: int


def has_magic(source: Source) -> bool:
    return source.size >= FOOTER and bytes(source.read(source.size - 8, 8)) == MAGIC


def footer(source: Source) -> tuple[Handle, Handle]:
    """(metaindex, index) handles; FormatError when they do not decode or point past the footer."""
    start = source.size - FOOTER
    if start < 0:
        raise FormatError(f"truncated: {source.size} bytes, a table footer alone is {FOOTER}", 0)
    raw = source.read(start, FOOTER)
    if raw[-8:] != MAGIC:
        raise FormatError(f"no table magic in the last 8 bytes (at {source.size - 8:,})", source.size - 8)
    handles, pos = [], 0
    for what in ("metaindex", "index"):
        offset = read_varint(raw, pos, 40)
        size = read_varint(raw, offset[1], 40) if offset is not None else None
        if offset is None or size is None:
            raise FormatError(f"malformed footer: the {what} block handle does not decode "
                              f"(at {start + pos:,})", start + pos)
        handle = Handle(offset[0], size[0])
        if handle.offset + handle.size + TRAILER > start:
            raise FormatError(f"the {what} block handle (offset {handle.offset:,}, {handle.size:,} bytes) "
                              f"runs past the footer at {start:,}", start + pos)
        handles.append(handle)
        pos = size[1]
    return handles[0], handles[1]


class TableReader:
    """Walks a table's entries in the index block's order; issues go to `issues`, breaks raise FormatError."""

    def __init__(self, source: Source, ctx: ScanContext) -> None:
        self.source = source
        self.ctx = ctx
        self.issues: list[Issue] = []
        self.checked = 0  # bytes checksummed so far
        self.metaindex, self.index = footer(source)

    def block(self, handle: Handle, what: str) -> bytes | None:
        """The block's contents with its trailer checked; None for a compressed block (reported)."""
        if handle.size > MAX_BLOCK:
            raise LimitExceeded(f"{what} block at {handle.offset:,} is {handle.size:,} bytes "
                                f"(cap {MAX_BLOCK:,})", handle.offset)
        if handle.offset + handle.size + TRAILER > self.source.size - FOOTER:
            raise FormatError(f"{what} block at {handle.offset:,} ({handle.size:,} bytes and its trailer) "
                              f"runs past the footer at {self.source.size - FOOTER:,}", handle.offset)
        raw = bytes(self.source.read(handle.offset, handle.size + TRAILER))
        if len(raw) != handle.size + TRAILER:
            raise FormatError(f"truncated: {what} block at {handle.offset:,} cut off", handle.offset)
        kind = raw[handle.size]
        if self.checked + len(raw) <= CRC_CAP:
            self.checked += len(raw)
            self.ctx.check()
            stored = struct.unpack_from("<I", raw, handle.size + 1)[0]
            actual = masked_crc(raw[:handle.size + 1])
            if stored != actual:
                message = f"{what} block at {handle.offset:,}: trailer CRC32C 0x{stored:08x}, the bytes "\
                    f"give 0x{actual:08x}"
                self.issues.append(Issue(CRC_MISMATCH, message, handle.offset + handle.size))
        elif not any(i.kind == CRC_UNCHECKED for i in self.issues):
            message = f"block checksums past the first {CRC_CAP:,} bytes (from the {what} block at "\
                f"{handle.offset:,} on) were not verified"
            self.issues.append(Issue(CRC_UNCHECKED, message, handle.offset))
        if kind != NO_COMPRESSION:
            name = "Snappy" if kind == SNAPPY else f"type {kind}"
            message = f"{what} block at {handle.offset:,} is {name}-compressed: its entries were not decoded"
            self.issues.append(Issue(COMPRESSED, message, handle.offset))
            return None
        return raw[:handle.size]

    def items(self) -> Iterator[Item]:
        index = self.block(self.index, "index")
        if index is None:
            return
        for entry in block_items(index, self.index.offset, self.ctx):
            handle = _handle(entry)
            data = self.block(handle, "data")
            if data is not None:
                yield from block_items(data, handle.offset, self.ctx)


def _handle(entry: Item) -> Handle:
    offset = read_varint(entry.value, 0, len(entry.value))
    size = read_varint(entry.value, offset[1], len(entry.value)) if offset is not None else None
    if offset is None or size is None:
        raise FormatError(f"malformed index entry at {entry.at:,}: its block handle does not decode",
                          entry.at)
    return Handle(offset[0], size[0])


def block_items(data: bytes, base: int, ctx: ScanContext) -> Iterator[Item]:
    """Entries of one block (`base`: its file offset), keys rebuilt from their shared prefixes."""
    if len(data) < 4:
        raise FormatError(f"block at {base:,} is {len(data)} bytes, too short for its restart count", base)
    restarts = struct.unpack_from("<I", data, len(data) - 4)[0]
    limit = len(data) - 4 - 4 * restarts
    if restarts == 0 or limit < 0:
        raise FormatError(f"block at {base:,}: {restarts:,} restart points do not fit its {len(data):,} "
                          "bytes", base + len(data) - 4)
    for r in struct.unpack_from(f"<{restarts}I", data, limit):
        if r >= max(limit, 1):
            raise FormatError(f"block at {base:,}: restart point {r:,} is past its entries (which end at "
                              f"{limit:,})", base + limit)
    pos, key = 0, b""
    while pos < limit:
        ctx.tick()
        at = pos
        shared = read_varint(data, pos, limit)
        non_shared = read_varint(data, shared[1], limit) if shared is not None else None
        length = read_varint(data, non_shared[1], limit) if non_shared is not None else None
        if shared is None or non_shared is None or length is None:
            raise FormatError(f"truncated: entry at {base + at:,} cut off in its lengths", base + at)
        pos = length[1]
        if shared[0] > len(key) or pos + non_shared[0] + length[0] > limit:
            raise FormatError(f"entry at {base + at:,} shares {shared[0]:,} key bytes of {len(key):,} or "
                              f"runs past its block's entries (which end at {base + limit:,})", base + at)
        key = key[:shared[0]] + data[pos:pos + non_shared[0]]
        pos += non_shared[0]
        yield Item(key, data[pos:pos + length[0]], base + at, pos + length[0] - at)
        pos += length[0]
