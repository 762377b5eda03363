"""Search and "show only risky" for one tab: a worker walks the core tree, a model shows what it found.

Typing never filters on the GUI thread. The main window waits for a pause in the typing (debounce),
then the tab starts a `SearchWorker` (airlock.core.search over the core tree, lazy lists included,
cancelled as soon as the text changes again). Matches arrive in batches as index paths; the tab turns
them into the tree's own nodes a few at a time (`ResultsModel.add_paths` within a time slice), so the
view fills in while the search runs and the window never waits for it.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QFont

from airlock.core.errors import Cancelled
from airlock.core.search import Search
from airlock.core.tree import Node
from airlock.gui.tree_model import HEADERS, AnyIndex, NodeModelBase
from airlock.gui.workers import WorkerBase

SHOWN_MAX = 2_000  # matches shown at most; the count goes on ("2,000 of 48,123 shown")
BATCH_SECONDS = 0.08  # a worker hands over what it found at least this often
BATCH_PATHS = 250

Path = tuple[int, ...]
_NO_INDEX = QModelIndex()


class SearchSignals(QObject):
    found = Signal(object, int, int)  # a batch of match paths, nodes visited so far, matches so far


class SearchWorker(WorkerBase):
    """Runs one Search; emits batches through `search_signals.found`; returns the final Search."""

    def __init__(self, root: Node, text: str, risky_only: bool, keep: int = SHOWN_MAX) -> None:
        super().__init__()
        self.search_signals = SearchSignals()
        self.search = Search(root, text, risky_only=risky_only, keep=keep)
        self._batch: list[Path] = []
        self._sent = time.monotonic()
        self.thread_id: int | None = None  # the thread that ran it (never the GUI's)

    def _flush(self) -> None:
        self.search_signals.found.emit(self._batch, self.search.visited, self.search.found)
        self._batch = []
        self._sent = time.monotonic()

    def _poll(self, cancelled: Callable[[], bool]) -> bool:
        """Called by the search every few hundred nodes: cancellation, and batches on time."""
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
                self._batch.append(path)
                if len(self._batch) >= BATCH_PATHS:
                    self._flush()
        except Cancelled:
            return None
        self._flush()
        return search


class ResultsModel(NodeModelBase):
    """The matches of a search and the nodes on the way to them, in tree order; nothing else.

    Rows are the tree's own nodes, so selecting one shows the same details as in the whole tree.
    Matches are shown in bold; the ancestors that only lead to them are not.
    """

    def __init__(self, root: Node, parent: Any = None) -> None:
        super().__init__(root, parent)
        self._kids: dict[int, list[Node]] = {}  # id(node) -> shown children, by index
        self._keys: dict[int, list[int]] = {}  # id(node) -> their indices, sorted
        self._matched: set[int] = set()
        self.matches: list[Node] = []  # in tree order
        self._bold = QFont()
        self._bold.setBold(True)

    # Filling

    def add_paths(self, paths: Iterable[Path]) -> int:
        """Resolve paths to the tree's nodes (building the pages they are on) and show them."""
        added = 0
        for path in paths:
            node: Node = self.root
            try:
                for i in path:
                    node = node.child_at(i)
            except IndexError:
                continue  # the tree changed under the search (cannot happen for a finished scan)
            self.add_node(node)
            added += 1
        return added

    def add_node(self, node: Node) -> None:
        chain: list[Node] = []
        walk: Node | None = node
        while walk is not None and walk is not self.root:
            chain.append(walk)
            walk = walk.parent
        if walk is not self.root or id(node) in self._matched:
            return
        shown = self.index_for(node).isValid()  # already there, as the ancestor of an earlier match
        for step in reversed(chain):
            self._insert(step)
        self._matched.add(id(node))
        self.matches.append(node)
        if len(self.matches) > 1 and self.matches[-2].index_path() > node.index_path():
            self.matches.sort(key=Node.index_path)  # out of tree order (never, from one search)
        if shown:
            index = self.index_for(node)
            self.dataChanged.emit(index, index.siblingAtColumn(len(HEADERS) - 1), [Qt.ItemDataRole.FontRole])

    def _insert(self, node: Node) -> None:
        up = node.parent
        assert up is not None
        keys = self._keys.setdefault(id(up), [])
        kids = self._kids.setdefault(id(up), [])
        row = bisect.bisect_left(keys, node.index)
        if row < len(keys) and keys[row] == node.index:
            return
        self.beginInsertRows(self.index_for(up), row, row)
        keys.insert(row, node.index)
        kids.insert(row, node)
        self.endInsertRows()

    def is_match(self, node: Node) -> bool:
        return id(node) in self._matched

    # Structure

    def _row(self, node: Node) -> int:
        if node is self.root or node.parent is None:
            return 0
        keys = self._keys.get(id(node.parent), [])
        row = bisect.bisect_left(keys, node.index)
        return row if row < len(keys) and keys[row] == node.index else -1

    def index_for(self, node: Node) -> QModelIndex:
        """The row of `node` if the results show it, else an invalid index."""
        if node is self.root:
            return self.createIndex(0, 0, self.root)
        row = self._row(node)
        if row < 0 or node.parent is None or self._kids[id(node.parent)][row] is not node:
            return QModelIndex()
        return self.createIndex(row, 0, node)

    def index(self, row: int, column: int, parent: AnyIndex = _NO_INDEX) -> QModelIndex:
        if column < 0 or column >= len(HEADERS) or row < 0:
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, self.root) if row == 0 else QModelIndex()
        node = self.node(parent)
        kids = self._kids.get(id(node), []) if node is not None and parent.column() == 0 else []
        return self.createIndex(row, column, kids[row]) if row < len(kids) else QModelIndex()

    def parent(self, index: AnyIndex = _NO_INDEX) -> QModelIndex:  # type: ignore[override]
        node = self.node(index)
        if node is None or node is self.root or node.parent is None:
            return QModelIndex()
        up = node.parent
        return self.createIndex(self._row(up), 0, up)

    def rowCount(self, parent: AnyIndex = _NO_INDEX) -> int:
        if not parent.isValid():
            return 1
        if parent.column() != 0:
            return 0
        node = self.node(parent)
        return len(self._kids.get(id(node), ())) if node is not None else 0

    def hasChildren(self, parent: AnyIndex = _NO_INDEX) -> bool:
        return self.rowCount(parent) > 0

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.FontRole:
            node = self.node(index)
            return self._bold if node is not None and id(node) in self._matched else None
        return super().data(index, role)
