"""ONNX byte spans: operators and initializers point at their own bytes, found by a wire walk.

A span is the embedded message's payload (after its tag and length): for models written by
onnx.helper it equals the entry's own `SerializeToString()`, which is what these tests compare.
"""


import pytest
from fixtures import onnx_files as F
from fixtures.protobuf_writer import field, varint
from hypothesis import given, settings
from hypothesis import strategies as st

from airlock.core.formats import onnx as onnx_format
from airlock.core.formats import onnx_wire
from airlock.core.scan import scan_bytes


def _helper():
    from onnx import helper

    return helper


def _mixed_model():
    """A standard op, a custom-domain op and a PyOp, with several initializers."""
    helper = _helper()
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h"], name="matmul_first"),
        helper.make_node("FancyOp", ["h", "w1"], ["k"], name="fancy_custom", domain="vendor.ops", alpha=2.5),
        helper.make_node("PyOp", ["k"], ["y"], name="python_op", domain="ai.onnx.contrib",
                         module="evil", class_name="Run", input_types=[1], output_types=[1]),
    ]
    inits = [F.weights("w0"), F.weights("w1", (2, 3)), F.weights("bias_vector", (7,))]
    return F.model(nodes, inits, opsets=(("", 17), ("vendor.ops", 1), ("ai.onnx.contrib", 1)))


def _kind(root, kind):
    return [n for n in root.walk() if n.kind == kind]


def _span(data, node):
    assert node.offset is not None and node.length is not None, node
    assert 0 < node.offset <= node.offset + node.length <= len(data)
    return data[node.offset:node.offset + node.length]


def _spans_in_bounds(spans, size):
    graphs = [spans.graph, *spans.functions, *(g for pair in spans.training for g in pair)]
    while graphs:
        g = graphs.pop()
        if g is None:
            continue
        for flat in (g.nodes, g.initializers, g.sparse):
            for off, length in zip(flat[::2], flat[1::2], strict=True):
                assert 0 <= off <= off + length <= size
        for inner in g.subgraphs.values():
            graphs.extend(inner)


def test_operator_and_initializer_spans_hold_their_bytes():
    m = _mixed_model()
    data = m.SerializeToString()
    root = scan_bytes(data, "m.onnx").root
    ops = _kind(root, "operator")
    assert [op.attrs["op_type"] for op in ops] == ["MatMul", "FancyOp", "PyOp"]
    for op, proto in zip(ops, m.graph.node, strict=True):
        raw = _span(data, op)
        assert proto.op_type.encode() in raw and proto.name.encode() in raw
        assert raw == proto.SerializeToString()
    inits = _kind(root, "initializer")
    assert [t.label for t in inits] == ["w0", "w1", "bias_vector"]
    for tensor, proto in zip(inits, m.graph.initializer, strict=True):
        raw = _span(data, tensor)
        assert proto.name.encode() in raw and raw == proto.SerializeToString()


def test_pyop_and_custom_domain_findings_carry_the_operator_offset():
    data = _mixed_model().SerializeToString()
    result = scan_bytes(data, "m.onnx")
    by_rule = {f.rule: f for f in result.findings}
    assert sorted(by_rule) == ["ONX001", "ONX002"]
    for rule, op_type in (("ONX001", b"PyOp"), ("ONX002", b"FancyOp")):
        finding = by_rule[rule]
        assert finding.offset not in (None, 0)
        assert (finding.offset, finding.length) == (finding.node.offset, finding.node.length)
        assert op_type in data[finding.offset:finding.offset + finding.length]


def test_subgraph_operators_have_their_offsets():
    m = F.if_model("Magic", "vendor.ops")
    data = m.SerializeToString()
    result = scan_bytes(data, "m.onnx")
    then_branch = next(a.g for a in m.graph.node[1].attribute if a.name == "then_branch")
    magic = next(op for op in _kind(result.root, "operator") if op.attrs["op_type"] == "Magic")
    assert _span(data, magic) == then_branch.node[0].SerializeToString()
    (finding,) = result.findings
    assert finding.rule == "ONX002" and finding.offset == magic.offset
    for op in _kind(result.root, "operator"):
        assert op.attrs["op_type"].encode() in _span(data, op)


