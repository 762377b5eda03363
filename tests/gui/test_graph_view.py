"""The Graph tab: a real torch export and a 5,000-operator graph drawn, clicked, searched, highlighted."""


import pytest
from fixtures import graph_files as G
from fixtures import onnx_files as F
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from airlock.core.findings import Severity
from airlock.core.graph.model import CUSTOM, OP, PYTHON
from airlock.core.tree import INITIALIZER, OPERATOR
from airlock.gui.graph_canvas import DETAIL_SCALE


def open_graph(qtbot, win, path):
    with qtbot.waitSignal(win.all_scans_finished, timeout=120_000):
        (view,) = win.open_paths([str(path)])
    graph = view.graph_view
    assert graph is not None, "a file with a graph gets a Graph tab"
    tabs = graph.parentWidget().parentWidget()
    assert [tabs.tabText(i) for i in range(tabs.count())] == ["Structure", "Graph"]
    tabs.setCurrentWidget(graph)  # laying out starts when the tab is first shown
    qtbot.waitUntil(lambda: graph.current is not None, timeout=120_000)
    return view, graph


@pytest.fixture(scope="module")
def export_path(tmp_path_factory):
    return G.torch_export(tmp_path_factory.mktemp("graph") / "net.onnx")


def write(tmp_path, model, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def click(qtbot, canvas, index, button=Qt.MouseButton.LeftButton):
    canvas.reveal(index)
    centre = canvas.mapFromScene(canvas.box_rect(index).center())
    qtbot.mouseClick(canvas.viewport(), button, pos=centre)


def test_a_torch_export_is_drawn_and_a_click_selects_the_operator(qtbot, window, export_path):
    view, graph = open_graph(qtbot, window, export_path)
    laid = graph.current
    ops = [i for i, n in enumerate(laid.graph.nodes) if n.kind == OP]
    assert graph.status.text().startswith(f"{len(ops)} operators · ")
    conv = next(i for i in ops if laid.graph.nodes[i].title == "Conv")
    click(qtbot, graph.canvas, conv)
    assert graph.canvas.selected == conv
    node = view.current_node()
    assert node.kind == OPERATOR and node.attrs["op_type"] == "Conv"
    assert view.details.node is node  # the details pane shows the operator
    # the panel lists the operator's inputs; a weight opens its initializer
    inputs = graph.props.findItems("Inputs", Qt.MatchFlag.MatchExactly)[0]
    rows = [(inputs.child(i).text(0), inputs.child(i).text(1)) for i in range(inputs.childCount())]
    assert rows[0] == ("image", "from image float32 ⟨1×3×8×8⟩")
    weight = inputs.child(1)
    assert weight.text(1).startswith("initializer float32 ⟨8×3×3×3⟩")
    graph._prop_activated(weight)
    assert view.current_node().kind == INITIALIZER
    assert view.current_node().attrs["shape"] == (8, 3, 3, 3)


def test_the_canvas_paints_at_every_zoom_and_double_click_shows_the_tree(qtbot, window, export_path):
    view, graph = open_graph(qtbot, window, export_path)
    canvas = graph.canvas
    for scale in (2.0, 1.0, DETAIL_SCALE / 2):
        canvas.set_zoom(scale)
        image = canvas.grab().toImage()
        assert not image.isNull()
    canvas.set_zoom(1.0)
    relu = next(i for i, n in enumerate(graph.current.graph.nodes) if n.title == "Relu")
    canvas.reveal(relu)
    qtbot.mouseDClick(canvas.viewport(), Qt.MouseButton.LeftButton,
                      pos=canvas.mapFromScene(canvas.box_rect(relu).center()))
    tabs = graph.parentWidget().parentWidget()
    assert tabs.currentIndex() == 0 and view.current_node().attrs["op_type"] == "Relu"
    # and back: the tree's operator shows its box
    assert graph.show_tree_node(view.current_node())
    assert tabs.currentWidget() is graph and graph.canvas.selected == relu


def test_five_thousand_operators_are_laid_out_and_only_the_visible_ones_painted(qtbot, window, tmp_path):
    path = write(tmp_path, G.transformer_onnx(5000), "big.onnx")
    view, graph = open_graph(qtbot, window, path)
    laid = graph.current
    assert sum(1 for n in laid.graph.nodes if n.kind == OP) >= 5000
    canvas = graph.canvas
    canvas.set_zoom(1.0)
    canvas.centerOn(laid.layout.x[2500], laid.layout.y[2500])
    shown = canvas.mapToScene(canvas.viewport().rect()).boundingRect()
    visible = canvas.visible_nodes(shown)
    assert 0 < len(visible) < 200  # a screenful, not the graph
    assert all(canvas.box_rect(v).intersects(shown.adjusted(-300, 0, 300, 0)) for v in visible)
    assert not canvas.grab().toImage().isNull()
    # search: the operators that read or write block 200's tensors, Enter goes to each
    graph.search.setText("b200.")
    assert graph.found.text() == "17 found"
    first = graph.next_match()
    assert first in canvas.matches and canvas.selected == first
    assert view.current_node().kind == OPERATOR  # a paged operator list was paged in
    centre = canvas.mapToScene(canvas.viewport().rect().center())
    assert abs(centre.y() - laid.layout.y[first]) < 5


def test_risky_operators_are_highlighted_and_next_risky_goes_to_them(qtbot, window, tmp_path):
    from onnx import helper

    model = F.model([helper.make_node("Relu", ["x"], ["h"]),
                     helper.make_node("PyOp", ["h"], ["p"], domain="ai.onnx.contrib", module="evil"),
                     helper.make_node("FancyOp", ["p"], ["y"], domain="vendor.ops")],
                    opsets=(("", 17), ("ai.onnx.contrib", 1), ("vendor.ops", 1)))
    _view, graph = open_graph(qtbot, window, write(tmp_path, model))
    nodes = graph.current.graph.nodes
    assert graph.status.text().endswith("2 highlighted")
    first = graph.next_risky()
    assert nodes[first].severity == Severity.HIGH and PYTHON in nodes[first].marks  # worst first
    second = graph.next_risky()
    assert CUSTOM in nodes[second].marks
    why = graph.props.findItems("Highlighted", Qt.MatchFlag.MatchExactly)[0]
    assert why.child(0).text(0) == "MEDIUM" and "vendor.ops" in why.child(0).text(1)
    assert "custom operator domain" in graph.canvas.tooltip(second)


def test_subgraphs_can_be_chosen(qtbot, window, tmp_path):
    _view, graph = open_graph(qtbot, window, write(tmp_path, F.if_model()))
    assert graph.chooser.isVisibleTo(graph) and graph.chooser.count() == 3
    then = next(i for i, s in enumerate(graph.sources) if s.title.startswith("then_branch"))
    assert graph.chooser.itemText(then) == "then_branch of If then (1 operator)"
    graph.chooser.setCurrentIndex(then)
    qtbot.waitUntil(lambda: graph.current is not None and graph.current.graph.title.startswith("then_branch"),
                    timeout=60_000)
    assert [n.title for n in graph.current.graph.nodes if n.kind == OP] == ["Relu"]


def test_a_file_without_a_graph_has_no_graph_tab(qtbot, window, tmp_path):
    from airlock.gui.demo import safetensors_bytes

    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_bytes())
    with qtbot.waitSignal(window.all_scans_finished, timeout=60_000):
        (view,) = window.open_paths([str(path)])
    assert view.graph_view is None


