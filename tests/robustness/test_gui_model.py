"""The GUI's item model over fuzzed trees: building it, expanding every page, reading every cell
and tooltip and rendering the view offscreen never raises (issue 9, "The GUI model").

A sample of the corpus, mutated, plus the hostile-text files; each scan happens in this process
(the GUI scans in-process too). qtmodeltester checks the model's invariants on a few of them.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from typing import Any

import pytest
import robust_harness as rh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QTreeView

from airlock.core.scan import scan_bytes
from airlock.gui.tree_model import NodeTreeModel

# The fast lane (`python -m pytest -m "not slow"`) skips it; CI runs everything.
pytestmark = pytest.mark.slow

ROLES = (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.DecorationRole,
         Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.UserRole, Qt.ItemDataRole.UserRole + 1)
MAX_VISITS = 3000


def exercise(model: NodeTreeModel) -> int:
    """Fetch every page (up to a cap) and read every cell in every role."""
    visited = 0
    stack = [QModelIndex()]
    while stack and visited < MAX_VISITS:
        parent = stack.pop()
        for _ in range(20):
            if not model.canFetchMore(parent):
                break
            model.fetchMore(parent)
        for row in range(model.rowCount(parent)):
            for column in range(model.columnCount(parent)):
                index = model.index(row, column, parent)
                for role in ROLES:
                    model.data(index, role)
                model.flags(index)
                model.parent(index)
            stack.append(model.index(row, 0, parent))
            visited += 1
    for column in range(model.columnCount(QModelIndex())):
        model.headerData(column, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole)
    return visited


def render(model: NodeTreeModel) -> None:
    view = QTreeView()
    view.setModel(model)
    view.resize(900, 600)
    view.expandToDepth(3)
    assert not view.grab().isNull()
    view.deleteLater()


@settings(max_examples=40 * rh.scale(), deadline=None, derandomize=rh.scale() == 1, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(st.deferred(lambda: rh.mutated([s for s in rh.seeds() if s.scan_s < 0.2])))
def test_item_model_over_fuzzed_trees(qapp: Any, case: tuple[str, bytes]) -> None:
    _name, data = case
    result = scan_bytes(data, "fuzzed.bin")
    try:
        model = NodeTreeModel(result.root)
        rh.STATS["GUI model: nodes visited"] += exercise(model)
        render(model)
        rh.STATS["GUI model: fuzzed files"] += 1
    finally:
        result.close()


def test_item_model_invariants_on_hostile_text(qtmodeltester: Any) -> None:
    from test_hostile_text import hostile_text_files

    for name, data in hostile_text_files():
        result = scan_bytes(data, name)
        try:
            model = NodeTreeModel(result.root)
            exercise(model)
            qtmodeltester.check(model, force_py=True)
            render(model)
        finally:
            result.close()
