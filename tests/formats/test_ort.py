"""onnxruntime ORT files (airlock.core.formats.ort): real files written by onnxruntime from ONNX models
built here, and hostile ones built from ort.fbs with the flatbuffers Builder (tests/fixtures/ort_files.py)."""

import json
import subprocess
import sys

import pytest
from fixtures import onnx_trigger_files
from fixtures import ort_files as f

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes

# onnxruntime's own generated flatbuffers classes, run in a child: what onnxruntime wrote, for comparison.
_REFERENCE = """
import json, sys
from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.InferenceSession import InferenceSession
data = open(sys.argv[1], "rb").read()
graph = InferenceSession.GetRootAs(data, 0).Model().Graph()
nodes = [graph.Nodes(i) for i in range(graph.NodesLength())]
inits = [graph.Initializers(i) for i in range(graph.InitializersLength())]
print(json.dumps({
    "ops": [(n.Domain() or b"").decode() + "." + n.OpType().decode() for n in nodes],
    "inits": [[t.Name().decode(), [int(d) for d in t.DimsAsNumpy()] if t.DimsLength() else [],
               bytes(t.RawDataAsNumpy()).hex() if t.RawDataLength() else ""] for t in inits],
}))
"""


def _reference(data, tmp_path):
    path = tmp_path / "m.ort"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", _REFERENCE, str(path)], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout)


def _nodes(result):
    return list(result.root.walk(expand_lazy=True))


def _rules(result):
    return {x.rule for x in result.findings}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "backdoor", "contrib", "if", "runtime"])
def test_the_reader_lists_exactly_what_onnxruntime_wrote(name, tmp_path):
    data = f.real()[name]
    expected = _reference(data, tmp_path)
    result = scan_bytes(data, "renamed")  # decided by content
    assert result.format == "ort"
    assert result.inspected == "full"
    graph = next(n for n in result.root.children() if n.label == "graph")
    ops = next(n for n in graph.children() if n.label.startswith("nodes"))
    listed = [f"{o.attrs['domain'].replace('ai.onnx', '')}.{o.attrs['op_type']}" for o in ops.children()]
    assert listed == expected["ops"]
    inits = next(n for n in graph.children() if n.label.startswith("initializers")).children()
    assert [n.label for n in inits] == [name for name, _dims, _raw in expected["inits"]]
    for node, (_name, dims, raw) in zip(inits, expected["inits"], strict=True):
        assert list(node.attrs["shape"]) == dims
        if raw:  # the initializer points at its own bytes in the file
            assert data[node.offset:node.offset + node.length].hex() == raw


def test_a_plain_model_and_a_contrib_op_are_clean():
    for name in ("plain", "contrib", "if"):
        result = scan_bytes(f.real()[name], f"{name}.ort")
        assert result.severity == Severity.NONE, (name, [x.message for x in result.findings])
    root = scan_bytes(f.real()["plain"], "m.ort").root
    assert root.attrs["ort_version"].isdigit() and root.attrs["producer"].startswith("airlock-tests")


def test_saved_runtime_optimizations_are_listed_and_clean():
    result = scan_bytes(f.real()["runtime"], "conv.ort")
    assert result.severity == Severity.NONE, [x.message for x in result.findings]
    group = next(n for n in result.root.children() if n.label.startswith("runtime optimizations"))
    produced = {n.attrs["produces"] for n in group.children()}
    assert "com.microsoft:FusedConv:1" in produced


def test_if_bodies_sit_under_their_operator():
    nodes = _nodes(scan_bytes(f.real()["if"], "m.ort"))
    branch = [n for n in nodes if n.label.startswith(("then_branch of If", "else_branch of If"))]
    assert len(branch) == 2
    assert any(n.kind == "operator" and n.attrs["op_type"] == "Relu" for b in branch for n in b.walk())


def test_a_backdoor_is_flagged_like_its_onnx_source():
    model = onnx_trigger_files.backdoor(onnx_trigger_files.classifier())
    onnx_result = scan_bytes(model.SerializeToString(), "m.onnx")
    ort_result = scan_bytes(f.real()["backdoor"], "m.ort")
    assert "ONX006" in _rules(onnx_result)
    assert "ONX006" in _rules(ort_result) and ort_result.severity == onnx_result.severity == Severity.HIGH
    hit = next(x for x in ort_result.findings if x.rule == "ONX006")
    assert "logits" in hit.message and "Where" in hit.message
    roles = {n.attrs.get("trigger_path") for n in _nodes(ort_result) if n.kind == "operator"}
    assert "output override" in roles  # the tree highlights the trigger path, as for ONNX


