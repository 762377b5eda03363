"""Tree columns sized to what they hold: Name takes the room left, the others fit their contents.

Fitting measures the header and a sample of the rows the view shows (the first few hundred, in
display order), never every row: a tree can expose 150,000 of them. A column is never made so wide
that Name has no room; a cell that still does not fit is elided in the middle (paths keep their
start and their end) and its tooltip holds the full value. Tensor names are elided at the left:
state_dict.model.layers.0.self_attn.q_proj.weight and its layer 1 twin differ in their middle and end.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QHeaderView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QTreeView

from airlock.core.tree import INITIALIZER, TENSOR, Node
from airlock.gui.tree_model import COL_NAME, COL_RISK, HEADERS, NODE_ROLE

SAMPLE_ROWS = 200
PADDING = 18  # the cell's margins and a little air
ICON = 22  # the severity icon drawn before the Risk text
NAME_MIN = 220  # Name keeps at least this many pixels
COLUMN_SHARE = 0.3  # no other column takes more than this share of the view


class NameDelegate(QStyledItemDelegate):
    """The Name column: a tensor's name keeps its end (the layer and the weight), others their ends."""

    def initStyleOption(self, option: QStyleOptionViewItem,
                        index: QModelIndex | QPersistentModelIndex) -> None:
        super().initStyleOption(option, index)
        node = index.data(NODE_ROLE)
        if isinstance(node, Node) and node.kind in (TENSOR, INITIALIZER):
            option.textElideMode = Qt.TextElideMode.ElideLeft


def setup(header: QHeaderView) -> None:
    header.setStretchLastSection(False)
    header.setMinimumSectionSize(36)
    for column in range(len(HEADERS)):
        mode = QHeaderView.ResizeMode.Stretch if column == COL_NAME else QHeaderView.ResizeMode.Interactive
        header.setSectionResizeMode(column, mode)


def sample_rows(view: QTreeView, limit: int = SAMPLE_ROWS) -> list[QModelIndex]:
    """Up to `limit` rows in display order from the top (expanded branches included)."""
    model = view.model()
    if model is None:
        return []
    rows: list[QModelIndex] = []
    index = model.index(0, 0)
    while index.isValid() and len(rows) < limit:
        rows.append(index)
        index = view.indexBelow(index)
    return rows


def wanted_widths(view: QTreeView, rows: list[QModelIndex]) -> dict[int, int]:
    """The width each column other than Name needs for its header and the sampled cells."""
    metrics = view.fontMetrics()
    header_metrics = view.header().fontMetrics()
    sort_room = view.style().pixelMetric(QStyle.PixelMetric.PM_HeaderMargin) * 2
    widths = {}
    for column in range(len(HEADERS)):
        if column == COL_NAME:
            continue
        best = header_metrics.horizontalAdvance(HEADERS[column]) + sort_room + PADDING
        for row in rows:
            text = row.siblingAtColumn(column).data(Qt.ItemDataRole.DisplayRole)
            if text:
                extra = ICON if column == COL_RISK else 0
                best = max(best, metrics.horizontalAdvance(str(text)) + PADDING + extra)
        widths[column] = best
    return widths


def fit(view: QTreeView) -> dict[int, int]:
    """Size the columns to their sampled contents; returns the widths given."""
    header = view.header()
    available = max(view.viewport().width(), 400)
    widths = wanted_widths(view, sample_rows(view))
    cap = int(available * COLUMN_SHARE)
    widths = {column: min(width, cap) for column, width in widths.items()}
    room = available - NAME_MIN
    total = sum(widths.values())
    if total > room > 0:  # shrink the widest first, never below their header
        scale = room / total
        widths = {column: max(int(width * scale), header.sectionSizeHint(column))
                  for column, width in widths.items()}
    for column, width in widths.items():
        header.resizeSection(column, width)
    return widths