def test_a_box_menu_copies_and_leads_to_the_tree(qtbot, window, export_path, monkeypatch):
    from airlock.gui import node_menu

    view, graph = open_graph(qtbot, window, export_path)
    conv = next(i for i, n in enumerate(graph.current.graph.nodes) if n.title == "Conv")
    node = graph.current.graph.locate(graph.current.graph.nodes[conv])
    menu = node_menu.build_menu(view, node, graph, [("Show in Tree", lambda: graph.show_in_tree(conv))])
    labels = [a.text() for a in menu.actions() if a.text()]
    assert labels[:3] == ["Copy Name", "Copy Offset", "Copy Path"]
    assert "Show in Hex" in labels and "Show in Graph" in labels and labels[-1] == "Show in Tree"
    next(a for a in menu.actions() if a.text() == "Copy Path").trigger()
    assert QGuiApplication.clipboard().text() == node.path()
    next(a for a in menu.actions() if a.text() == "Show in Hex").trigger()
    from airlock.gui.details.pane import TAB_HEX

    assert view.details.tabs.currentIndex() == TAB_HEX and view.current_node() is node


def test_a_torchscript_archive_shows_its_forward(qtbot, window, tmp_path):
    from fixtures import torchscript_files as TSF

    path = tmp_path / "model.pt"
    path.write_bytes(TSF.hostile()["reads_a_file.pt"])
    view, graph = open_graph(qtbot, window, path)
    laid = graph.current
    assert any(n.kind == OP for n in laid.graph.nodes)
    risky = graph.next_risky()
    assert laid.graph.nodes[risky].title == "from_file"
    assert view.current_node().kind == "text"  # a box leads to its code file