def test_a_custom_domain_is_flagged_like_its_onnx_source():
    data = f.with_custom_domain(f.real()["contrib"])
    result = scan_bytes(data, "m.ort")
    hits = [x for x in result.findings if x.rule == "ONX002"]
    assert hits and result.severity == Severity.MEDIUM, [x.message for x in result.findings]
    assert "vendor.custom.Gelu" in hits[0].message
    onnx_source = f.gelu_model()
    onnx_source.graph.node[1].domain = "vendor.custom"
    onnx_source.opset_import[1].domain = "vendor.custom"
    assert "ONX002" in _rules(scan_bytes(onnx_source.SerializeToString(), "m.onnx"))


@pytest.mark.parametrize(("name", "rule", "words"), [
    ("custom_domain.ort", "ONX002", "vendor.ops.FancyOp"),
    ("pyop.ort", "ONX001", "ai.onnx.contrib.PyOp"),
    ("resolver_custom.ort", "ORT001", "vendor.ops.Evil (the kernel type string resolver)"),
    ("optimization_custom.ort", "ORT001", "vendor.ops.FusedEvil (runtime optimization VendorFusion)"),
    ("newer_version.ort", "ORT002", "version 99"),
    ("external_bytes.ort", "ORT003", "offset 4,096"),
    ("bad_raw_size.ort", "AIR002", "need 32 bytes, raw_data holds 16"),
    ("bad_node_index.ort", "AIR002", "index 5, which is not below max_node_index 2"),
    ("edge_to_nowhere.ort", "AIR002", "an edge names node 77"),
    ("deep_nesting.ort", "AIR003", "nested more than 16 deep"),
    ("truncated.ort", "AIR002", "truncated"),
])
def test_hostile_and_malformed_files(name, rule, words):
    data, severity = next((d, s) for n, d, s in f.corpus() if n == name)
    result = scan_bytes(data, name)
    assert result.format == "ort"
    hits = [x for x in result.findings if x.rule == rule]
    assert hits, [(x.rule, x.message) for x in result.findings]
    assert words in hits[0].message
    assert result.severity == severity
    assert hits[0].offset is not None and hits[0].offset >= 0  # where it went wrong (past the end if cut)


def test_custom_ids_the_graph_uses_are_not_reported_twice():
    data = f.build([("vendor.ops", "FancyOp", ["x", "w"], ["y"])], resolver=["vendor.ops:FancyOp:1"])
    assert "ORT001" not in _rules(scan_bytes(data, "m.ort"))


def test_many_operators_are_paged_and_still_judged():
    ops = [("", "Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(1499)]
    ops.append(("vendor.ops", "Late", ["t1499"], ["y"]))
    result = scan_bytes(f.build(ops), "m.ort")
    group = next(n for n in _nodes(result) if n.label == "nodes (1500)")
    assert group.child_count == 1500 and group.child_at(1499).attrs["op_type"] == "Late"
    assert "ONX002" in _rules(result)


def test_the_graph_view_gets_the_operators():
    from airlock.core.graph import graph_sources

    root = scan_bytes(f.real()["backdoor"], "m.ort").root
    graph = next(n for n in root.children() if n.label == "graph").attrs["graph"]
    assert graph_sources(root)[0] is graph  # what the GUI's Graph tab opens
    built = graph.build()
    assert len([b for b in built.nodes if b.kind == "op"]) == graph.operator_count > 0


def test_a_name_claims_the_format():
    result = scan_bytes(b"not an ort file at all, just text\n", "model.ort")
    assert "FC001" in _rules(result) and result.severity >= Severity.HIGH


def test_onnxruntime_is_never_imported_by_the_reader():
    scan_bytes(f.real()["plain"], "m.ort")
    assert "onnxruntime" not in sys.modules


def test_names_past_the_budget_stop_the_walk(monkeypatch):
    from airlock.core.formats import ort_reader

    monkeypatch.setattr(ort_reader, "MAX_NAMES", 100)  # the budget scaled down, not the file scaled up
    ops = [("", "Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(200)]
    result = scan_bytes(f.build(ops), "m.ort")
    hits = [x for x in result.findings if x.rule == "AIR003"]
    assert hits and "names Airlock reads per ORT file" in hits[0].message
    assert result.inspected != "full" and result.severity >= Severity.HIGH
