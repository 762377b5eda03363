"""MessagePack files (airlock.core.formats.msgpack_format): Flax checkpoints in flax.serialization's
encoding and msgpack-numpy payloads, written with the real msgpack packages
(tests/fixtures/msgpack_files.py)."""

import msgpack
import numpy as np
import pytest
from fixtures import msgpack_files as f

from airlock.core.findings import Severity
from airlock.core.formats import msgpack_format
from airlock.core.scan import scan_bytes


def _nodes(result):
    return list(result.root.walk(expand_lazy=True))


def test_flax_checkpoint_tree_of_arrays():
    data = f.flax_bytes(f.flax_state())
    result = scan_bytes(data, "checkpoint_12")
    assert result.format == "msgpack" and result.severity == Severity.NONE
    assert result.inspected == "full"
    tensors = {n.label: n for n in _nodes(result) if n.kind == "tensor"}
    assert set(tensors) == {"kernel", "bias", "embedding", "step"}  # step: a numpy scalar, a 0-d array
    kernel = tensors["kernel"]
    assert kernel.attrs["shape"] == [3, 4] and kernel.attrs["dtype"] == "float32"
    expected = f.flax_state()["params"]["Dense_0"]["kernel"].tobytes()
    assert data[kernel.offset:kernel.offset + kernel.length] == expected  # offsets point at the array's bytes
    labels = [n.label for n in _nodes(result)]
    assert "lr = 0.001" in labels and "name = adam" in labels


def test_msgpack_numpy_object_array_pickle_is_scanned():
    result = scan_bytes(f.numpy_object_array(f.Payload()), "w.msgpack")
    assert result.severity == Severity.CRITICAL
    rules = {x.rule for x in result.findings}
    assert "MSG002" in rules
    assert any("system" in x.message for x in result.findings if x.severity == Severity.CRITICAL)


def test_msgpack_numpy_object_array_of_plain_data_is_still_flagged_high():
    result = scan_bytes(f.numpy_object_array("text"), "w.msgpack")
    assert result.severity == Severity.HIGH
    assert [x.rule for x in result.findings if x.severity >= Severity.MEDIUM] == ["MSG002"]


def test_unknown_extension_is_medium_and_flax_extensions_are_not():
    assert [x.rule for x in scan_bytes(f.unknown_extension(), "x").findings] == ["MSG001"]
    ts = msgpack.packb({"t": msgpack.Timestamp(1, 0)})
    assert scan_bytes(ts, "x.msgpack").severity == Severity.NONE


@pytest.mark.parametrize(("data", "words"), [
    (f.wrong_shape(), "needs 64 bytes"),
    (f.flax_bytes(f.flax_state()) + b"\x00", "ExtraData"),
    (f.flax_bytes(f.flax_state())[:-3], "truncated"),
    (b"\x81\xa1a\xc1", "reserved"),
    (b"\x81\xa1a" + b"\xdd\xff\xff\xff\xff", "declares 4,294,967,295 elements"),
    (b"\x81\xa1a" + b"\x91" * 300 + b"\x00", "nesting deeper"),
])
def test_malformed_input_is_a_finding(data, words):
    result = scan_bytes(data, "x.msgpack")
    assert any(x.rule == "AIR002" and words in x.message for x in result.findings), \
        [x.message for x in result.findings]


def test_big_arrays_are_not_built_node_by_node():
    data = msgpack.packb({"xs": list(range(20_000))})
    result = scan_bytes(data, "x.msgpack")
    assert result.severity == Severity.NONE
    assert result.root.attrs["nodes shown"] <= msgpack_format.MAX_ARRAY_NODES + 10


def test_sniff():
    assert msgpack_format.sniff(f.flax_bytes(f.flax_state())[:64], 64) == 55
    assert msgpack_format.sniff(b"\x80", 1) == 0  # an empty map: too little to tell
    assert msgpack_format.sniff(np.arange(4).tobytes(), 32) == 0


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "msgpack"
    assert result.severity == want, [x.message for x in result.findings]
