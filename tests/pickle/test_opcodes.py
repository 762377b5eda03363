"""The opcode reader against CPython: same opcode table, same arguments, same lengths; errors with
their offset; the sniffer that decides a headerless stream is a pickle; opcodes as lazy nodes."""

from __future__ import annotations

import pickle
import pickletools
import struct

import pytest
from fixtures.pickle_files import (
    BINUNICODE,
    GLOBAL,
    INT,
    MARKER,
    POP,
    PROTO,
    STOP,
    STRING,
    asm,
    call,
    call_proto0,
)

from airlock.core.errors import FormatError
from airlock.core.findings import Severity
from airlock.core.pickle.opcodes import OPCODES, PickleTruncated, iter_ops, read_op
from airlock.core.pickle.probe import looks_like_pickle
from airlock.core.scan import scan_bytes

SAMPLE = {"w": [1.5, -2, 2**70, None, True], "t": (b"\x00" * 300, "é" * 100), "s": {1, 2}, "f": frozenset("ab"),
          "ba": bytearray(b"xy"), "big": "x" * 70_000}


def test_opcode_table_is_cpythons() -> None:
    ours = {code: name for code, (name, _) in OPCODES.items()}
    theirs = {ord(op.code): op.name for op in pickletools.opcodes}
    assert ours == theirs


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_arguments_and_lengths_match_pickletools(proto: int) -> None:
    data = pickle.dumps([SAMPLE, SAMPLE], protocol=proto)
    theirs = list(pickletools.genops(data))
    ours = list(iter_ops(data))
    assert [(o.name, o.offset) for o in ours] == [(op.name, pos) for op, _, pos in theirs]
    for mine, (op, arg, _) in zip(ours, theirs, strict=True):
        if op.name in ("GLOBAL", "INST"):
            assert " ".join(mine.arg) == arg
        elif op.name not in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
            assert mine.arg == arg, op.name


@pytest.mark.parametrize(("line", "value"), [(b"010", 8), (b"5\x00junk", 5), (b"0x1f", 31), (b"-7", -7),
                                             (b"01", True), (b"00", False), (b"1_000", 1000)])
def test_int_lines_read_like_the_c_unpickler(line: bytes, value: int) -> None:
    data = b"I" + line + b"\n."
    assert pickle.loads(data) == value  # CPython's C loader (strtol, base 0)
    op = read_op(data, 0, len(data))
    assert op.arg == value and type(op.arg) is type(value)


def test_int_line_the_c_unpickler_rejects_is_malformed() -> None:
    with pytest.raises(ValueError):
        pickle.loads(b"I08\n.")
    with pytest.raises(FormatError) as exc:
        read_op(b"I08\n.", 0, 5)
    assert exc.value.offset == 0


@pytest.mark.parametrize(("data", "text"), [
    (b"X\xff\xff\xff\x00abc", "BINUNICODE expects 16,777,215 bytes, but only 3 remain"),
    (b"J\x01\x02", "BININT needs 4 argument bytes"),
    (b"\x8d\x01", "BINUNICODE8 length field needs 8 bytes"),
    (b"Sabc", "STRING line has no newline"),
    (b"", "ended before STOP"),
])
def test_truncated_arguments_say_so_with_the_offset(data: bytes, text: str) -> None:
    with pytest.raises(PickleTruncated) as exc:
        read_op(data, 0, len(data))
    assert "truncated" in exc.value.message and text in exc.value.message
    assert exc.value.offset in (0, 1)  # the opcode, or the text line it could not finish


@pytest.mark.parametrize(("data", "text"), [
    (b"\xff", "unknown opcode 0xff"),
    (b"T" + struct.pack("<i", -1), "negative length"),
    (b"\x8c\x02\xff\xfe", "not valid UTF-8"),
    (b"Sabc\n", "not quoted"),
    (b"p-1\n", "bad PUT argument"),
])
def test_malformed_arguments_raise_format_errors(data: bytes, text: str) -> None:
    with pytest.raises(FormatError) as exc:
        read_op(data, 0, len(data))
    assert text in exc.value.message
    assert not isinstance(exc.value, PickleTruncated) or "truncated" in exc.value.message


def test_reader_never_reads_past_end() -> None:
    data = b"K\x05" + b"K"  # a BININT1 whose argument lies beyond `end`
    with pytest.raises(PickleTruncated):
        read_op(data, 2, 3)
    op = read_op(data, 0, 2)
    assert (op.name, op.arg, op.length) == ("BININT1", 5, 2)


@pytest.mark.parametrize(("data", "verdict"), [
    (b"hello world, this is text\n", 0),
    (b"#version: 0.2\nl o\n", 0),
    (b"aaaaaaaaaaaaaaaa", 0),  # APPEND on nothing: the loader fails at once
    (b"cat\ndog\nfish\n", 0),  # one GLOBAL-shaped line pair, then nothing a loader accepts
    (call_proto0("os", "system", MARKER), 70),
    (pickle.dumps([1, 2], protocol=1), 70),
    (asm(INT(1), POP) * 300 + call_proto0("os", "system", MARKER), 70),
    (call_proto0("os", "system", MARKER)[:-1] + b"\xff", 45),  # broken only after the REDUCE ran
    (call("os", "system", MARKER), 90),
])
def test_sniff_decides_by_running_the_stream(data: bytes, verdict: int) -> None:
    assert looks_like_pickle(data) == verdict


def test_headerless_pickle_opening_with_a_long_string_is_still_a_pickle() -> None:
    data = asm(BINUNICODE("A" * 50_000), POP) + call_proto0("os", "system", MARKER)
    assert looks_like_pickle(data[:4096]) == 0  # the head alone cannot tell...
    result = scan_bytes(data, "weights.bin")  # ...so the format module probes the whole file
    assert result.format == "pickle" and result.severity == Severity.CRITICAL


def test_plain_text_is_not_inspected_not_malformed() -> None:
    for text in (b"colors\nred\ngreen\n", b"cat\ndog\n" * 10, "naïve text\n".encode() * 50):
        result = scan_bytes(text, "notes.txt")
        assert result.format != "pickle", text
        assert result.severity < Severity.HIGH


def test_every_opcode_is_a_lazy_node_with_offset_and_argument() -> None:
    data = pickle.dumps([{"k": i} for i in range(2000)], protocol=4)
    expected = list(pickletools.genops(data))
    result = scan_bytes(data, "x.pkl")
    pickle_node = result.root.children()[0]
    group = next(n for n in pickle_node.children() if n.label.startswith("opcodes"))
    assert group.is_lazy and group.child_count == len(expected)
    assert sum(1 for _ in result.root.walk()) < 20  # nothing per opcode was built yet
    for i in (0, 1, 777, len(expected) - 1):
        node = group.child_at(i)
        op, arg, pos = expected[i]
        assert node.offset == pos and node.attrs["opcode"] == op.name
        assert node.label.startswith(op.name)
        if arg is not None and op.name in ("SHORT_BINUNICODE", "BININT2"):
            assert repr(arg) in node.label
    result.close()


def test_frame_longer_than_the_stream_is_truncated() -> None:
    data = asm(PROTO(4), b"\x95" + struct.pack("<Q", 10_000), GLOBAL("os", "system"), STOP)
    result = scan_bytes(data, "x.pkl")
    assert any(f.rule == "AIR002" and "FRAME announces" in f.message for f in result.findings)
    assert result.severity >= Severity.HIGH


def test_string_opcode_escapes_decode_like_python() -> None:
    data = asm(STRING("a\\x00\n'b"), STOP)
    op = read_op(data, 0, len(data))
    assert op.arg == pickle.loads(data)
