"""The core Node tree as a Qt item model, loaded page by page (search results: airlock.gui.search).

The model wraps core `Node`s and never parses: a lazy node (150,000 vocabulary strings, a million
opcodes) builds only the pages the view asks for through `canFetchMore` / `fetchMore`.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt

from airlock.core.findings import Severity
from airlock.core.text import human_size, safe_text
from airlock.core.tree import Node
from airlock.gui import theme

COL_NAME, COL_KIND, COL_TYPE, COL_SHAPE, COL_SIZE, COL_OFFSET, COL_RISK = range(7)
HEADERS = ("Name", "Kind", "Type / DType", "Shape", "Size", "Offset", "Risk")

NODE_ROLE = Qt.ItemDataRole.UserRole + 1
SEVERITY_ROLE = Qt.ItemDataRole.UserRole + 2

BATCH = 1000  # rows added per fetchMore; eager lists up to this size appear at once

AnyIndex = QModelIndex | QPersistentModelIndex
_NO_INDEX = QModelIndex()  # default argument of the Qt model API

# Attributes that say what a node is, in the order the Type column prefers them.
_TYPE_KEYS = ("dtype", "callable", "opcode", "op_type", "type", "value_type", "class_name", "format",
              "policy")


def plain_tooltip(text: str) -> str:
    """Qt guesses whether a tooltip is rich text; escape it and make it rich so nothing is interpreted."""
    return f"<p style='white-space:pre-wrap'>{html.escape(text)}</p>"


def shape_text(shape: Any) -> str:
    if isinstance(shape, tuple | list):
        dims = (str(int(d)) if isinstance(d, int) else safe_text(str(d), 20) for d in shape)
        return " × ".join(dims) or "scalar"
    return safe_text(str(shape), 60)


def type_text(node: Node) -> str:
    for key in _TYPE_KEYS:
        value = node.attrs.get(key)
        if value not in (None, ""):
            return safe_text(str(value), 120)
    return ""


def size_text(node: Node) -> str:
    size = node.attrs.get("size")
    if not isinstance(size, int):
        size = node.length
    return human_size(size) if isinstance(size, int) and size >= 0 else ""


def offset_text(node: Node) -> str:
    if node.offset is None:
        return ""
    return f"{node.offset:,}" + ("*" if node.member else "")  # *: relative to a container member


def risk_text(node: Node, was: dict[int, Severity] | None = None) -> str:
    """The Risk cell: the effective severity, and the one a policy changed it from ("low (was medium)")."""
    text = theme.severity_text(node.severity)
    before = (was or {}).get(id(node))
    if before is None:
        return text
    return f"{text or 'none'} (was {before.label})"


def cell_text(node: Node, column: int) -> str:
    if column == COL_NAME:
        return safe_text(node.label, 240)
    if column == COL_KIND:
        return node.kind
    if column == COL_TYPE:
        return type_text(node)
    if column == COL_SHAPE:
        return shape_text(node.attrs["shape"]) if "shape" in node.attrs else ""
    if column == COL_SIZE:
        return size_text(node)
    if column == COL_OFFSET:
        return offset_text(node)
    if column == COL_RISK:
        return theme.severity_text(node.severity)
    return ""


def full_cell_text(node: Node, column: int) -> str:
    """A cell's value as long as a tooltip can usefully show it (the cell itself may be elided)."""
    if column == COL_NAME:
        return safe_text(node.label, 4000)
    if column == COL_TYPE:
        for key in _TYPE_KEYS:
            value = node.attrs.get(key)
            if value not in (None, ""):
                return safe_text(str(value), 4000)
        return ""
    if column == COL_SHAPE and "shape" in node.attrs:
        shape = node.attrs["shape"]
        if isinstance(shape, tuple | list):
            return " × ".join(safe_text(str(d), 40) for d in shape) or "scalar"
        return safe_text(str(shape), 4000)
    if column == COL_SIZE:
        size = node.attrs.get("size", node.length)
        text = size_text(node)
        return f"{text} ({size:,} bytes)" if isinstance(size, int) and size >= 1024 else text
    if column == COL_OFFSET and node.offset is not None:
        where = f" in member {safe_text(node.member, 300)}" if node.member else ""
        return f"offset {node.offset:,} (0x{node.offset:x}){where}"
    return cell_text(node, column)


def node_tooltip(node: Node, column: int = COL_NAME) -> str:
    lines = []
    if column != COL_NAME:
        value = full_cell_text(node, column)
        if value:
            lines.append(value)
    lines.append(safe_text(node.path(), 4000) if column == COL_NAME else safe_text(node.path(), 400))
    if node.member:
        lines.append(f"* offsets are relative to container member {safe_text(node.member, 200)}")
    role = node.attrs.get("trigger_path")
    if isinstance(role, str):
        lines.append(f"on a trigger path: {safe_text(role, 80)}")
    for finding in node.findings[:8]:
        lines.append(f"{finding.severity.label.upper()} {finding.rule}: {safe_text(finding.message, 300)}")
    return plain_tooltip("\n".join(lines))


