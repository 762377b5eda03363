"""One open file: its verdict, tree, details and findings. Scanning runs in a worker."""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QHeaderView, QLabel, QProgressBar, QSplitter, QTreeView, QVBoxLayout, QWidget

from airlock.core.findings import Finding, Severity
from airlock.core.provenance.hf_cache import provenance_line
from airlock.core.scan import ScanResult
from airlock.core.text import human_size, safe_path, safe_text
from airlock.core.tree import CONTENTS, INTERNALS, ROLE, Node
from airlock.gui import columns, graph_view, node_menu
from airlock.gui.details.pane import DetailsPane
from airlock.gui.findings_panel import FindingsPanel, VerdictBanner
from airlock.gui.graph_view import GraphView
from airlock.gui.on_disk import StaleBar, Stamp, describe_change, stamp_of
from airlock.gui.policy_marks import Marks, SeverityWas, counted
from airlock.gui.search import ResultsModel
from airlock.gui.tab_filter import TabFilter
from airlock.gui.tree_model import COL_NAME, NODE_ROLE, NodeModelBase, NodeTreeModel
from airlock.gui.workers import ScanWorker, pool

RESIZE_REFIT_PX = 40  # the tree's width change that fits the columns again


class _Tree(QTreeView):
    """The structure tree; says when its size changed (a signal, not an event filter: a Python filter on
    a child widget is called during teardown after its owner is gone, which crashed the app at exit)."""

    resized = Signal()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.resized.emit()


