"""Pickle opcode reader for protocols 0-5. Decodes arguments; never builds Python objects.

Argument decoding follows CPython's `pickle` module (`Lib/pickle.py`), so that a stream reads
here as it reads in the real unpickler: INT lines use base 0, BINSTRING is py2 text, GLOBAL
lines are UTF-8. Lengths are checked against the bytes that remain before anything is sliced.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterator
from typing import Any

from airlock.core.errors import FormatError
from airlock.core.pickle.values import LargeData

# Argument kinds
NONE, UINT1, UINT2, UINT4, UINT8, INT4 = "none", "u1", "u2", "u4", "u8", "i4"
LONG1, LONG4 = "long1", "long4"
STRING1, STRING4, BYTES1, BYTES4, BYTES8, BYTEARRAY8 = "s1", "s4", "b1", "b4", "b8", "ba8"
UNICODE1, UNICODE4, UNICODE8 = "u_1", "u_4", "u_8"
STRINGNL, UNICODENL, INTNL, LONGNL, FLOATNL, FLOAT8 = "snl", "unl", "inl", "lnl", "fnl", "f8"
GLOBALNL, PERSIDNL, INDEXNL = "gnl", "pnl", "xnl"

# code byte → (name, argument kind)
OPCODES: dict[int, tuple[str, str]] = {
    ord("I"): ("INT", INTNL), ord("J"): ("BININT", INT4), ord("K"): ("BININT1", UINT1),
    ord("M"): ("BININT2", UINT2), ord("L"): ("LONG", LONGNL), 0x8A: ("LONG1", LONG1),
    0x8B: ("LONG4", LONG4), ord("S"): ("STRING", STRINGNL), ord("T"): ("BINSTRING", STRING4),
    ord("U"): ("SHORT_BINSTRING", STRING1), ord("B"): ("BINBYTES", BYTES4),
    ord("C"): ("SHORT_BINBYTES", BYTES1), 0x8E: ("BINBYTES8", BYTES8),
    0x96: ("BYTEARRAY8", BYTEARRAY8), 0x97: ("NEXT_BUFFER", NONE), 0x98: ("READONLY_BUFFER", NONE),
    ord("N"): ("NONE", NONE), 0x88: ("NEWTRUE", NONE), 0x89: ("NEWFALSE", NONE),
    ord("V"): ("UNICODE", UNICODENL), 0x8C: ("SHORT_BINUNICODE", UNICODE1),
    ord("X"): ("BINUNICODE", UNICODE4), 0x8D: ("BINUNICODE8", UNICODE8),
    ord("F"): ("FLOAT", FLOATNL), ord("G"): ("BINFLOAT", FLOAT8),
    ord("]"): ("EMPTY_LIST", NONE), ord("a"): ("APPEND", NONE), ord("e"): ("APPENDS", NONE),
    ord("l"): ("LIST", NONE), ord(")"): ("EMPTY_TUPLE", NONE), ord("t"): ("TUPLE", NONE),
    0x85: ("TUPLE1", NONE), 0x86: ("TUPLE2", NONE), 0x87: ("TUPLE3", NONE),
    ord("}"): ("EMPTY_DICT", NONE), ord("d"): ("DICT", NONE), ord("s"): ("SETITEM", NONE),
    ord("u"): ("SETITEMS", NONE), 0x8F: ("EMPTY_SET", NONE), 0x90: ("ADDITEMS", NONE),
    0x91: ("FROZENSET", NONE), ord("0"): ("POP", NONE), ord("2"): ("DUP", NONE),
    ord("("): ("MARK", NONE), ord("1"): ("POP_MARK", NONE), ord("g"): ("GET", INDEXNL),
    ord("h"): ("BINGET", UINT1), ord("j"): ("LONG_BINGET", UINT4), ord("p"): ("PUT", INDEXNL),
    ord("q"): ("BINPUT", UINT1), ord("r"): ("LONG_BINPUT", UINT4), 0x94: ("MEMOIZE", NONE),
    0x82: ("EXT1", UINT1), 0x83: ("EXT2", UINT2), 0x84: ("EXT4", INT4),
    ord("c"): ("GLOBAL", GLOBALNL), 0x93: ("STACK_GLOBAL", NONE), ord("R"): ("REDUCE", NONE),
    ord("b"): ("BUILD", NONE), ord("i"): ("INST", GLOBALNL), ord("o"): ("OBJ", NONE),
    0x81: ("NEWOBJ", NONE), 0x92: ("NEWOBJ_EX", NONE), 0x80: ("PROTO", UINT1),
    ord("."): ("STOP", NONE), 0x95: ("FRAME", UINT8), ord("P"): ("PERSID", PERSIDNL),
    ord("Q"): ("BINPERSID", NONE),
}

PROTO = 0x80
STOP = ord(".")
HIGHEST_PROTOCOL = 5

_FIXED = {UINT1: (1, "<B"), UINT2: (2, "<H"), UINT4: (4, "<I"), UINT8: (8, "<Q"), INT4: (4, "<i"),
          FLOAT8: (8, ">d")}
_SIZED = {STRING1: (1, "<B"), BYTES1: (1, "<B"), UNICODE1: (1, "<B"), LONG1: (1, "<B"),
          STRING4: (4, "<i"), BYTES4: (4, "<I"), UNICODE4: (4, "<I"), LONG4: (4, "<i"),
          BYTES8: (8, "<Q"), UNICODE8: (8, "<Q"), BYTEARRAY8: (8, "<Q")}
_MAX_LINE = 1 << 20  # a text argument longer than this is not a real pickle
LARGE_ARG_BYTES = 1 << 20  # a string, bytes or long argument longer than this is kept as LargeData


class Op:
    """One opcode: its name, decoded argument, offset in the source and length in bytes."""

    __slots__ = ("arg", "length", "name", "offset")

    def __init__(self, name: str, arg: Any, offset: int, length: int) -> None:
        self.name = name
        self.arg = arg
        self.offset = offset
        self.length = length

    def __repr__(self) -> str:
        return f"Op({self.name}, {self.arg!r}, @{self.offset})"


class PickleTruncated(FormatError):
    """The stream ended inside an opcode or before STOP."""


def _readline(buf: Any, pos: int, end: int, what: str) -> tuple[bytes, int]:
    limit = min(end, pos + _MAX_LINE)
    nl = _find(buf, pos, limit)  # found in place: slicing up to a megabyte per line cost a copy each
    if nl < 0:
        if limit < end:
            raise FormatError(f"{what} line longer than {_MAX_LINE} bytes", pos)
        raise PickleTruncated(f"truncated: {what} line has no newline before the end", pos)
    return bytes(buf[pos:nl]), nl + 1


def _decode_string_line(line: bytes, offset: int) -> str:
    # STRING: a quoted, escaped py2 str. Decoded as latin-1 (the most permissive loader choice).
    if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
        try:
            raw = codecs.escape_decode(line[1:-1])[0]
        except ValueError as exc:
            raise FormatError(f"bad escape in STRING argument: {exc}", offset) from None
        return raw.decode("latin-1")
    raise FormatError("STRING argument is not quoted", offset)


# code byte → (name, kind, category, fixed size or length-field size, struct) for read_op's hot path.
NOARG, FIXEDARG, _SIZEDARG, _LINEARG = 0, 1, 2, 3
OPCODE_TABLE: list[tuple[str, str, int, int, struct.Struct | None] | None] = [None] * 256
for _code, (_name, _kind) in OPCODES.items():
    if _kind == NONE:
        OPCODE_TABLE[_code] = (_name, _kind, NOARG, 0, None)
    elif _kind in _FIXED:
        OPCODE_TABLE[_code] = (_name, _kind, FIXEDARG, _FIXED[_kind][0], struct.Struct(_FIXED[_kind][1]))
    elif _kind in _SIZED:
        OPCODE_TABLE[_code] = (_name, _kind, _SIZEDARG, _SIZED[_kind][0], struct.Struct(_SIZED[_kind][1]))
    else:
        OPCODE_TABLE[_code] = (_name, _kind, _LINEARG, 0, None)


def read_op(buf: Any, pos: int, end: int) -> Op:
    """Decode the opcode at `pos`. Raises PickleTruncated / FormatError with the offset."""
    if pos >= end:
        raise PickleTruncated("truncated: the stream ended before STOP", pos)
    entry = OPCODE_TABLE[buf[pos]]
    if entry is None:
        raise FormatError(f"malformed: unknown opcode 0x{buf[pos]:02x}", pos)
    name, kind, category, size, fmt = entry
    if category == NOARG:
        return Op(name, None, pos, 1)
    p = pos + 1
    arg: Any = None
    if category == FIXEDARG:
        if p + size > end:
            raise PickleTruncated(f"truncated: {name} needs {size} argument bytes, {end - p} remain", pos)
        (arg,) = fmt.unpack(buf[p : p + size])
        return Op(name, arg, pos, 1 + size)
    if category == _SIZEDARG:
        if p + size > end:
            raise PickleTruncated(f"truncated: {name} length field needs {size} bytes", pos)
        (n,) = fmt.unpack(buf[p : p + size])
        p += size
        if n < 0:
            raise FormatError(f"malformed: {name} has negative length {n}", pos)
        if n > end - p:
            raise PickleTruncated(
                f"truncated: {name} expects {n:,} bytes, but only {end - p:,} remain", pos)
        if n > LARGE_ARG_BYTES:
            # Data, never a name: not read, so a gigabyte constant costs no memory (only where it is).
            return Op(name, LargeData(name, p, n), pos, p + n - pos)
        data = bytes(buf[p : p + n])
        p += n
        if kind is UNICODE1 or kind is UNICODE4 or kind is UNICODE8:  # the kinds are interned constants
            try:
                arg = data.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise FormatError(f"malformed: {name} is not valid UTF-8", pos) from None
        elif kind is STRING1 or kind is STRING4:
            arg = data.decode("latin-1")
        elif kind is LONG1 or kind is LONG4:
            arg = int.from_bytes(data, "little", signed=True)
        elif kind is BYTEARRAY8:
            arg = bytearray(data)
        else:
            arg = data
        return Op(name, arg, pos, p - pos)
    line, p = _readline(buf, p, end, name)
    try:
        if kind == INTNL:
            arg = _parse_int_line(line)
        elif kind == LONGNL:
            arg = int(line[:-1] if line.endswith(b"L") else line, 0)
        elif kind == FLOATNL:
            arg = float(line)
        elif kind == INDEXNL:
            arg = int(line)
            if arg < 0:
                raise ValueError("negative memo index")
        elif kind == STRINGNL:
            arg = _decode_string_line(line, pos)
        elif kind == UNICODENL:
            arg = line.decode("raw-unicode-escape")
        elif kind == PERSIDNL:
            arg = line.decode("ascii")
        elif kind == GLOBALNL:
            second, p = _readline(buf, p, end, name)
            arg = (line.decode("utf-8"), second.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"malformed: bad {name} argument {line[:40]!r}", pos) from None
    return Op(name, arg, pos, p - pos)


def read_op_in(buf: Any, win: Any, base: int, wend: int, pos: int, end: int) -> Op:
    """`read_op(buf, pos, end)` decoded from `win`, the bytes of buf from `base` to `wend` (a
    window of a source read through pread), when the opcode lies inside it; through buf when it
    does not, or when it is malformed (so that errors carry file offsets)."""
    if win is buf:
        return read_op(buf, pos, end)
    try:
        op = read_op(win, pos - base, wend - base)
    except FormatError:
        return read_op(buf, pos, end)
    op.offset = pos
    if op.arg.__class__ is LargeData:
        op.arg.offset += base
    return op


def _parse_int_line(line: bytes) -> int | bool:
    """INT as CPython's C unpickler reads it: strtol(base 0), so "010" is 8 and a NUL ends the number."""
    if line == b"00":
        return False
    if line == b"01":
        return True
    text = line.split(b"\0", 1)[0].strip()
    sign = 1
    if text[:1] in (b"+", b"-"):
        sign = -1 if text[:1] == b"-" else 1
        text = text[1:]
    if len(text) > 1 and text[:1] == b"0" and text[1:2] not in (b"x", b"X", b"o", b"O", b"b", b"B") \
            and text.isdigit():
        return sign * int(text, 8)  # C's strtol reads a leading 0 as octal; Python's int() refuses it
    return sign * int(text, 0)