class NodeModelBase(QAbstractItemModel):
    """What every view of a core tree shows for a node: cells, icons, colours, tooltips.

    Subclasses say which nodes are rows (`index`, `parent`, `rowCount`); the file node is the single
    top-level row. Index pointers are core `Node`s, kept alive by the tree (or by the subclass).
    """

    def __init__(self, root: Node, parent: Any = None, was: dict[int, Severity] | None = None) -> None:
        super().__init__(parent)
        self.root = root
        self.was = was or {}  # id(Node) → its severity before a policy changed it (policy_marks)

    def node(self, index: AnyIndex) -> Node | None:
        """The node at index; the invisible root's "node" is None (its one child is the file)."""
        if not index.isValid():
            return None
        return index.internalPointer()  # type: ignore[no-any-return]

    def columnCount(self, parent: AnyIndex = _NO_INDEX) -> int:
        return len(HEADERS)

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(HEADERS):
            return HEADERS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        node = self.node(index)
        if node is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return risk_text(node, self.was) if column == COL_RISK else cell_text(node, column)
        if role == NODE_ROLE:
            return node
        if role == SEVERITY_ROLE:
            return int(node.severity)
        if role == Qt.ItemDataRole.DecorationRole:
            if column == COL_RISK or (column == COL_NAME and node.severity >= Severity.LOW):
                return theme.severity_icon(node.severity) if node.severity > Severity.NONE else None
            return None
        if role == Qt.ItemDataRole.ForegroundRole and column == COL_RISK:
            return theme.text_color(node.severity)
        if role == Qt.ItemDataRole.BackgroundRole:
            # Operators on an ONNX trigger path (core/formats/onnx_triggers.py) are tinted like the finding.
            on_path = "trigger_path" in node.attrs
            return theme.tint(max(node.severity, Severity.HIGH) if on_path else node.severity)
        if role == Qt.ItemDataRole.ToolTipRole:
            return node_tooltip(node, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (COL_SIZE, COL_OFFSET):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            text = cell_text(node, column)
            return f"{text}, risk {node.severity.label}" if column == COL_NAME else text
        return None

    def index_for(self, node: Node) -> QModelIndex:
        raise NotImplementedError


class NodeTreeModel(NodeModelBase):
    """One file's whole tree, loaded page by page."""

    def __init__(self, root: Node, parent: Any = None, was: dict[int, Severity] | None = None) -> None:
        super().__init__(root, parent, was)
        self._loaded: dict[int, int] = {}  # id(node) -> rows exposed so far

    # Paging

    def loaded(self, node: Node) -> int:
        count = self._loaded.get(id(node))
        if count is None:
            count = min(node.child_count, BATCH)
            self._loaded[id(node)] = count
        return count

    def _grow(self, node: Node, parent: QModelIndex, new_count: int) -> None:
        old = self.loaded(node)
        new_count = min(new_count, node.child_count)
        if new_count <= old:
            return
        self.beginInsertRows(parent, old, new_count - 1)
        self._loaded[id(node)] = new_count
        self.endInsertRows()

    def canFetchMore(self, parent: AnyIndex) -> bool:
        node = self.node(parent)
        return node is not None and self.loaded(node) < node.child_count

    def fetchMore(self, parent: AnyIndex) -> None:
        node = self.node(parent)
        if node is not None:
            plain = parent if isinstance(parent, QModelIndex) else \
                self.index(parent.row(), parent.column(), parent.parent())
            self._grow(node, plain, self.loaded(node) + BATCH)

    # Structure

    def index(self, row: int, column: int, parent: AnyIndex = _NO_INDEX) -> QModelIndex:
        if column < 0 or column >= len(HEADERS) or row < 0:
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, self.root) if row == 0 else QModelIndex()
        node = self.node(parent)
        if node is None or parent.column() != 0 or row >= self.loaded(node):
            return QModelIndex()
        return self.createIndex(row, column, node.child_at(row))

    def parent(self, index: AnyIndex = _NO_INDEX) -> QModelIndex:  # type: ignore[override]
        node = self.node(index)
        if node is None or node is self.root:
            return QModelIndex()
        up = node.parent
        if up is None:
            return QModelIndex()
        if up is self.root:
            return self.createIndex(0, 0, self.root)
        return self.createIndex(up.index, 0, up)

    def rowCount(self, parent: AnyIndex = _NO_INDEX) -> int:
        if not parent.isValid():
            return 1
        if parent.column() != 0:
            return 0
        node = self.node(parent)
        return 0 if node is None else self.loaded(node)

    def hasChildren(self, parent: AnyIndex = _NO_INDEX) -> bool:
        if not parent.isValid():
            return True
        if parent.column() != 0:
            return False
        node = self.node(parent)
        return node is not None and node.child_count > 0

    # Finding a node again

    def index_for(self, node: Node) -> QModelIndex:
        """The index of `node`, loading pages along its path as needed (for jumps from findings)."""
        chain: list[Node] = []
        walk: Node | None = node
        while walk is not None and walk is not self.root:
            chain.append(walk)
            walk = walk.parent
        if walk is not self.root:
            return QModelIndex()
        index = self.createIndex(0, 0, self.root)
        for step in reversed(chain):
            parent_node = self.node(index)
            assert parent_node is not None
            if step.index >= self.loaded(parent_node):
                self._grow(parent_node, index, step.index + 1)
            index = self.index(step.index, 0, index)
            if not index.isValid():
                return QModelIndex()
        return index
