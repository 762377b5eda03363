"""The code details view: a notebook opens as cells → risky calls; the code is shown with the call
marked (never run), and a finding jumps to its cell and call."""

from __future__ import annotations

import json

from airlock.core.code import CELL, CODE
from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes
from airlock.gui.details.code import CodeView, code_holder
from airlock.gui.details.pane import TAB_CODE, TAB_HEX, DetailsPane, attribute_rows
from airlock.gui.tree_model import NodeTreeModel

NOTEBOOK = json.dumps({"cells": [
    {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [],
     "source": ["%pip install joblib\n", "import joblib, torch\n"]},
    {"cell_type": "markdown", "metadata": {}, "source": ["## Load\n"]},
    {"cell_type": "code", "execution_count": 2, "metadata": {}, "outputs": [],
     "source": ["clf = joblib.load('model.joblib')\n", "sd = torch.load('w.pt', weights_only=True)\n"]},
], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1).encode()


def test_notebook_tree_is_cells_then_risky_calls(qtmodeltester) -> None:
    result = scan_bytes(NOTEBOOK, "train.ipynb")
    cells = [n for n in result.root.children() if n.kind == CELL]
    assert [c.label for c in cells] == ["cell 1: %pip install joblib", "cell 3: clf = joblib.load('model.joblib')"]
    (call,) = cells[1].children()
    assert call.label == "line 1: joblib.load('model.joblib')" and call.severity == Severity.HIGH
    assert cells[0].children() == []
    qtmodeltester.check(NodeTreeModel(result.root))


def test_code_view_marks_the_call_in_its_cell(qtbot) -> None:
    result = scan_bytes(NOTEBOOK, "train.ipynb")
    (finding,) = [f for f in result.findings if f.rule == "PY103"]
    view = CodeView()
    qtbot.addWidget(view)
    view.show_node(finding.node)
    shown = view.text.toPlainText()
    assert shown.startswith("clf = joblib.load('model.joblib')\nsd = torch.load(")
    assert [shown[s:e] for s, e in view.text.marks] == ["joblib.load('model.joblib')"]
    assert "never run" in view.status.text() and "high" in view.status.text()
    view.show_node(code_holder(finding.node))  # the cell itself: every risky call in it
    assert [view.text.toPlainText()[s:e] for s, e in view.text.marks] == ["joblib.load('model.joblib')"]


def test_pane_jumps_from_a_finding_to_the_code_tab(qtbot) -> None:
    source = "import torch\n\nx = 'ünï'; sd = torch.load(path)\n# \u202e hidden direction\n"
    result = scan_bytes(source.encode(), "train.py")
    pane = DetailsPane()
    qtbot.addWidget(pane)
    pane.set_source(result.source)
    (finding,) = [f for f in result.findings if f.rule == "PY101"]
    pane.show_node(finding.node, finding)
    assert pane.tabs.currentIndex() == TAB_CODE and pane.tabs.isTabVisible(TAB_CODE)
    shown = pane.code.text.toPlainText()
    assert [shown[s:e] for s, e in pane.code.text.marks] == ["torch.load(path)"]
    assert "\u202e" not in shown and "\\u202e" in shown  # escaped, the marks still land right
    assert pane.read(finding.offset, 10) == b"torch.load"
    rows = dict(attribute_rows(finding.node))
    assert "span" not in rows and rows["where"] == "line 3, column 17"
    code = next(n for n in result.root.walk() if n.kind == CODE)
    assert "see the Code tab" in dict(attribute_rows(code))["text"]
    pane.show_node(result.root)  # the file node: no code of its own
    assert not pane.tabs.isTabVisible(TAB_CODE) and pane.tabs.currentIndex() == TAB_HEX
    pane.set_source(None)
