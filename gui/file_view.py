"""One open file: its verdict, tree, details and findings. Scanning runs in a worker."""

from __future__ import annotations

import os
import time
from collections import deque

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from airlock.core.findings import Finding, Severity
from airlock.core.provenance.hf_cache import provenance_line
from airlock.core.scan import ScanResult
from airlock.core.text import human_size, safe_path, safe_text
from airlock.core.tree import CONTENTS, INTERNALS, ROLE, Node
from airlock.gui import columns
from airlock.gui.details.pane import DetailsPane
from airlock.gui.findings_panel import FindingsPanel, VerdictBanner
from airlock.gui.search import SHOWN_MAX, ResultsModel, SearchWorker
from airlock.gui.tree_model import NODE_ROLE, NodeModelBase, NodeTreeModel
from airlock.gui.workers import ScanWorker, pool

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


class FileView(QWidget):
    scan_finished = Signal(object)  # self
    filter_changed = Signal(object)  # self: its filter text or "risky only" changed (Clear, a jump)
    search_started = Signal(object)  # the SearchWorker just handed to the pool
    search_finished = Signal(object)  # self: the current search ended (done, failed)

    def __init__(self, path: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.result: ScanResult | None = None
        self.error: str | None = None
        self.model: NodeTreeModel | None = None
        self.results: ResultsModel | None = None  # the tree while a filter is on
        self.worker: ScanWorker | None = None
        # This tab's filter: each tab keeps its own, and shows it in its filter bar.
        self.filter_text = ""
        self.risky_only = False
        self.search_worker: SearchWorker | None = None
        self.search_visited = 0
        self.search_found = 0
        self.search_done = True
        self._pending: deque[Node] = deque()  # found nodes not shown yet
        self._draining = False

        self.banner = VerdictBanner()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.info = QLabel()
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        self.filter_bar = FilterBar()
        self.filter_bar.cleared.connect(self.clear_filter)
        self.tree = QTreeView()
        self.tree.setUniformRowHeights(True)  # keeps 100k-row lists fast
        self.tree.setAlternatingRowColors(True)
        self.tree.setAllColumnsShowFocus(True)
        self.tree.setAccessibleName("Structure")
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # paths keep their start and their end
        self.tree.setEditTriggers(QTreeView.EditTrigger.NoEditTriggers)  # a viewer: results rows too
        self.tree.expanded.connect(self._rows_shown)
        self.details = DetailsPane()
        self.findings = FindingsPanel()
        self.findings.activated_finding.connect(self.reveal_finding)
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(120)
        self._fit_timer.timeout.connect(self.fit_columns)

        tree_box = QWidget()
        tree_layout = QVBoxLayout(tree_box)
        tree_layout.setContentsMargins(0, 0, 0, 0)
        tree_layout.setSpacing(2)
        tree_layout.addWidget(self.filter_bar)
        tree_layout.addWidget(self.tree, 1)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(tree_box)
        top.addWidget(self.details)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        top.setSizes([680, 580])
        main = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(top)
        main.addWidget(self.findings)
        main.setStretchFactor(0, 3)
        main.setStretchFactor(1, 1)
        main.setSizes([520, 120])
        self.splitter = main
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.banner)
        layout.addWidget(self.progress)
        layout.addWidget(self.info)
        layout.addWidget(main, 1)

    # Scanning

    @property
    def name(self) -> str:
        return os.path.basename(self.path) or self.path

    @property
    def busy(self) -> bool:
        return self.worker is not None

    @property
    def severity(self) -> Severity:
        return self.result.severity if self.result is not None else Severity.NONE

    def start_scan(self) -> None:
        self.banner.set_pending(f"Analysing {safe_path(self.name, 120)}… (nothing in it is executed)")
        self.progress.setValue(0)
        self.progress.setVisible(True)
        worker = ScanWorker(self.path)
        worker.signals.progress.connect(self._progress)
        worker.signals.returned.connect(self._scanned)
        worker.signals.errored.connect(self._failed)
        worker.signals.finished.connect(self._worker_done)
        self.worker = worker
        pool().start(worker)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self._stop_search()

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 100))
        if message:
            self.progress.setFormat(f"%p%  {safe_text(message, 80)}")

    def _scanned(self, result: ScanResult | None) -> None:
        if result is None:
            self.banner.set_pending("Cancelled.")
            return
        self.set_result(result)

    def _failed(self, message: str) -> None:
        self.error = message
        self.banner.set_failed(message)

    def _worker_done(self) -> None:
        self.worker = None
        self.progress.setVisible(False)
        self.scan_finished.emit(self)

    def set_result(self, result: ScanResult) -> None:
        self.result = result
        self.model = NodeTreeModel(result.root, self)
        self._show_model(self.model)
        self._open_on_what_matters()
        self.details.set_source(result.source)
        self.findings.set_findings(result.findings)
        self.banner.set_verdict(result.findings, result.format, result.inspected)
        size = human_size(result.size) if result.size is not None else "?"
        origin = provenance_line(result.path)  # a Hugging Face cache file: repo, revision, signature
        self.info.setText(f"{safe_path(result.path, 300)}   ·   format {result.format}   ·   {size}   ·   "
                          f"{len(result.findings)} finding(s)   ·   scanned in {result.elapsed_s:.2f} s"
                          + (f"\n{safe_text(origin, 300)}" if origin else ""))
        self.details.show_node(result.root)
        if self.filter_text or self.risky_only:  # set while the scan ran
            self._start_search()

    def _show_model(self, model: NodeModelBase | ResultsModel) -> None:
        """Show `model` in the tree (the whole tree, or a filter's results)."""
        old = self.tree.selectionModel()
        self.tree.setModel(model)
        if old is not None and old is not self.tree.selectionModel():
            old.deleteLater()
        self.tree.selectionModel().currentChanged.connect(self._node_changed)
        columns.setup(self.tree.header())
        self._fit_timer.start()

    def _open_on_what_matters(self) -> None:
        """Risky branches when there are findings, else what the file holds (core marks it), never the
        container's plumbing; small first levels open too."""
        assert self.model is not None
        root_index = self.model.index(0, 0)
        self.tree.expand(root_index)
        if self.model.root.severity >= Severity.MEDIUM:
            self._expand_risky(root_index, depth=0)
            return
        opened = self._expand_contents(root_index, depth=0)
        if not opened:
            self._expand_small(root_index)

    def _expand_contents(self, index: QModelIndex, depth: int) -> bool:
        assert self.model is not None
        opened = False
        for row in range(min(self.model.rowCount(index), 50)):
            child = self.model.index(row, 0, index)
            node = child.data(NODE_ROLE)
            if node is None or not node.child_count:
                continue
            role = node.attrs.get(ROLE)
            if role == CONTENTS:
                self.tree.expand(child)
                opened = True
            elif role != INTERNALS and depth < 2 and not node.is_lazy:
                opened = self._expand_contents(child, depth + 1) or opened
        if opened and depth > 0:
            self.tree.expand(index)
        return opened

    def _expand_small(self, root_index: QModelIndex) -> None:
        """Open the first level when it is short, so a small model shows its tensors at once."""
        assert self.model is not None
        rows = self.model.rowCount(root_index)
        for row in range(min(rows, 8)):
            child = self.model.index(row, 0, root_index)
            node = child.data(NODE_ROLE)
            if node is not None and 0 < node.child_count <= 12 and not node.is_lazy \
                    and node.attrs.get(ROLE) != INTERNALS:
                self.tree.expand(child)

    def _expand_risky(self, index: QModelIndex, depth: int) -> None:
        """Open the path to what matters: risky branches, a few levels deep."""
        assert self.model is not None
        if depth > 5:
            return
        for row in range(min(self.model.rowCount(index), 50)):
            child = self.model.index(row, 0, index)
            node = child.data(NODE_ROLE)
            if node is not None and node.severity >= Severity.MEDIUM and node.child_count:
                self.tree.expand(child)
                self._expand_risky(child, depth + 1)

    def fit_columns(self) -> None:
        if isinstance(self.tree.model(), NodeModelBase | ResultsModel):
            columns.fit(self.tree)

    def _rows_shown(self, _index: QModelIndex) -> None:
        self._fit_timer.start()  # a burst of expansions fits the columns once

    def close_result(self) -> None:
        """Release the file: the search, the models, the details, then the map (lazy nodes read from it)."""
        self.cancel()
        self._pending.clear()
        self.tree.setModel(None)
        for model in (self.model, self.results):
            if model is not None:
                model.deleteLater()
        self.model = None
        self.results = None
        self.details.release()
        self.findings.set_findings([])
        if self.result is not None:
            self.result.close()
            self.result = None

    # Selection

    def current_node(self) -> Node | None:
        index = self.tree.currentIndex()
        return index.data(NODE_ROLE) if index.isValid() else None

    def _node_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        node = current.data(NODE_ROLE) if current.isValid() else None
        if node is not None and node is not self.details.node:
            self.details.show_node(node)

    def select_node(self, node: Node, finding: Finding | None = None) -> bool:
        """Select and reveal `node` (loading pages along its path). Clears a filter that hides it."""
        if self.model is None:
            return False
        shown = self.tree.model()
        index = shown.index_for(node) if isinstance(shown, NodeModelBase | ResultsModel) else QModelIndex()
        if not index.isValid() and shown is not self.model:
            self.clear_filter()
            index = self.model.index_for(node)
        if not index.isValid():
            return False
        self.details.node = node  # the details follow the finding, not the plain node selection
        self.tree.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.tree.scrollTo(index, QTreeView.ScrollHint.PositionAtCenter)
        self.details.show_node(node, finding)
        return True

    def reveal_finding(self, finding: Finding) -> None:
        node = finding.node or (self.result.root if self.result else None)
        if node is not None:
            self.select_node(node, finding)

    def select_worst_finding(self) -> bool:
        if not self.findings.findings:
            return False
        self.findings.select_row(0)
        return True

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
        if self.result is None or self.model is None:
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
        self.results = ResultsModel(self.result.root, self)
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
