"""A tab's own filter (search text and "show only risky"): its state, its search worker, its bar.

A mixin of FileView (airlock.gui.file_view): each tab keeps its own filter and says it is on in its
filter bar ("Filter “chat” · showing 12 of 150,321 items searched", Clear). The search runs in a
SearchWorker (airlock.gui.search); found nodes become rows in paced slices of GUI time.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from airlock.core.text import safe_text
from airlock.core.tree import Node
from airlock.gui.search import SHOWN_MAX, ResultsModel, SearchWorker
from airlock.gui.workers import pool

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance
    from PySide6.QtWidgets import QTreeView

    from airlock.core.findings import Severity
    from airlock.core.scan import ScanResult
    from airlock.gui.tree_model import NodeModelBase, NodeTreeModel

# Rows are added in slices of GUI time, then the event loop runs: the view lays out every shown row again
# after each slice (a cost that grows with the rows), so slices are few and a little apart.
ROWS_SLICE_S = 0.015
ROWS_PAUSE_MS = 60


class FilterBar(QWidget):
    """Says that a filter is on, what it keeps and how much was searched; Clear turns it off."""

    cleared = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("filter_bar")
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.clear_button = QPushButton("Clear filter")
        self.clear_button.setFlat(True)
        self.clear_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.clear_button.clicked.connect(self.cleared)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.clear_button)
        self.setStyleSheet("QWidget#filter_bar { background: palette(alternate-base); border-radius: 4px; }")
        self.setVisible(False)


class TabFilter:
    """The filter half of a FileView (which provides the tree, the models and the signals used here)."""

    tree: QTreeView
    stale: str | None
    model: NodeTreeModel | None
    result: ScanResult | None
    severity_was: dict[int, Severity]
    filter_bar: FilterBar
    filter_changed: SignalInstance
    search_started: SignalInstance
    search_finished: SignalInstance
    _fit_timer: QTimer

    def _init_filter(self) -> None:
        self.results: ResultsModel | None = None  # the tree while a filter is on
        self.filter_text = ""
        self.risky_only = False
        self.search_worker: SearchWorker | None = None
        self.search_visited = 0
        self.search_found = 0
        self.search_done = True
        self._pending: deque[Node] = deque()  # found nodes not shown yet
        self._draining = False
        self.filter_bar = FilterBar()
        self.filter_bar.cleared.connect(self.clear_filter)

    # Provided by FileView
    def _show_model(self, model: NodeModelBase | ResultsModel) -> None:
        raise NotImplementedError

    def _open_on_what_matters(self) -> None:
        raise NotImplementedError

    def current_node(self) -> Node | None:
        raise NotImplementedError

    def select_node(self, node: Node) -> bool:
        raise NotImplementedError

    # Filter: search text and "show only risky", this tab's own

    @property
    def filtered(self) -> bool:
        return bool(self.filter_text or self.risky_only)

    def set_filter(self, text: str, risky_only: bool | None = None) -> None:
        """Filter this tab's tree. The search runs in a worker; a newer filter cancels an older one."""
        text = text.strip()
        risky = self.risky_only if risky_only is None else risky_only
        unchanged = text == self.filter_text and risky == self.risky_only
        if unchanged and (self.results is not None or not self.filtered):
            return
        self.filter_text, self.risky_only = text, risky
        self._start_search()

    def set_risky_only(self, on: bool) -> None:
        self.set_filter(self.filter_text, on)

    def clear_filter(self) -> None:
        if not self.filtered:
            return
        self.filter_text, self.risky_only = "", False
        self._start_search()
        self.filter_changed.emit(self)

    def _stop_search(self) -> None:
        if self.search_worker is not None:
            self.search_worker.cancel()
            self.search_worker = None
        self._pending.clear()

    def _start_search(self) -> None:
        self._stop_search()
        if self.result is None or self.model is None or self.stale is not None:
            self._update_filter_bar()
            return
        if not self.filtered:
            keep = self.current_node()
            old = self.results
            self.results = None
            self._show_model(self.model)
            self._open_on_what_matters()
            if keep is not None:
                self.select_node(keep)  # the node looked at in the results, now in its context
            if old is not None:
                old.deleteLater()
            self._update_filter_bar()
            return
        old = self.results
        self.results = ResultsModel(self.result.root, self, self.severity_was)
        self.results.rowsInserted.connect(self._results_inserted)
        self._show_model(self.results)
        if old is not None:
            old.deleteLater()
        self.search_visited = self.search_found = 0
        self.search_done = False
        worker = SearchWorker(self.result.root, self.filter_text, self.risky_only, keep=SHOWN_MAX)
        worker.search_signals.found.connect(
            lambda nodes, visited, found, w=worker: self._found(w, nodes, visited, found))
        worker.signals.returned.connect(lambda search, w=worker: self._search_returned(w, search))
        worker.signals.errored.connect(lambda message, w=worker: self._search_failed(w, message))
        self.search_worker = worker
        pool().start(worker)
        self.search_started.emit(worker)
        self._update_filter_bar()

    def _found(self, worker: SearchWorker, nodes: list[Node], visited: int, found: int) -> None:
        if worker is not self.search_worker:
            return  # a stale search: its results never reach the view
        self.search_visited, self.search_found = visited, found
        self._pending.extend(nodes)
        self._drain()
        self._update_filter_bar()

    def _drain(self) -> None:
        """Turn found nodes into rows for a few milliseconds, then let the event loop run."""
        results = self.results
        if results is None:
            self._pending.clear()
            return
        if self._draining:
            return  # a slice is due soon; it takes these too
        deadline = time.monotonic() + ROWS_SLICE_S
        while self._pending and time.monotonic() < deadline:
            for _ in range(min(8, len(self._pending))):
                results.add_node(self._pending.popleft())
        if self._pending:
            self._draining = True
            QTimer.singleShot(ROWS_PAUSE_MS, self._drain_later)
        self._update_filter_bar()

    def _drain_later(self) -> None:
        self._draining = False
        self._drain()

    def _results_inserted(self, parent: QModelIndex, _first: int, _last: int) -> None:
        if parent.isValid() and not self.tree.isExpanded(parent):
            self.tree.expand(parent)  # results are shown open: they are what was asked for
        if not self._fit_timer.isActive() and self.shown_matches < 200:
            self._fit_timer.start()  # the first results decide the columns; later ones rarely change them

    def _search_returned(self, worker: SearchWorker, search: object) -> None:
        if worker is not self.search_worker:
            return
        self.search_worker = None
        if search is not None:
            self.search_done = True
            self.search_visited = getattr(search, "visited", self.search_visited)
            self.search_found = getattr(search, "found", self.search_found)
        self._update_filter_bar()
        self._fit_timer.start()
        self.search_finished.emit(self)

    def _search_failed(self, worker: SearchWorker, message: str) -> None:
        if worker is self.search_worker:
            self.search_worker = None
            self.search_done = True
            self.filter_bar.label.setText(f"The search failed: {safe_text(message, 200)}")
            self.search_finished.emit(self)

    @property
    def shown_matches(self) -> int:
        return len(self.results.matches) if self.results is not None else 0

    def filter_summary(self) -> str:
        """What the filter bar says: "Filter “chat” · showing 12 of 150,321 items searched"."""
        what = []
        if self.filter_text:
            what.append(f"“{safe_text(self.filter_text, 60)}”")
        if self.risky_only:
            what.append("risky only")
        found, shown, visited = self.search_found, self.shown_matches, self.search_visited
        if not self.search_done:
            count = f"{shown:,} so far, {visited:,} items searched — searching…"
        elif found > shown:
            count = f"the first {shown:,} of {found:,} matches ({visited:,} items searched); refine it"
        else:
            count = f"{shown:,} of {visited:,} items searched"
        return f"Filter {' + '.join(what)} · showing {count}"

    def _update_filter_bar(self) -> None:
        self.filter_bar.setVisible(self.filtered and self.result is not None)
        if self.filtered:
            self.filter_bar.label.setText(self.filter_summary())

    def find_next(self) -> Node | None:
        """The next match after the selected node (wrapping), among the results shown so far."""
        if self.results is None or not self.results.matches:
            return None
        matches = self.results.matches
        current = self.current_node()
        start = 0
        if current is not None:
            here = current.index_path()
            start = next((i for i, node in enumerate(matches) if node.index_path() > here), 0)
        node = matches[start]
        self.select_node(node)
        return node