def iter_ops(buf: Any, start: int = 0, end: int | None = None) -> Iterator[Op]:
    """Opcodes of one pickle, up to and including STOP. Errors are raised where they occur."""
    end = len(buf) if end is None else end
    pos = start
    while True:
        op = read_op(buf, pos, end)
        yield op
        pos += op.length
        if op.name == "STOP":
            return


# CPython's C unpickler reads a file through a buffer. After FRAME the buffer is the frame; when a
# read does not fit in what is left of it and the file has no peek() (io.BytesIO: how torch.load
# reads a zip member; or any frame of 128 KiB or more), the rest of the buffer is dropped and the
# read is served from the file, after the frame. Pickle writers never let an opcode cross a frame,
# so a stream where one does reads one way to pickle.loads and another way to torch.load.


def op_spans(op: Op) -> list[tuple[int, int]]:
    """The separate reads the C unpickler makes for an opcode's argument, as (start, end) offsets."""
    entry = OPCODE_TABLE[ord("c") if op.name in ("GLOBAL", "INST") else _CODE_OF[op.name]]
    assert entry is not None
    _, kind, category, size, _ = entry
    p = op.offset + 1
    end = op.offset + op.length
    if category == NOARG:
        return []
    if category == FIXEDARG:
        spans = [(p, p + size)]
        if op.name == "FRAME":
            spans.append((p + size, p + size + op.arg))
        return spans
    if category == _SIZEDARG:
        return [(p, p + size), (p + size, end)]
    if kind == GLOBALNL:
        first = p + len(op.arg[0].encode("utf-8")) + 1
        return [(p, first), (first, end)]
    return [(p, end)]


