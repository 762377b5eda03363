"""A bounded protobuf wire-format walk (no generated classes, no protobuf runtime): for formats whose
schema Airlock reads field by field (TF SavedModel). Every length is checked against the enclosing
message before it is followed; a break raises FormatError with the offset. `read_varint` is the one
varint reader: ONNX's sniffer and wire walk, the not-inspected sniffers and the converter use it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from airlock.core.errors import FormatError

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def read_varint(data: bytes | Any, pos: int, end: int) -> tuple[int, int] | None:
    """A protobuf varint at pos: (value, next position), or None if cut off or over 10 bytes."""
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def fields(view: Any, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value (varint) or length (LEN), payload offset) of each field."""
    pos = start
    while pos < end:
        at = pos
        tag = read_varint(view, pos, end)
        if tag is None:
            raise FormatError(f"truncated: field tag cut off at {at:,}", at)
        key, pos = tag
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FormatError(f"malformed: field number 0 at {at:,}", at)
        if wire == VARINT:
            value = read_varint(view, pos, end)
            if value is None:
                raise FormatError(f"truncated: varint of field {number} cut off at {at:,}", at)
            yield number, wire, value[0], pos
            pos = value[1]
        elif wire == LEN:
            length = read_varint(view, pos, end)
            if length is None or length[1] + length[0] > end:
                raise FormatError(f"truncated: field {number} at {at:,} runs past its message (which ends "
                                  f"at {end:,})", at)
            yield number, wire, length[0], length[1]
            pos = length[1] + length[0]
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if pos + width > end:
                raise FormatError(f"truncated: fixed field {number} cut off at {at:,}", at)
            yield number, wire, 0, pos
            pos += width
        else:
            raise FormatError(f"malformed: wire type {wire} (field {number}) at {at:,}", at)


def text(view: Any, start: int, length: int, cap: int = 4096) -> str:
    raw: bytes = view[start:start + min(length, cap)]
    return raw.decode("utf-8", "replace")
