"""One open file: its verdict, tree, details and findings. Scanning runs in a worker."""

from __future__ import annotations

import os

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import QHeaderView, QLabel, QProgressBar, QSplitter, QTreeView, QVBoxLayout, QWidget

from airlock.core.findings import Finding, Severity
from airlock.core.provenance.hf_cache import provenance_line
from airlock.core.scan import ScanResult
from airlock.core.text import human_size, safe_path, safe_text
from airlock.core.tree import Node
from airlock.gui import graph_view, node_menu
from airlock.gui.details.pane import DetailsPane
from airlock.gui.findings_panel import FindingsPanel, VerdictBanner
from airlock.gui.graph_view import GraphView
from airlock.gui.tree_model import HEADERS, NODE_ROLE, NodeFilter, NodeTreeModel, node_matches
from airlock.gui.workers import ScanWorker, pool

FIND_LIMIT = 500_000  # nodes visited by one "find next" (lazy lists included)
COLUMN_WIDTHS = (240, 64, 92, 78, 70, 66, 66)  # Name … Risk: all visible in the default window


class FileView(QWidget):
    scan_finished = Signal(object)  # self

    def __init__(self, path: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.result: ScanResult | None = None
        self.error: str | None = None
        self.model: NodeTreeModel | None = None
        self.proxy = NodeFilter(self)
        self.worker: ScanWorker | None = None
        self.graph_view: GraphView | None = None  # a Graph tab beside the tree, for files with a graph

        self.banner = VerdictBanner()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.info = QLabel()
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        self.tree = QTreeView()
        self.tree.setUniformRowHeights(True)  # keeps 100k-row lists fast
        self.tree.setAlternatingRowColors(True)
        self.tree.setAllColumnsShowFocus(True)
        self.tree.setAccessibleName("Structure")
        self.tree.setModel(self.proxy)
        node_menu.install(self)
        self.details = DetailsPane()
        self.details.values.view = self  # the .npy export never writes over this file
        self.findings = FindingsPanel()
        self.findings.activated_finding.connect(self.reveal_finding)

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.tree)
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
        self.proxy.setSourceModel(self.model)
        header = self.tree.header()
        for col in range(len(HEADERS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, COLUMN_WIDTHS[col])
        self.tree.selectionModel().currentChanged.connect(self._node_changed)
        root_index = self.proxy.index(0, 0)
        self.tree.expand(root_index)
        self._expand_small(root_index)
        self._expand_risky(root_index, depth=0)
        self.details.set_source(result.source)
        self.findings.set_findings(result.findings)
        self.banner.set_verdict(result.findings, result.format, result.inspected)
        size = human_size(result.size) if result.size is not None else "?"
        origin = provenance_line(result.path)  # a Hugging Face cache file: repo, revision, signature
        self.info.setText(f"{safe_path(result.path, 300)}   ·   format {result.format}   ·   {size}   ·   "
                          f"{len(result.findings)} finding(s)   ·   scanned in {result.elapsed_s:.2f} s"
                          + (f"\n{safe_text(origin, 300)}" if origin else ""))
        self.details.show_node(result.root)
        graph_view.attach(self)

    def _expand_small(self, root_index: QModelIndex) -> None:
        """Open the first level when it is short, so a small model shows its tensors at once."""
        rows = self.proxy.rowCount(root_index)
        for row in range(min(rows, 8)):
            child = self.proxy.index(row, 0, root_index)
            node = child.data(NODE_ROLE)
            if node is not None and 0 < node.child_count <= 12 and not node.is_lazy:
                self.tree.expand(child)

    def _expand_risky(self, index: QModelIndex, depth: int) -> None:
        """Open the path to what matters: risky branches, a few levels deep."""
        if depth > 5:
            return
        for row in range(min(self.proxy.rowCount(index), 50)):
            child = self.proxy.index(row, 0, index)
            node = child.data(NODE_ROLE)
            if node is not None and node.severity >= Severity.MEDIUM and node.child_count:
                self.tree.expand(child)
                self._expand_risky(child, depth + 1)

    def close_result(self) -> None:
        """Release the file. Models go first: lazy nodes read from the map while it is open."""
        self.cancel()
        self.proxy.setSourceModel(None)  # type: ignore[arg-type]
        self.model = None
        self.details.set_source(None)
        if self.result is not None:
            self.result.close()

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
        source_index = self.model.index_for(node)
        if not source_index.isValid():
            return False
        index = self.proxy.mapFromSource(source_index)
        if not index.isValid() and (self.proxy.text or self.proxy.risky_only):
            self.proxy.set_text("")
            index = self.proxy.mapFromSource(source_index)
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

    # Search

    def set_filter(self, text: str) -> None:
        self.proxy.set_text(text)
        if text and self.proxy.rowCount():
            self.tree.expandRecursively(self.proxy.index(0, 0), 4)

    def set_risky_only(self, on: bool) -> None:
        self.proxy.set_risky_only(on)
        if on and self.proxy.rowCount():
            self.tree.expandRecursively(self.proxy.index(0, 0), 6)

    def find_next(self, text: str) -> Node | None:
        """The next node after the current one whose name or values match, lazy lists included."""
        if self.result is None or not text.strip():
            return None
        needle = text.strip().casefold()
        current = self.current_node()
        passed = current is None
        visited = 0
        for node in self.result.root.walk(expand_lazy=True):
            visited += 1
            if visited > FIND_LIMIT:
                break
            if not passed:
                passed = node is current
                continue
            if node_matches(node, needle):
                self.select_node(node)
                return node
        return None