class FileView(TabFilter, QWidget):
    scan_finished = Signal(object)  # self
    filter_changed = Signal(object)  # self: its filter text or "risky only" changed (Clear, a jump)
    search_started = Signal(object)  # the SearchWorker just handed to the pool
    search_finished = Signal(object)  # self: the current search ended (done, failed)
    reload_requested = Signal(object)  # self: its Reload button (the window reloads the tab)

    def __init__(self, path: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.result: ScanResult | None = None
        self.error: str | None = None
        self.model: NodeTreeModel | None = None
        self.worker: ScanWorker | None = None
        self.stamp: Stamp = None  # size and mtime of the file when it was read
        self.stale: str | None = None  # what changed on disk since, when something did
        self._init_filter()  # this tab's own filter (TabFilter): text, "risky only", its bar and worker
        self.marks: Marks = {}  # what the policy file changed in the findings
        self.severity_was: SeverityWas = {}  # the tree's nodes whose Risk the policy changed, and from what
        self.policy_note = ""
        self.entry: dict[str, Any] | None = None  # the last scan's report entry (a folder tab shows it)
        self.known_sha256: tuple[str, int] | None = None  # hashed during the scan for the policy
        self.graph_view: GraphView | None = None  # a Graph tab beside the tree, for files with a graph

        self.banner = VerdictBanner()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.info = QLabel()
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        self.stale_bar = StaleBar()
        self.stale_bar.reload_clicked.connect(lambda: self.reload_requested.emit(self))
        self.tree = _Tree()
        self.tree.setUniformRowHeights(True)  # keeps 100k-row lists fast
        self.tree.setAlternatingRowColors(True)
        self.tree.setAllColumnsShowFocus(True)
        self.tree.setAccessibleName("Structure")
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # paths keep their start and their end
        self.tree.setItemDelegateForColumn(COL_NAME, columns.NameDelegate(self.tree))  # tensors: their end
        self.tree.setEditTriggers(QTreeView.EditTrigger.NoEditTriggers)  # a viewer: results rows too
        self.tree.expanded.connect(self._rows_shown)
        node_menu.install(self)
        self.details = DetailsPane()
        self.details.values.view = self  # the .npy export never writes over this file
        self.findings = FindingsPanel()
        self.findings.activated_finding.connect(self.reveal_finding)
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(120)
        self._fit_timer.timeout.connect(self.fit_columns)
        # The columns are fitted to the room the tree has; when that changes (the window is resized, the
        # splitter settles after the first fit), they are fitted again, unless the user sized one.
        self._fitting = False
        self._user_sized = False
        self._fitted_width = 0
        self.tree.header().sectionResized.connect(self._section_resized)
        self.tree.resized.connect(self._tree_resized)

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
        top.setSizes([760, 500])  # the tree gets the room: names and shapes are what people read
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
        layout.addWidget(self.stale_bar)
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
        self.stamp = stamp_of(self.path)  # taken before reading: a change during the scan shows later
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
        self.entry = self.worker.entry if self.worker is not None and result is not None else None
        if result is None:
            self.banner.set_pending("Cancelled.")
            return
        if self.worker is not None:
            self.policy_note = self.worker.policy_note
            self.known_sha256 = self.worker.sha256
        if self.worker is not None:
            self.severity_was = self.worker.severity_was
        self.set_result(result, self.worker.marks if self.worker is not None else None)

    def _failed(self, message: str) -> None:
        self.error = message
        self.banner.set_failed(message)

    def _worker_done(self) -> None:
        self.worker = None
        self.progress.setVisible(False)
        self.scan_finished.emit(self)

    def set_result(self, result: ScanResult, marks: Marks | None = None) -> None:
        self.result = result
        self.marks = marks or {}
        self.model = NodeTreeModel(result.root, self, self.severity_was)
        self._show_model(self.model)
        self._open_on_what_matters()
        self.details.set_source(result.source)
        self.details.marks = self.marks
        self.details.file_hash.set_file(self.path, result.size, self.known_sha256)
        self.findings.set_findings(result.findings, self.marks)
        self.banner.set_verdict(counted(result.findings, self.marks), result.format, result.inspected)
        hidden = len(result.findings) - len(counted(result.findings, self.marks))
        if hidden:  # a policy never hides silently: the verdict says what it left out
            note = f"{hidden} finding(s) suppressed by the policy (listed below, struck through)"
            self.banner.label.setText(f"{self.banner.label.text()} · {note}")
        size = human_size(result.size) if result.size is not None else "?"
        origin = provenance_line(result.path)  # a Hugging Face cache file: repo, revision, signature
        self.info.setText(f"{safe_path(result.path, 300)}   ·   format {result.format}   ·   {size}   ·   "
                          f"{len(result.findings)} finding(s)   ·   scanned in {result.elapsed_s:.2f} s"
                          + (f"\n{safe_text(origin, 300)}" if origin else "")
                          + (f"\n{self.policy_note}" if self.policy_note else ""))
        self.details.show_node(result.root)
        graph_view.attach(self)
        if self.filter_text or self.risky_only:  # set while the scan ran
            self._start_search()

    def _show_model(self, model: NodeModelBase | ResultsModel) -> None:
        """Show `model` in the tree (the whole tree, or a filter's results)."""
        old = self.tree.selectionModel()
        self._fitting = True  # a new model resets the header's sections: not the user's doing
        try:
            self.tree.setModel(model)
            columns.setup(self.tree.header())
        finally:
            self._fitting = False
        if old is not None and old is not self.tree.selectionModel():
            old.deleteLater()
        self.tree.selectionModel().currentChanged.connect(self._node_changed)
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

    def columns_pending(self) -> bool:
        """A fit of the columns is scheduled (rows were just shown or the tree resized)."""
        return self._fit_timer.isActive()

    def fit_columns(self) -> None:
        if isinstance(self.tree.model(), NodeModelBase | ResultsModel) and not self._user_sized:
            self._fitting = True
            try:
                columns.fit(self.tree)
            finally:
                self._fitting = False
            self._fitted_width = self.tree.viewport().width()

    def _section_resized(self, column: int, _old: int, _new: int) -> None:
        # Only fit() sizes the interactive columns in code (Name stretches by itself): any other change
        # is the user's drag on the header, and the user's widths win from now on.
        interactive = self.tree.header().sectionResizeMode(column) == QHeaderView.ResizeMode.Interactive
        if interactive and not self._fitting:
            self._user_sized = True

    def _tree_resized(self) -> None:
        if not self._user_sized and abs(self.tree.viewport().width() - self._fitted_width) > RESIZE_REFIT_PX:
            self._fit_timer.start()

    def _rows_shown(self, _index: QModelIndex) -> None:
        self._fit_timer.start()  # a burst of expansions fits the columns once

    def close_result(self) -> None:
        """Release the file: the search, the models, the details, then the map (lazy nodes read from it)."""
        self.cancel()
        self.details.file_hash.cancel()
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

    # The file on disk

    def check_on_disk(self) -> bool:
        """Compare the file with what was read; mark the tab stale if it changed. True when stale."""
        if self.stale is None and self.result is not None:
            change = describe_change(self.stamp, stamp_of(self.path))
            if change is not None:
                self.mark_stale(change)
        return self.stale is not None

    def mark_stale(self, change: str) -> None:
        """Keep what was read on screen, stop reading the file: a mapped file that shrank is not safe to
        touch (lazy lists, hex, statistics all read it), and a changed one no longer matches the tree."""
        self.stale = change
        self.cancel()
        self.details.set_source(None)
        self.splitter.setEnabled(False)
        self.stale_bar.show_change(self.path, change)

    def reload(self) -> None:
        """Analyse the file again, in this tab (its filter kept)."""
        self.close_result()
        self.stale = None
        self.stale_bar.setVisible(False)
        self.splitter.setEnabled(True)
        self.error = None
        self.entry = None
        self.start_scan()

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
        if self.model is None or self.stale is not None:
            return False  # a stale tab reads nothing more from its file
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
