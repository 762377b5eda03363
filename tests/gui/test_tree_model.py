"""The item model over core Nodes: Qt's own model checks, paged loading, plain text (filters: test_search)."""

from PySide6.QtCore import QModelIndex, Qt

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes
from airlock.core.tree import FILE, GROUP, PICKLE, TEXT, Node
from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.tree_model import (
    BATCH,
    COL_NAME,
    COL_RISK,
    COL_SHAPE,
    COL_SIZE,
    COL_TYPE,
    NODE_ROLE,
    NodeTreeModel,
)


def lazy_tree(count=150_000):
    built = []

    def page(start, stop):
        built.append((start, stop))
        return [Node(TEXT, f"token {i}", offset=i * 4, length=4, attrs={"id": i}) for i in range(start, stop)]

    root = Node(FILE, "vocab.gguf", offset=0, length=count * 4)
    group = root.child(GROUP, f"tokens ({count:,})")
    group.set_lazy_children(count, page)
    return root, group, built


def test_modeltester_on_a_scanned_hostile_pickle(qtmodeltester):
    result = scan_bytes(hostile_pickle_bytes(), "hostile.pkl")
    model = NodeTreeModel(result.root)
    qtmodeltester.check(model, force_py=True)
    qtmodeltester.check(model)


def test_modeltester_on_a_lazy_tree(qtmodeltester):
    root, _, _ = lazy_tree(3_000)
    model = NodeTreeModel(root)
    qtmodeltester.check(model, force_py=True)


def test_150k_children_are_fetched_page_by_page(qapp):
    root, group, built = lazy_tree()
    model = NodeTreeModel(root)
    root_index = model.index(0, 0)
    group_index = model.index(0, 0, root_index)
    assert model.data(group_index) == "tokens (150,000)"
    assert model.hasChildren(group_index)
    # Nothing is built until rows are looked at; then only the pages that hold them.
    assert built == []
    assert model.rowCount(group_index) == BATCH
    assert model.canFetchMore(group_index)
    assert model.data(model.index(5, 0, group_index)) == "token 5"
    assert built == [(0, 256)]
    model.fetchMore(group_index)
    assert model.rowCount(group_index) == 2 * BATCH
    assert len(built) == 1  # fetching rows does not build nodes either
    # Jumping to the last node (a finding's target) loads rows up to it and builds one more page.
    last = group.child_at(149_999)
    index = model.index_for(last)
    assert index.isValid() and index.row() == 149_999
    assert model.data(index) == "token 149999"
    assert model.rowCount(group_index) == 150_000
    assert not model.canFetchMore(group_index)
    assert len(built) == 2


def test_view_stays_cheap_on_a_150k_node(qtbot):
    from PySide6.QtWidgets import QTreeView

    root, _group, built = lazy_tree()
    model = NodeTreeModel(root)
    view = QTreeView()
    view.setUniformRowHeights(True)
    view.setModel(model)
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    view.expandRecursively(model.index(0, 0), 1)
    qtbot.wait(50)
    # QTreeView lays out every row the model exposes, so it builds the rows fetched so far
    # (a batch or two), never the 150,000.
    group_index = model.index(0, 0, model.index(0, 0))
    assert view.isExpanded(group_index)
    assert model.rowCount(group_index) <= 3 * BATCH
    assert sum(stop - start for start, stop in built) <= 3 * BATCH + 256


def test_columns_show_dtype_shape_size_and_risk(qapp):
    root = Node(FILE, "m.safetensors", offset=0, length=100)
    root.child("tensor", "w", offset=8, length=64, attrs={"dtype": "F32", "shape": (4, 4), "size": 64})
    model = NodeTreeModel(root)
    idx = model.index(0, 0, model.index(0, 0))
    row = [model.data(idx.siblingAtColumn(c)) for c in range(model.columnCount())]
    assert row[COL_NAME] == "w"
    assert row[COL_TYPE] == "F32"
    assert row[COL_SHAPE] == "4 × 4"
    assert row[COL_SIZE] == "64 B"


def test_risk_is_colour_icon_and_text_and_parents_carry_the_worst(qapp):
    result = scan_bytes(hostile_pickle_bytes(), "hostile.pkl")
    model = NodeTreeModel(result.root)
    root = model.index(0, 0)
    risk = root.siblingAtColumn(COL_RISK)
    assert model.data(risk) == "critical"
    assert model.data(risk, Qt.ItemDataRole.DecorationRole) is not None
    assert model.data(risk, Qt.ItemDataRole.ForegroundRole) is not None
    assert model.data(root, Qt.ItemDataRole.BackgroundRole) is not None
    pickle_index = model.index(0, 0, root)
    assert model.data(pickle_index, NODE_ROLE).kind == PICKLE
    assert model.data(pickle_index.siblingAtColumn(COL_RISK)) == "critical"


def test_hostile_strings_are_escaped_plain_text(qapp):
    nasty = "<b>bold</b><img src=x onerror=alert(1)>\u202egnp.exe\x1b[31m\n"
    root = Node(FILE, "f")
    root.child(TEXT, nasty, attrs={"dtype": nasty})
    model = NodeTreeModel(root)
    idx = model.index(0, 0, model.index(0, 0))
    shown = model.data(idx)
    assert "\u202e" not in shown and "\x1b" not in shown and "\n" not in shown
    assert "\\u202e" in shown and "<b>bold</b>" in shown  # markup is kept as literal text
    assert "\u202e" not in model.data(idx.siblingAtColumn(COL_TYPE))
    tip = model.data(idx, Qt.ItemDataRole.ToolTipRole)
    assert "<b>" not in tip and "&lt;b&gt;" in tip and "\u202e" not in tip


def test_severity_of_a_risky_leaf_reaches_the_root(qapp):
    root = Node(FILE, "f")
    leaf = root.child(GROUP, "g").child(TEXT, "x")

    class F:
        severity = Severity.HIGH

    leaf.attach(F())
    model = NodeTreeModel(root)
    assert model.data(model.index(0, COL_RISK, QModelIndex())) == "high"
