"""ONNX graphs for the graph view: edges from producers to consumers, initializers as rows, risky
boxes marked, every box found again in the tree."""


import pytest
from fixtures import graph_files as G
from fixtures import onnx_files as F

from airlock.core.api import scan_file
from airlock.core.findings import Severity
from airlock.core.graph import graph_sources
from airlock.core.graph.layout import layered_layout
from airlock.core.graph.model import CUSTOM, EXTERNAL, INPUT, OP, OUTPUT, PYTHON, SUBGRAPH, box_size
from airlock.core.scan import scan_bytes
from airlock.core.tree import INITIALIZER, OPERATOR


def _graphs(model, name="m.onnx"):
    result = scan_bytes(model.SerializeToString(), name)
    return result, graph_sources(result.root)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = G.torch_export(tmp_path_factory.mktemp("export") / "net.onnx")
    result = scan_file(str(path), keep_tree=True).result
    yield result
    result.close()


def test_a_real_torch_export_becomes_a_connected_graph(exported):
    import onnx

    (source,) = graph_sources(exported.root)
    graph = source.build()
    model = onnx.load(exported.path, load_external_data=False)  # the test's reference, never in core
    ops = [n for n in graph.nodes if n.kind == OP]
    assert [n.title for n in ops] == [n.op_type for n in model.graph.node]
    assert source.operator_count == len(model.graph.node)
    inits = {t.name for t in model.graph.initializer}
    producers = {out: i for i, n in enumerate(graph.nodes) for out in n.outputs}
    expected = set()
    for i, node in enumerate(graph.nodes):
        if node.kind != OP:
            continue
        proto = model.graph.node[node.tree_ref[1]]
        for name in proto.input:
            if name and name not in inits:
                expected.add((producers[name], i))
        # every weight the operator reads is a row of its box
        assert [r.split(" ⟨")[0] for r in node.rows] == [n for n in proto.input if n in inits]
    outputs = [i for i, n in enumerate(graph.nodes) if n.kind == OUTPUT]
    assert [graph.nodes[i].title for i in outputs] == ["scores"]
    expected.add((producers["scores"], outputs[0]))
    assert set(graph.edges) == expected
    assert [n.title for n in graph.nodes if n.kind == INPUT] == ["image"]
    assert graph.nodes[0].name == "float32 ⟨1×3×8×8⟩"
    assert graph.risky() == []


def test_boxes_and_weights_are_found_again_in_the_tree(exported):
    (source,) = graph_sources(exported.root)
    graph = source.build()
    for box in graph.nodes:
        found = graph.locate(box)
        assert found is not None
        if box.kind == OP:
            assert found.kind == OPERATOR and found.attrs["op_type"] == box.title
    conv = next(n for n in graph.nodes if n.title == "Conv")
    weight_name = conv.rows[0].split(" ⟨")[0]
    tensor = graph.locate_tensor(weight_name)
    assert tensor is not None and tensor.kind == INITIALIZER and tensor.label == weight_name
    assert tensor.attrs["shape"] == (8, 3, 3, 3)
    assert graph.locate_tensor("no such tensor") is None
    # the graph rides on the tree as an attribute the details pane can show
    owner = next(n for n in exported.root.walk() if n.attrs.get("graph") is source)
    assert str(owner.attrs["graph"]) == f"{source.operator_count} operators: see the Graph tab"


def test_layout_of_the_export_places_every_box(exported):
    (source,) = graph_sources(exported.root)
    graph = source.build()
    sizes = [box_size(n, 7.0, 16.0) for n in graph.nodes]
    layout = layered_layout(len(graph.nodes), graph.edges, [w for w, _ in sizes], [h for _, h in sizes])
    assert len(layout.x) == len(graph.nodes)
    for a, b in graph.edges:
        assert layout.layer[a] < layout.layer[b]
    conv = next(i for i, n in enumerate(graph.nodes) if n.title == "Conv")
    assert sizes[conv][1] == 4 * 16.0 + 12.0  # type, name and two weight rows


def test_custom_and_python_operators_are_marked():
    _, (source,) = _graphs(F.custom_domain_model())
    box = next(n for n in source.build().nodes if n.kind == OP)
    assert box.title == "vendor.ops.FancyOp"
    assert box.severity == Severity.MEDIUM and CUSTOM in box.marks
    assert "custom operator domain 'vendor.ops'" in box.reasons[0]
    _, (source,) = _graphs(F.pyop_model())
    box = next(n for n in source.build().nodes if n.kind == OP)
    assert box.severity == Severity.HIGH and PYTHON in box.marks
    _, (source,) = _graphs(F.standard_extra_domains())
    assert source.build().risky() == []


