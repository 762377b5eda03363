"""Search and "show only risky" for one tab: a worker walks the core tree, a model shows what it found.

Typing never filters on the GUI thread. The main window waits for a pause in the typing (debounce),
then the tab starts a `SearchWorker` (airlock.core.search over the core tree, lazy lists included,
cancelled as soon as the text changes again). Matches arrive in batches, already the tree's own nodes;
the tab adds them as rows a few at a time (`ResultsModel.add_node` within a time slice), so the view
fills in while the search runs and the window never waits for it.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel

from airlock.core.errors import Cancelled
from airlock.core.findings import Severity
from airlock.core.search import Search
from airlock.core.tree import Node
from airlock.gui import theme
from airlock.gui.tree_model import (
    COL_NAME,
    COL_OFFSET,
    COL_RISK,
    COL_SIZE,
    HEADERS,
    NODE_ROLE,
    SEVERITY_ROLE,
    cell_text,
    full_cell_text,
    node_tooltip,
    plain_tooltip,
    risk_text,
)
from airlock.gui.workers import WorkerBase

SHOWN_MAX = 1_000  # matches shown at most; the count goes on ("the first 1,000 of 48,123")
BATCH_SECONDS = 0.15  # a worker hands over what it found at least this often
BATCH_PATHS = 250

Path = tuple[int, ...]


class SearchSignals(QObject):
    found = Signal(object, int, int)  # a batch of matched nodes, nodes visited so far, matches so far


def resolve(root: Node, path: Path) -> Node | None:
    """The tree's own node at `path` (building, once, the pages on the way)."""
    node = root
    try:
        for i in path:
            node = node.child_at(i)
    except IndexError:
        return None  # the tree changed under the search (cannot happen for a finished scan)
    return node


class SearchWorker(WorkerBase):
    """Runs one Search and resolves its matches to the tree's nodes (pages are built under the tree's
    lock, so the view gets the very nodes it would build); emits batches through `search_signals.found`;
    returns the finished Search, or None when cancelled."""

    def __init__(self, root: Node, text: str, risky_only: bool, keep: int = SHOWN_MAX) -> None:
        super().__init__()
        self.search_signals = SearchSignals()
        self.search = Search(root, text, risky_only=risky_only, keep=keep)
        self._batch: list[Node] = []
        self._sent = time.monotonic()
        self.thread_id: int | None = None  # the thread that ran it (never the GUI's)
        self.complete = False  # the search walked the whole tree (not cancelled)
        self.visited = 0

    def _flush(self) -> None:
        self.search_signals.found.emit(self._batch, self.search.visited, self.search.found)
        self._batch = []
        self._sent = time.monotonic()

    def _poll(self, cancelled: Callable[[], bool]) -> bool:
        """Called by the search every few hundred nodes: cancellation, batches on time, and a moment for
        the GUI thread: sleep(0) lets go of the GIL at once, where Python would hold it up to 5 ms more."""
        time.sleep(0)
        if cancelled():
            return True
        if time.monotonic() - self._sent >= BATCH_SECONDS:
            self._flush()
        return False

    def work(self, progress: Callable[[float, str], None], cancelled: Callable[[], bool]) -> Any:
        self.thread_id = threading.get_ident()
        search = self.search
        search.cancelled = lambda: self._poll(cancelled)
        try:
            for path in search.run():
                node = resolve(search.root, path)
                if node is not None:
                    self._batch.append(node)
                if len(self._batch) >= BATCH_PATHS:
                    self._flush()
        except Cancelled:
            return None
        finally:
            self.visited = search.visited
        self._flush()
        self.complete = search.complete
        return search

    def release(self) -> None:
        super().release()
        self.search_signals.deleteLater()
        self.search = Search(Node("file", "(released)"), self.search.text)  # the tree is not kept through it
        self._batch = []