def test_function_operators_have_their_offsets():
    m = F.function_with_custom_op()
    data = m.SerializeToString()
    result = scan_bytes(data, "m.onnx")
    secret = next(op for op in _kind(result.root, "operator") if op.attrs["op_type"] == "Secret")
    assert _span(data, secret) == m.functions[0].node[0].SerializeToString()
    assert result.findings[0].offset == secret.offset


def test_sparse_initializers_follow_the_dense_ones():
    import numpy as np
    from onnx import numpy_helper

    helper = _helper()
    values = numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "sparse_w")
    indices = numpy_helper.from_array(np.array([0, 3], dtype=np.int64), "sparse_w_idx")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [F.value("x")], [F.value("y")],
                              [F.weights("dense_w")], sparse_initializer=[sparse])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = m.SerializeToString()
    inits = _kind(scan_bytes(data, "m.onnx").root, "initializer")
    assert [t.label for t in inits] == ["dense_w", "sparse_w"]
    assert _span(data, inits[0]) == m.graph.initializer[0].SerializeToString()
    assert _span(data, inits[1]) == m.graph.sparse_initializer[0].SerializeToString()


def test_paged_operators_and_initializers_keep_offsets_and_findings_point_at_them():
    helper = _helper()
    count = onnx_format.EAGER_LIMIT + 200
    nodes = [helper.make_node("Relu", [f"h{i}"], [f"h{i + 1}"], name=f"relu_{i}") for i in range(count)]
    nodes.append(helper.make_node("Hidden", [f"h{count}"], ["y"], name="late_custom", domain="vendor.ops"))
    inits = [F.weights(f"w{i}", (1,)) for i in range(count)]
    inits.append(F.external(F.weights("escape"), "../../outside.bin"))
    m = F.model(nodes, inits, opsets=(("", 17), ("vendor.ops", 1)))
    data = m.SerializeToString()
    result = scan_bytes(data, "m.onnx")
    ops = next(n for n in result.root.walk() if n.label.startswith("nodes ("))
    tensors = next(n for n in result.root.walk() if n.label.startswith("initializers ("))
    assert ops.is_lazy and tensors.is_lazy
    last_op, last_tensor = ops.child_at(count), tensors.child_at(count)
    assert _span(data, last_op) == m.graph.node[count].SerializeToString()
    assert _span(data, ops.child_at(7)) == m.graph.node[7].SerializeToString()
    assert _span(data, last_tensor) == m.graph.initializer[count].SerializeToString()
    by_rule = {f.rule: f for f in result.findings}
    assert (by_rule["ONX002"].offset, by_rule["ONX002"].length) == (last_op.offset, last_op.length)
    assert (by_rule["ONX003"].offset, by_rule["ONX003"].length) == (last_tensor.offset, last_tensor.length)


def test_a_graph_repeated_on_the_wire_is_merged_like_protobuf_does():
    """Two `graph` fields: protobuf merges them (nodes concatenate); the spans follow."""
    import onnx

    helper = _helper()
    first = F.custom_domain_model()
    extra = helper.make_graph([helper.make_node("Second", ["y"], ["z"], name="second", domain="vendor.ops")],
                              "g2", [], [])
    data = first.SerializeToString() + field(7, extra.SerializeToString())
    merged = onnx.ModelProto()
    merged.ParseFromString(data)
    result = scan_bytes(data, "m.onnx")
    ops = _kind(result.root, "operator")
    assert [op.attrs["op_type"] for op in ops] == ["FancyOp", "Second"]
    for op, proto in zip(ops, merged.graph.node, strict=True):
        assert _span(data, op) == proto.SerializeToString()


def test_unknown_fields_and_groups_are_stepped_over():
    """upb keeps unknown fields, groups included, and a known field number with the wrong wire type."""
    m = F.pyop_model()
    graph = m.graph.SerializeToString()
    prefix, suffix = m.SerializeToString().split(field(7, graph))
    group = b"\x9b\x06" + b"\x08\x01\x12\x02ab" + b"\x9c\x06"  # field 99 start, two fields, end
    wrong_wire = b"\x08\x05" + b"\x7d\x01\x02\x03\x04"  # node (1) as a varint, sparse_initializer (15) as fixed32
    data = prefix + field(7, group + wrong_wire + graph + group) + suffix
    result = scan_bytes(data, "m.onnx")
    (op,) = _kind(result.root, "operator")
    assert _span(data, op) == m.graph.node[0].SerializeToString()
    assert result.findings[0].rule == "ONX001" and result.findings[0].offset == op.offset