def test_a_wider_window_widens_the_graph_pane_as_it_does_the_tree(qtbot, window, export_path):
    window.resize(1280, 800)
    _, graph = open_graph(qtbot, window, export_path)
    tabs = graph.parentWidget().parentWidget()
    top = tabs.parentWidget()
    qtbot.waitUntil(lambda: top.sizes()[0] > 0)
    before = top.sizes()
    window.resize(2560, 1440)
    qtbot.waitUntil(lambda: sum(top.sizes()) > sum(before) + 1000)
    after = top.sizes()
    grown = [a - b for a, b in zip(after, before, strict=True)]
    assert grown[0] > grown[1] > 0, (before, after)  # 3:2, the tree (now with its Graph tab) first


def test_a_trigger_path_and_external_data_are_highlighted_in_the_window(qtbot, window, tmp_path):
    """The backdoor analysis's trigger path (probe → comparison → override) and an initializer whose
    bytes live outside the model's folder: highlighted boxes (and the path's edges), reached with
    Next risky, with the reason in the panel and the tooltip."""
    from fixtures import onnx_trigger_files as T

    from airlock.core.graph.model import EXTERNAL, TRIGGER

    _view, graph = open_graph(qtbot, window, write(tmp_path, T.backdoor(T.classifier(), "where"), "trig.onnx"))
    nodes = graph.current.graph.nodes
    on_path = {nodes[i].title for i in range(len(nodes)) if TRIGGER in nodes[i].marks}
    assert {"Slice", "Greater", "Where"} <= on_path and "Gemm" not in on_path
    assert sum(graph.current.graph.edge_marks) >= 2
    seen = set()
    for _ in range(len(graph.current.graph.risky())):
        index = graph.next_risky()
        seen.add(nodes[index].title)
        if nodes[index].title == "Where":
            why = graph.props.findItems("Highlighted", Qt.MatchFlag.MatchExactly)[0]
            assert why.child(0).text(0) == "HIGH" and why.child(0).text(1) == "on a trigger path: output override"
            assert "on a trigger path" in graph.canvas.tooltip(index)
    assert {"Slice", "Greater", "Where"} <= seen
    assert not graph.canvas.grab().isNull()

    folder = tmp_path / "ext"
    folder.mkdir()
    _view, graph = open_graph(qtbot, window, write(folder, F.external_model("../../etc/passwd"), "ext.onnx"))
    index = graph.next_risky()
    box = graph.current.graph.nodes[index]
    assert EXTERNAL in box.marks and box.severity == Severity.CRITICAL
    why = graph.props.findItems("Highlighted", Qt.MatchFlag.MatchExactly)[0]
    assert why.child(0).text(0) == "CRITICAL" and "'../../etc/passwd'" in why.child(0).text(1)


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_a_trigger_path_is_highlighted_in_the_graph(qtbot, window, tmp_path, kind):
    """Issue 21: the backdoor analysis's trigger path (ONX006 / TS003) is drawn highlighted, edges
    included, and "Next risky" walks it; the tooltip says each box's part in the trigger."""
    from airlock.core.graph.model import TRIGGER

    if kind == "onnx":
        from fixtures.onnx_trigger_files import backdoor, classifier

        path = write(tmp_path, backdoor(classifier(), "where"))
    else:
        from fixtures.torchscript_trigger_files import backdoored

        path = tmp_path / "model.pt"
        path.write_bytes(backdoored()["cnn_where_traced.pt"])
    _view, graph = open_graph(qtbot, window, path)
    laid = graph.current
    on_path = [i for i, n in enumerate(laid.graph.nodes) if TRIGGER in n.marks]
    assert len(on_path) >= 3 and any(laid.graph.edge_marks)
    assert "highlighted" in graph.status.text()
    first = graph.next_risky()
    assert first in on_path and laid.graph.nodes[first].severity == Severity.HIGH
    tips = "\n".join(graph.canvas.tooltip(i) for i in on_path)
    assert "on a trigger path: comparison with constants" in tips and "output override" in tips