def test_a_local_function_is_not_a_custom_operator_and_has_its_own_graph():
    _, sources = _graphs(F.local_function_model())
    main, function = sources
    assert main.build().risky() == []
    assert function.title == "my.funcs.Double"
    body = function.build()
    assert [n.title for n in body.nodes if n.kind == OP] == ["Add"]
    add = next(i for i, n in enumerate(body.nodes) if n.kind == OP)
    a = next(i for i, n in enumerate(body.nodes) if n.kind == INPUT)
    assert body.edges.count((a, add)) == 1  # Add(a, a): one edge, the tensor read twice
    assert body.locate(body.nodes[add]).kind == OPERATOR


def test_external_data_outside_the_folder_is_critical():
    _, (source,) = _graphs(F.external_model("../../etc/passwd"))
    box = next(n for n in source.build().nodes if n.kind == OP)
    assert box.severity == Severity.CRITICAL and EXTERNAL in box.marks
    assert "'../../etc/passwd'" in box.reasons[0] and "climb out" in box.reasons[0]


def test_subgraphs_are_listed_and_their_holder_marked():
    _, sources = _graphs(F.if_model(then_op="Evil", then_domain="bad.ops"))
    titles = [s.title for s in sources]
    assert titles[0] == "graph g"
    assert {"then_branch of If then", "else_branch of If else"} <= set(titles)
    main = sources[0].build()
    if_box = next(n for n in main.nodes if n.title == "If")
    assert SUBGRAPH in if_box.marks and if_box.severity == Severity.NONE
    then = next(s for s in sources if s.title.startswith("then_branch")).build()
    evil = next(n for n in then.nodes if n.kind == OP)
    assert CUSTOM in evil.marks
    assert then.nodes[[n.kind for n in then.nodes].index(OP)].inputs == [("x", "from an enclosing graph")]


def test_a_paged_operator_list_is_still_located():
    _result, (source,) = _graphs(G.transformer_onnx(1500))
    graph = source.build()
    ops = [n for n in graph.nodes if n.kind == OP]
    assert len(ops) == source.operator_count > 1000
    last = graph.locate(ops[-1])
    assert last is not None and last.attrs["op_type"] == "Identity"
    mask = next(i for i, n in enumerate(graph.nodes) if n.title == "mask")
    assert sum(1 for a, _ in graph.edges if a == mask) == (len(ops) - 1) // 15
    # block 3's 15 operators, and the two of block 4 that read its output
    assert len(graph.search("b3.")) == 17
    assert graph.search("  ") == []


def test_hostile_names_are_escaped_in_every_box():
    from onnx import helper

    evil = "x\u202e\u0000gnp.exe"
    model = F.model([helper.make_node("Relu", ["x"], [evil], name="n\x1b[31m"),
                     helper.make_node("Neg", [evil], ["y"], domain="", name="\u200bz")])
    _, (source,) = _graphs(model)
    graph = source.build()
    for box in graph.nodes:
        for text in (box.title, box.name, *box.rows, *box.outputs, *(t for pair in box.inputs for t in pair)):
            assert text.isprintable(), text
    assert all(name.isprintable() for name in graph.edge_names)
    assert graph.search("gnp.exe")  # search still sees the raw name


def test_a_cycle_in_a_hostile_graph_is_built_and_laid_out():
    from onnx import helper

    model = F.model([helper.make_node("Add", ["x", "loop"], ["a"]), helper.make_node("Relu", ["a"], ["loop"]),
                     helper.make_node("Identity", ["a"], ["y"])])
    _, (source,) = _graphs(model)
    graph = source.build()
    sizes = [box_size(n, 7.0, 16.0) for n in graph.nodes]
    layout = layered_layout(len(graph.nodes), graph.edges, [w for w, _ in sizes], [h for _, h in sizes])
    assert len(layout.reversed) == 1


def test_a_tree_node_leads_back_to_its_box(exported):
    (source,) = graph_sources(exported.root)
    graph = source.build()
    for i, box in enumerate(graph.nodes):
        assert graph.index_of(graph.locate(box)) == i
    assert graph.index_of(exported.root) is None


def test_the_backdoor_analysis_trigger_path_is_highlighted():
    # The ONNX trigger analysis (core/formats/onnx_triggers.py) marks each operator's role; the graph
    # draws those boxes, and the edges between them, as the trigger path.
    from fixtures import onnx_trigger_files as T

    from airlock.core.graph.model import TRIGGER

    result, (source,) = _graphs(T.backdoor(T.classifier(), "where"))
    assert result.severity == Severity.HIGH
    graph = source.build()
    path = {b.title: b.reasons[0] for b in graph.nodes if TRIGGER in b.marks}
    assert path["Slice"] == "on a trigger path: input probe"
    assert path["Greater"] == "on a trigger path: comparison with constants"
    assert path["Where"] == "on a trigger path: output override"
    assert "Gemm" not in path and all(graph.nodes[i].severity == Severity.HIGH for i in graph.risky()
                                      if TRIGGER in graph.nodes[i].marks)
    assert sum(graph.edge_marks) >= 2  # the path's edges are drawn highlighted too
    _, (clean,) = _graphs(T.classifier())
    assert not any(TRIGGER in b.marks for b in clean.build().nodes)