def test_subgraphs_past_the_depth_limit_have_no_offsets(monkeypatch):
    monkeypatch.setattr(onnx_wire, "MAX_DEPTH", 0)
    result = scan_bytes(F.if_model("Magic", "vendor.ops").SerializeToString(), "m.onnx")
    offsets = {op.attrs["op_type"]: op.offset for op in _kind(result.root, "operator")}
    assert offsets["If"] is not None and offsets["Magic"] is None
    assert result.findings[0].rule == "ONX002"  # still found, on its node


def test_the_walk_never_touches_tensor_payloads():
    import numpy as np
    from onnx import numpy_helper

    helper = _helper()
    big = numpy_helper.from_array(np.zeros(1 << 16, dtype=np.float32), "big")
    m = F.model([helper.make_node("Relu", ["x"], ["y"])], [big])
    data = m.SerializeToString()
    raw = big.raw_data
    start = data.index(raw)

    class Recording:
        def __init__(self):
            self.seen = []

        def __getitem__(self, i):
            assert isinstance(i, int), "the walk must not slice the file"
            self.seen.append(i)
            return data[i]

    buf = Recording()
    fields, problem = onnx_format.top_fields(data, len(data), len(data))
    assert problem is None
    spans = onnx_wire.model_spans(buf, len(data), fields, lambda: None)
    assert spans is not None
    offset, length = spans.graph.initializer(0)
    assert data[offset:offset + length] == big.SerializeToString()
    assert not [i for i in buf.seen if start <= i < start + len(raw)]


def test_a_node_length_past_its_graph_gives_no_offsets():
    graph = b"\x0a" + varint(1 << 62) + b"\x22\x04Relu"  # node (1) declaring 2**62 bytes
    data = b"\x08\x09" + field(7, graph)
    fields, problem = onnx_format.top_fields(data, len(data), len(data))
    assert problem is None
    assert onnx_wire.model_spans(data, len(data), fields, lambda: None) is None


def _parser_failed(result):
    # scan_bytes turns an exception out of parse() into an AIR001 "onnx parser failed" finding.
    return [f.message for f in result.findings if "parser failed" in f.message]


@pytest.mark.slow
def test_truncated_and_corrupted_models_scan_without_exception():
    data = _mixed_model().SerializeToString()
    for cut in range(1, len(data), 5):
        assert not _parser_failed(scan_bytes(data[:cut], "m.onnx")), cut
    fields, _ = onnx_format.top_fields(data, len(data), len(data))
    _, _, length, graph = next(f for f in fields if f[0] == 7)
    for pos in range(graph, graph + length, max(1, length // 24)):  # one child process per scan
        broken = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:]
        result = scan_bytes(broken, "m.onnx")
        assert not _parser_failed(result), (pos, result.findings)
        for node in result.root.walk():
            if node.offset is not None:
                assert 0 <= node.offset <= node.offset + (node.length or 0) <= len(broken)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_wire_walk_on_mutated_models_returns_none_or_spans_in_bounds(draw):
    data = bytearray(draw.draw(st.sampled_from([_mixed_model(), F.if_model("Magic", "vendor.ops"),
                                                F.function_with_custom_op()])).SerializeToString())
    for _ in range(draw.draw(st.integers(1, 4))):
        data[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
    data = bytes(data[:draw.draw(st.integers(1, len(data)))])
    fields, _problem = onnx_format.top_fields(data, len(data), len(data))
    spans = onnx_wire.model_spans(data, len(data), fields, lambda: None)
    if spans is not None:
        _spans_in_bounds(spans, len(data))


@pytest.mark.parametrize("limit", [1, 5000])
def test_a_field_budget_ends_the_walk_with_no_offsets(monkeypatch, limit):
    monkeypatch.setattr(onnx_wire, "MAX_FIELDS", limit)
    data = F.many_nodes(2000).SerializeToString()
    fields, _ = onnx_format.top_fields(data, len(data), len(data))
    spans = onnx_wire.model_spans(data, len(data), fields, lambda: None)
    assert spans is None if limit == 1 else spans is not None