class ResultsModel(QStandardItemModel):
    """The matches of a search and the nodes on the way to them, in tree order; nothing else.

    Its rows hold the tree's own nodes (NODE_ROLE), so selecting one shows the same details as in the
    whole tree. It is a Qt-side item model on purpose: the view lays out thousands of result rows
    again after each batch, and with a Python model every row would call back into Python each time.
    Matches are bold; the ancestors that only lead to them are not.
    """

    def __init__(self, root: Node, parent: Any = None, was: dict[int, Severity] | None = None) -> None:
        super().__init__(parent)
        self.root = root
        self.was = was or {}  # id(Node) → its severity before a policy changed it (policy_marks)
        self.setHorizontalHeaderLabels(list(HEADERS))
        self._items: dict[int, QStandardItem] = {}  # id(node) -> its row's first item
        self._keys: dict[int, list[int]] = {}  # id(node) -> indices of its shown children, sorted
        self._matched: set[int] = set()
        self.matches: list[Node] = []  # in tree order
        self._bold = QFont()
        self._bold.setBold(True)
        self._append(self.invisibleRootItem(), 0, root)

    # Filling

    def add_paths(self, paths: Iterable[Path]) -> int:
        """Resolve paths to the tree's nodes and show them."""
        nodes = [node for path in paths if (node := resolve(self.root, path)) is not None]
        for node in nodes:
            self.add_node(node)
        return len(nodes)

    def add_node(self, node: Node) -> None:
        chain: list[Node] = []
        walk: Node | None = node
        while walk is not None and walk is not self.root:
            chain.append(walk)
            walk = walk.parent
        if walk is not self.root or id(node) in self._matched:
            return
        shown = id(node) in self._items  # already there, as the ancestor of an earlier match
        self._matched.add(id(node))
        for step in reversed(chain):
            if id(step) not in self._items:
                self._insert(step)
        self.matches.append(node)
        if len(self.matches) > 1 and self.matches[-2].index_path() > node.index_path():
            self.matches.sort(key=Node.index_path)  # out of tree order (never, from one search)
        if shown:
            item = self._items[id(node)]
            parent_item = item.parent() or self.invisibleRootItem()
            for column in range(len(HEADERS)):
                cell = parent_item.child(item.row(), column)
                if cell is not None:
                    cell.setFont(self._bold)

    def _insert(self, node: Node) -> None:
        up = node.parent
        assert up is not None
        keys = self._keys.setdefault(id(up), [])
        row = bisect.bisect_left(keys, node.index)
        keys.insert(row, node.index)
        self._append(self._items[id(up)], row, node)

    def _append(self, parent_item: QStandardItem, row: int, node: Node) -> None:
        """One row of cells, with only the roles that differ from the defaults (each call costs)."""
        severity = node.severity
        tint = theme.tint(severity)
        bold = id(node) in self._matched
        cells = []
        for column in range(len(HEADERS)):
            text = risk_text(node, self.was) if column == COL_RISK else cell_text(node, column)
            cell = QStandardItem(text)
            cell.setData(node, NODE_ROLE)
            if column == COL_NAME:
                cell.setData(int(severity), SEVERITY_ROLE)
                cell.setToolTip(node_tooltip(node))
            elif len(text) > 12:  # may be elided: the tooltip has it whole
                cell.setToolTip(plain_tooltip(full_cell_text(node, column)))
            if tint is not None:
                cell.setBackground(tint)
            iconic = column == COL_RISK or (column == COL_NAME and severity >= Severity.LOW)
            if severity > Severity.NONE and iconic:
                cell.setIcon(theme.severity_icon(severity))
            if column == COL_RISK and severity > Severity.NONE:
                cell.setForeground(theme.text_color(severity))
            if column in (COL_SIZE, COL_OFFSET) and text:
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if bold:
                cell.setFont(self._bold)
            cells.append(cell)
        self._items[id(node)] = cells[0]
        parent_item.insertRow(row, cells)

    def is_match(self, node: Node) -> bool:
        return id(node) in self._matched

    def index_for(self, node: Node) -> QModelIndex:
        """The row of `node` if the results show it, else an invalid index."""
        item = self._items.get(id(node))
        return item.index() if item is not None else QModelIndex()
