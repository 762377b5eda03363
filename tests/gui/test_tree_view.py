"""How a tab shows its tree: columns sized to what they hold, and opened on what matters."""

import io

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyleOptionViewItem

from airlock.gui import columns
from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.tree_model import COL_NAME, COL_OFFSET, COL_SHAPE, COL_TYPE, NODE_ROLE


def torch_file(tmp_path, name, *, legacy=False):
    state = {"model.layers.0.mlp.down_proj.weight": torch.zeros(3584, 2, dtype=torch.float16),
             "model.embed_tokens.weight": torch.zeros(4, 3), "lm_head.bias": torch.zeros(4)}
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)  # written by torch, read by Airlock
    path = tmp_path / name
    path.write_bytes(buf.getvalue())
    return path


def visible_nodes(view):
    out, index = [], view.tree.model().index(0, 0)
    while index.isValid():
        out.append(index.data(NODE_ROLE))
        index = view.tree.indexBelow(index)
    return out


@pytest.mark.parametrize("legacy", [False, True])
def test_a_clean_checkpoint_opens_on_its_tensors_with_the_pickles_folded(qtbot, open_and_wait, window, tmp_path, legacy):
    (view,) = open_and_wait(window, [torch_file(tmp_path, "m.pt", legacy=legacy)])
    shown = visible_nodes(view)
    assert "model.layers.0.mlp.down_proj.weight" in [n.label for n in shown]  # open, not a row to find
    kinds = [n.kind for n in shown]
    assert "pickle" not in kinds and "opcode" not in kinds  # torch's plumbing stays folded
    tensors = next(n for n in shown if n.label.startswith("tensors ("))
    assert tensors.attrs["role"] == "contents"
    internals = [n for n in shown if n.attrs.get("role") == "internals"]
    assert internals and not any(view.tree.isExpanded(view.model.index_for(n)) for n in internals)
    if legacy:
        assert shown[1].label == "pickles (5)"  # the five legacy pickles under one row


def test_a_risky_file_opens_on_its_risky_nodes(qtbot, open_and_wait, window, tmp_path):
    path = tmp_path / "hostile.pkl"
    path.write_bytes(hostile_pickle_bytes())
    (view,) = open_and_wait(window, [path])
    shown = visible_nodes(view)
    assert any(n.kind == "call" and "os.system" in n.label for n in shown)
    assert not any(n.kind == "opcode" for n in shown)


def test_columns_fit_what_they_hold_and_name_takes_the_rest(qtbot, open_and_wait, window, tmp_path):
    (view,) = open_and_wait(window, [torch_file(tmp_path, "m.pt")])
    view.fit_columns()
    header = view.tree.header()
    metrics = view.tree.fontMetrics()
    assert header.sectionSize(COL_SHAPE) >= metrics.horizontalAdvance("3584 × 2")
    offsets = [n for n in visible_nodes(view) if n.offset is not None]
    widest = max(metrics.horizontalAdvance(f"{n.offset:,}") for n in offsets)
    assert header.sectionSize(COL_OFFSET) >= widest
    assert header.sectionResizeMode(COL_NAME) == header.ResizeMode.Stretch
    used = sum(header.sectionSize(c) for c in range(header.count()))
    assert abs(used - view.tree.viewport().width()) <= 2  # no empty half pane, nothing pushed off
    assert view.tree.textElideMode() == Qt.TextElideMode.ElideMiddle


def test_a_column_never_squeezes_name_out(qtbot, open_and_wait, window, tmp_path):
    (view,) = open_and_wait(window, [torch_file(tmp_path, "m.pt")])
    widths = columns.fit(view.tree)
    assert sum(widths.values()) <= view.tree.viewport().width() - columns.NAME_MIN
    assert view.tree.header().sectionSize(COL_NAME) >= columns.NAME_MIN - 2


def test_columns_are_fitted_again_when_the_tree_gets_narrower_or_wider(qtbot, open_and_wait, window, tmp_path):
    """Regression (new-user trial): fitted while the tree still had the whole window, the columns kept
    those widths once the splitter gave the details pane its share, and Name was left ~130 px."""
    (view,) = open_and_wait(window, [torch_file(tmp_path, "m.pt")])
    header = view.tree.header()
    splitter = view.tree.parentWidget().parentWidget()
    for tree_width in (300, 1100, 700):
        total = sum(splitter.sizes())
        splitter.setSizes([tree_width, total - tree_width])
        qtbot.waitUntil(lambda: abs(view._fitted_width - view.tree.viewport().width()) <= 40, timeout=10_000)
        if tree_width >= 700:  # narrower, the columns' headers alone take the room (fit never cuts those)
            assert header.sectionSize(COL_NAME) >= columns.NAME_MIN - 2


def test_a_column_the_user_sized_keeps_its_width(qtbot, open_and_wait, window, tmp_path):
    (view,) = open_and_wait(window, [torch_file(tmp_path, "m.pt")])
    header = view.tree.header()
    header.resizeSection(COL_SHAPE, 333)  # as a drag on the header does
    splitter = view.tree.parentWidget().parentWidget()
    total = sum(splitter.sizes())
    splitter.setSizes([total - 200, 200])
    qtbot.wait(400)  # longer than the fit's debounce: a fit would have run by now
    assert view._user_sized and header.sectionSize(COL_SHAPE) == 333


def test_tooltips_hold_the_full_value(qtbot, open_and_wait, window, tmp_path):
    (view,) = open_and_wait(window, [torch_file(tmp_path, "m.pt")])
    model = view.model
    tensor = next(n for n in visible_nodes(view) if n.kind == "tensor" and n.attrs["shape"] == (3584, 2))
    index = model.index_for(tensor)
    assert "model.layers.0.mlp.down_proj.weight" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert "3584 × 2" in index.siblingAtColumn(COL_SHAPE).data(Qt.ItemDataRole.ToolTipRole)
    assert "float16" in index.siblingAtColumn(COL_TYPE).data(Qt.ItemDataRole.ToolTipRole)
    offset_tip = index.siblingAtColumn(COL_OFFSET).data(Qt.ItemDataRole.ToolTipRole)
    assert f"offset {tensor.offset:,} (0x{tensor.offset:x})" in offset_tip


def test_tensor_names_keep_their_end_when_they_do_not_fit(qtbot, open_and_wait, window, tmp_path):
    (view,) = open_and_wait(window, [torch_file(tmp_path, "m.pt")])
    delegate = view.tree.itemDelegateForColumn(COL_NAME)
    tensor = next(n for n in visible_nodes(view) if n.kind == "tensor")
    group = tensor.parent
    for node, mode in ((tensor, Qt.TextElideMode.ElideLeft), (group, Qt.TextElideMode.ElideMiddle)):
        option = QStyleOptionViewItem()
        option.textElideMode = view.tree.textElideMode()  # what the view hands its delegate
        delegate.initStyleOption(option, view.model.index_for(node))
        assert option.textElideMode == mode, node.label
