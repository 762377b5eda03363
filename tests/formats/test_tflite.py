"""TFLite flatbuffers (airlock.core.formats.tflite), built from schema.fbs with the flatbuffers Builder
(tests/fixtures/tflite_files.py)."""

import struct

import pytest
from fixtures import tflite_files as f

from airlock.core.findings import Severity
from airlock.core.formats import tflite
from airlock.core.scan import scan_bytes


def _nodes(result):
    return list(result.root.walk(expand_lazy=True))


def test_a_plain_model_is_read_whole_and_clean():
    data = f.build()
    result = scan_bytes(data, "renamed")
    assert result.format == "tflite"
    assert result.severity == Severity.NONE, [x.message for x in result.findings]
    assert result.inspected == "full"
    assert result.root.attrs["description"] == "airlock test model"
    nodes = _nodes(result)
    assert [n.label for n in nodes if n.kind == "operator" and ":" in n.label] == ["0: FULLY_CONNECTED", "1: RELU"]
    weights = next(n for n in nodes if n.kind == "tensor" and n.label == "weights")
    assert weights.attrs["shape"] == [1, 4] and weights.attrs["dtype"] == "float32"
    # The tensor points at its buffer's bytes in the file.
    assert struct.unpack("<4f", data[weights.offset:weights.offset + weights.length]) == (0.5, -1.0, 2.0, 0.25)
    assert any(n.kind == "metadata" and "min_runtime_version" in n.label for n in nodes)


@pytest.mark.parametrize(("ops", "rule", "severity"), [
    (["MyVendorOp"], "TFL001", Severity.MEDIUM),
    ([f.FULLY_CONNECTED, "FlexAddV2"], "TFL001", Severity.MEDIUM),
    (["FlexReadFile"], "TFL002", Severity.HIGH),
    (["FlexMatchingFiles"], "TFL002", Severity.HIGH),
    (["FlexSaveV2"], "TFL002", Severity.HIGH),
    (["FlexPyFunc"], "TFL003", Severity.CRITICAL),
    (["FlexEagerPyFunc"], "TFL003", Severity.CRITICAL),
])
def test_custom_and_flex_operators(ops, rule, severity):
    data = f.build(ops)
    result = scan_bytes(data, "m.tflite")
    hits = [x for x in result.findings if x.rule == rule]
    assert hits and result.severity == severity, [x.message for x in result.findings]
    name = next(o for o in ops if isinstance(o, str))
    assert name in hits[0].message
    assert data[hits[0].offset:hits[0].offset + len(name)] == name.encode()  # points at the custom code


def test_flex_ops_are_named_in_the_tree():
    nodes = _nodes(scan_bytes(f.build(["FlexAddV2"]), "m.tflite"))
    assert "0: Flex AddV2" in [n.label for n in nodes]


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"opcode_index": 7}, "operator code 7"),
    ({"tensor_buffer": 99}, "buffer 99"),
    ({"far_buffer": (1 << 40, 64)}, "past the end of the file"),
])
def test_indices_and_offsets_outside_their_tables_are_malformed(kwargs, words):
    result = scan_bytes(f.build(**kwargs), "m.tflite")
    assert any(x.rule == "AIR002" and words in x.message for x in result.findings), \
        [x.message for x in result.findings]


def test_truncated_and_garbled_files_are_malformed_never_a_crash():
    data = f.build(["FlexReadFile"])
    for cut in range(8, len(data), 7):
        result = scan_bytes(data[:cut], "m.tflite")
        assert result.severity >= Severity.MEDIUM, cut
    huge = bytearray(data)
    huge[0:4] = struct.pack("<I", len(data) - 2)  # the root offset points at the last bytes
    assert scan_bytes(bytes(huge), "m.tflite").severity == Severity.HIGH


def test_sniff_needs_the_identifier():
    assert tflite.sniff(f.build()[:16], 16) == 95
    assert tflite.sniff(b"\x1c\x00\x00\x00TFL2", 8) == 0


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "tflite"
    assert result.severity == want, [x.message for x in result.findings]


def test_vectors_of_tables_past_the_walk_limit_are_a_limit_finding(monkeypatch):
    from airlock.core.formats import flatbuf

    monkeypatch.setattr(flatbuf, "MAX_TABLES", 2)  # scaled down: the model has 3-4 tensors
    result = scan_bytes(f.build(), "m.tflite")
    assert any(x.rule == "AIR003" and "more than the 2" in x.message for x in result.findings)
    assert result.severity == Severity.HIGH and result.inspected != "full"