_CODE_OF = {name: code for code, (name, _) in OPCODES.items()}


def unpeeked(buf: Any, start: int, end: int, max_ops: int) -> list[tuple[int, int]]:
    """The byte ranges the C unpickler consumes from a file without peek(), in order, up to STOP
    or the first error: joined, they are the stream that loader really runs."""
    spans: list[tuple[int, int]] = []
    cur, limit = start, 0

    def read(n: int) -> int:
        nonlocal cur, limit
        if limit and cur < limit < cur + n:
            cur, limit = limit, 0  # the rest of the buffer is dropped
        elif limit and cur >= limit:
            limit = 0
        if cur + n > end:
            raise PickleTruncated("truncated", cur)
        spans.append((cur, cur + n))
        cur += n
        return cur - n

    def readline() -> int:
        nonlocal cur, limit
        if limit and cur < limit:
            nl = _find(buf, cur, limit)
            if nl < 0:
                cur, limit = limit, 0
        nl = _find(buf, cur, min(end, cur + _MAX_LINE))
        if nl < 0:
            raise PickleTruncated("truncated", cur)
        spans.append((cur, nl + 1))
        cur, at = nl + 1, cur
        return at

    try:
        for _ in range(max_ops):
            entry = OPCODE_TABLE[buf[read(1)]]
            if entry is None:
                break
            name, kind, category, size, fmt = entry
            if name == "STOP":
                break
            if category == FIXEDARG:
                at = read(size)
                if name == "FRAME":
                    (length,) = fmt.unpack(buf[at : at + size])
                    if limit and cur + length <= limit:
                        continue  # the frame is already in the buffer
                    if limit and cur < limit:
                        cur = limit
                    if cur + length > end:
                        break
                    limit = cur + length
            elif category == _SIZEDARG:
                (n,) = fmt.unpack_from(bytes(buf[read(size) : cur]), 0)
                if n < 0:
                    break
                read(n)
            elif category == _LINEARG:
                readline()
                if kind == GLOBALNL:
                    readline()
    except PickleTruncated:
        pass
    return spans


def _find(buf: Any, start: int, stop: int) -> int:
    find = getattr(buf, "find", None)  # bytes, bytearray and PagedView search in place
    if find is not None:
        return int(find(b"\n", start, stop))
    at = bytes(buf[start:stop]).find(b"\n")  # a memoryview
    return at + start if at >= 0 else -1
