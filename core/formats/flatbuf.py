"""A small, bounded FlatBuffers reader (for TFLite; ExecuTorch `.pte` and onnxruntime `.ort` use the same
encoding).

Only what a schema walk needs: the root table, a table's fields through its vtable, scalars, strings,
vectors of scalars and of tables. Every offset is checked against the buffer before it is followed,
vector lengths against the bytes left before anything is allocated, strings are cut at a cap. A
structure that points outside the buffer raises FormatError with the offset, the way the
FlatBuffers verifier that TFLite runs first would refuse the file. The bytes come from a
`Source.view()`, so a large file is read a window at a time, never whole.
"""

from __future__ import annotations

import struct
from typing import Any

from airlock.core.errors import FormatError, LimitExceeded

MAX_STRING = 4096  # bytes of one string kept (names, custom codes); longer ones are cut
# Tables walked per vector (tensors, operators, buffers): vectors of 4-byte offsets can all point at one
# table, so a 400 MB file could ask for 100 M records. No real model comes near; past it is a limit.
MAX_TABLES = 1_000_000


class FlatBuffer:
    def __init__(self, view: Any, size: int) -> None:
        self.view = view
        self.size = size

    def _bytes(self, pos: int, n: int, what: str) -> bytes:
        if pos < 0 or pos + n > self.size:
            raise FormatError(f"truncated: {what} at {pos:,} runs past the end of the file "
                              f"({self.size:,} bytes)", max(pos, 0))
        data: bytes = self.view[pos:pos + n]
        return data

    def u8(self, pos: int, what: str = "byte") -> int:
        return self._bytes(pos, 1, what)[0]

    def u16(self, pos: int, what: str = "vtable entry") -> int:
        value: int = struct.unpack("<H", self._bytes(pos, 2, what))[0]
        return value

    def u32(self, pos: int, what: str = "offset") -> int:
        value: int = struct.unpack("<I", self._bytes(pos, 4, what))[0]
        return value

    def i32(self, pos: int, what: str = "offset") -> int:
        value: int = struct.unpack("<i", self._bytes(pos, 4, what))[0]
        return value

    def u64(self, pos: int, what: str = "value") -> int:
        value: int = struct.unpack("<Q", self._bytes(pos, 8, what))[0]
        return value

    def root(self) -> Table:
        return self.table(self.u32(0, "root offset"), "root table")

    def table(self, pos: int, what: str) -> Table:
        vtable = pos - self.i32(pos, what)
        vt_size = self.u16(vtable, f"vtable of the {what}")
        if vt_size < 4 or vt_size % 2:
            raise FormatError(f"malformed {what}: its vtable at {vtable:,} declares {vt_size} bytes "
                              "(at least 4, and even)", pos)
        self._bytes(vtable, vt_size, f"vtable of the {what}")
        return Table(self, pos, vtable, vt_size, what)


class Table:
    __slots__ = ("buf", "pos", "vt_size", "vtable", "what")

    def __init__(self, buf: FlatBuffer, pos: int, vtable: int, vt_size: int, what: str) -> None:
        self.buf = buf
        self.pos = pos
        self.vtable = vtable
        self.vt_size = vt_size
        self.what = what

    def field(self, slot: int) -> int | None:
        """Absolute offset of a field's value, or None when it is absent (its default)."""
        entry = 4 + 2 * slot
        if entry + 2 > self.vt_size:
            return None
        rel = self.buf.u16(self.vtable + entry)
        return self.pos + rel if rel else None

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        at = self.field(slot)
        if at is None:
            return default
        size = struct.calcsize("<" + fmt)
        raw = self.buf._bytes(at, size, f"field {slot} of the {self.what}")
        value: int = struct.unpack("<" + fmt, raw)[0]
        return value

    def _target(self, slot: int, what: str) -> int | None:
        at = self.field(slot)
        if at is None:
            return None
        return at + self.buf.u32(at, what)

    def table(self, slot: int, what: str) -> Table | None:
        target = self._target(slot, what)
        return None if target is None else self.buf.table(target, what)

    def string(self, slot: int, what: str = "string") -> str | None:
        target = self._target(slot, what)
        if target is None:
            return None
        length = self.buf.u32(target, what)
        self.buf._bytes(target + 4, length, what)  # the whole string must be inside the buffer
        return self.buf._bytes(target + 4, min(length, MAX_STRING), what).decode("utf-8", "replace")

    def string_offset(self, slot: int) -> int | None:
        """Where a string's bytes start (for findings that point at a name)."""
        target = self._target(slot, "string")
        return None if target is None else target + 4

    def vector(self, slot: int, elem_size: int, what: str) -> tuple[int, int]:
        """(first element's offset, count); (0, 0) when absent. The elements must fit the buffer."""
        target = self._target(slot, what)
        if target is None:
            return 0, 0
        count = self.buf.u32(target, what)
        if count * elem_size > self.buf.size - target - 4:
            raise FormatError(f"truncated: {what} declares {count:,} elements of {elem_size} bytes, "
                              f"only {max(self.buf.size - target - 4, 0):,} bytes follow", target)
        return target + 4, count

    def vector_bytes(self, slot: int, elem_size: int, what: str) -> tuple[int, bytes]:
        """(first element's offset, the elements' raw bytes) of a vector of scalars or structs."""
        start, count = self.vector(slot, elem_size, what)
        return start, self.buf._bytes(start, elem_size * count, what) if count else b""

    def ints(self, slot: int, what: str, limit: int = 1 << 16) -> list[int]:
        """A vector of int32, cut at `limit` elements."""
        start, count = self.vector(slot, 4, what)
        n = min(count, limit)
        return list(struct.unpack(f"<{n}i", self.buf._bytes(start, 4 * n, what))) if n else []

    def longs(self, slot: int, what: str, limit: int = 1 << 16) -> list[int]:
        """A vector of int64, cut at `limit` elements."""
        start, count = self.vector(slot, 8, what)
        n = min(count, limit)
        return list(struct.unpack(f"<{n}q", self.buf._bytes(start, 8 * n, what))) if n else []

    def strings(self, slot: int, what: str, limit: int = 1 << 16) -> list[str]:
        """A vector of strings, cut at `limit` elements (each string cut at MAX_STRING bytes)."""
        start, count = self.vector(slot, 4, what)
        out = []
        for i in range(min(count, limit)):
            at = start + 4 * i
            target = at + self.buf.u32(at, what)
            length = self.buf.u32(target, what)
            self.buf._bytes(target + 4, length, what)
            out.append(self.buf._bytes(target + 4, min(length, MAX_STRING), what).decode("utf-8", "replace"))
        return out

    def tables(self, slot: int, what: str) -> tuple[int, int]:
        """(first element's offset, count) of a vector of tables: open element i with `element`."""
        start, count = self.vector(slot, 4, what)
        if count > MAX_TABLES:
            raise LimitExceeded(f"{what}: {count:,} entries, more than the {MAX_TABLES:,} Airlock walks; "
                                "the rest of the file was not inspected", start)
        return start, count

    def element(self, start: int, i: int, what: str) -> Table:
        at = start + 4 * i
        return self.buf.table(at + self.buf.u32(at, what), what)
