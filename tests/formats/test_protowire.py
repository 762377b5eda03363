"""core/formats/protowire.py reads the wire format protobuf writes; the fixtures' hand writer
(tests/fixtures/protobuf_writer.py) writes the same bytes as protobuf, checked against onnx's messages."""

import pytest
from fixtures.protobuf_writer import field, varint, vfield

from airlock.core.errors import FormatError
from airlock.core.formats import protowire

BIG = [0, 1, 127, 128, 300, 16_383, 16_384, 2**31, 2**40, 2**63 - 1]


def test_the_writer_matches_protobuf():
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"], name="relu_1")  # NodeProto: input 1, output 2, name 3, op_type 4
    assert field(1, "x") + field(2, "y") + field(3, "relu_1") + field(4, "Relu") == node.SerializeToString()
    tensor = TensorProto(dims=BIG, data_type=TensorProto.FLOAT)  # dims 1 (int64, unpacked), data_type 2
    assert b"".join(vfield(1, d) for d in BIG) + vfield(2, TensorProto.FLOAT) == tensor.SerializeToString()


def test_the_reader_walks_what_the_writer_wrote():
    message = b"".join(vfield(1, n) for n in BIG) + field(2, "payload") + field(500, b"")
    walked = list(protowire.fields(message, 0, len(message)))
    assert [(number, value) for number, wire, value, _ in walked if wire == protowire.VARINT] == [(1, n) for n in BIG]
    (text,) = [(value, at) for number, wire, value, at in walked if number == 2]
    assert message[text[1]: text[1] + text[0]] == b"payload"
    assert walked[-1][:3] == (500, protowire.LEN, 0)


def test_a_length_past_its_message_is_a_finding_with_its_offset():
    message = vfield(1, 5) + varint(2 << 3 | 2) + varint(1 << 40) + b"short"
    with pytest.raises(FormatError) as info:
        list(protowire.fields(message, 0, len(message)))
    assert info.value.offset == len(vfield(1, 5)) and "runs past its message" in info.value.message
