"""The Graph tab: a model's operators as boxes and tensors as edges, beside the Structure tree.

The graph is built and laid out in core (airlock.core.graph) in a worker when the tab is first
shown; the canvas (graph_canvas.py) paints only what is visible. Clicking a box selects its node
in the tree, so the details pane shows it; the panel under the canvas lists the box's inputs (an
initializer input opens that initializer: its values, its bytes), outputs, attributes and why it
is highlighted. Search, "next risky" and zoom sit in the bar above.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSplitter,
    QTabWidget,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from airlock.core.graph import LaidOut, build_and_lay_out, graph_sources
from airlock.core.graph.model import OP, GraphSource
from airlock.core.text import safe_text
from airlock.core.tree import Node
from airlock.gui.graph_canvas import GraphCanvas, severity_word, text_metrics
from airlock.gui.workers import FunctionWorker, pool

if TYPE_CHECKING:
    from airlock.gui.file_view import FileView

TENSOR_ROLE = Qt.ItemDataRole.UserRole + 1  # on an input row: the initializer's shown name


class GraphView(QWidget):
    canvas: GraphCanvas  # made below the toolbar whose buttons call it

    def __init__(self, view: FileView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.sources: list[GraphSource] = []
        self.current: LaidOut | None = None
        self._cache: dict[int, LaidOut] = {}
        self._token = 0
        self.worker: FunctionWorker | None = None
        self._match_list: list[int] = []
        self._match_at = -1
        self._risky_at = -1
        self._widened = False

        self.chooser = QComboBox()
        self.chooser.setAccessibleName("Graph to show")
        self.chooser.currentIndexChanged.connect(self._chosen)
        self.search = QLineEdit(placeholderText="Find operators and tensors — Enter: next")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._search_changed)
        self.search.returnPressed.connect(self.next_match)
        self.found = QLabel()
        self.risky_button = self._button("Next risky", self.next_risky, "Go to the next highlighted box")
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.chooser)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.found)
        bar.addWidget(self.risky_button)
        for text, slot, tip in (("−", lambda: self.canvas.zoom_by(0.8), "Zoom out (−, Ctrl+wheel)"),
                                ("+", lambda: self.canvas.zoom_by(1.25), "Zoom in (+, Ctrl+wheel)"),
                                ("Fit", lambda: self.canvas.fit(), "Fit the width (0)")):
            bar.addWidget(self._button(text, slot, tip))
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.canvas = GraphCanvas()
        self.canvas.node_clicked.connect(self.select)
        self.canvas.node_activated.connect(self.show_in_tree)
        self.canvas.node_menu.connect(self._menu)
        self.props = QTreeWidget()
        self.props.setHeaderHidden(True)
        self.props.setColumnCount(2)
        self.props.setAccessibleName("Graph node")
        self.props.itemActivated.connect(self._prop_activated)
        self.props.itemClicked.connect(self._prop_activated)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.canvas)
        split.addWidget(self.props)
        # The panel gets a third: a highlighted box's reasons, inputs and outputs show without
        # scrolling in a 1280×800 window (at a fifth, its rows were cut in the middle).
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 1)
        split.setSizes([400, 200])
        self.splitter = split
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(bar)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)

    @staticmethod
    def _button(text: str, slot: Any, tip: str) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # Sources and building

    def set_sources(self, sources: list[GraphSource]) -> None:
        self._cancel()
        self.sources = sources
        self._cache = {}
        self.current = None
        self.canvas.set_graph(None, None, [])
        self.chooser.blockSignals(True)
        self.chooser.clear()
        for source in sources:
            count = source.operator_count
            plural = "" if count == 1 else "s"
            self.chooser.addItem(f"{safe_text(source.title, 80)} ({count:,} operator{plural})")
        self.chooser.blockSignals(False)
        self.chooser.setVisible(len(sources) > 1)
        self.status.setText("The graph is laid out when this tab is first shown.")

    def ensure_shown(self) -> None:
        """Called when the tab becomes visible: lay out the chosen graph if not done yet."""
        if not self._widened:
            self._widened = True
            self._widen()
        if self.current is None and self.worker is None and self.sources:
            self._start(self.chooser.currentIndex())

    def _widen(self) -> None:
        """A graph needs room: the first time the tab shows, give it most of the width beside the
        details (once; the user's own splitter moves are kept after that)."""
        tabs = _tabs_of(self)
        splitter = tabs.parentWidget() if tabs is not None else None
        if (tabs is not None and isinstance(splitter, QSplitter)
                and splitter.orientation() == Qt.Orientation.Horizontal):
            sizes = splitter.sizes()
            total = sum(sizes)
            position = splitter.indexOf(tabs)
            if len(sizes) == 2 and total > 0 and sizes[position] < 0.6 * total:
                wide = int(total * 0.62)
                splitter.setSizes([wide, total - wide] if position == 0 else [total - wide, wide])

    def _chosen(self, index: int) -> None:
        if 0 <= index < len(self.sources):
            self._start(index)

    def _start(self, index: int) -> None:
        self._cancel()
        index = max(index, 0)
        cached = self._cache.get(index)
        if cached is not None:
            self._show(cached)
            return
        source = self.sources[index]
        self._token += 1
        token = self._token
        self.status.setText(f"Laying out {source.operator_count:,} operators…")
        _, char_width, line_height = text_metrics()
        worker = FunctionWorker(_build, source, char_width, line_height)
        worker.signals.returned.connect(lambda laid, t=token, i=index: self._built(t, i, laid))
        worker.signals.errored.connect(lambda msg, t=token: self._failed(t, msg))
        worker.signals.finished.connect(lambda t=token: self._worker_done(t))
        self.worker = worker
        pool().start(worker)

    def _cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.worker = None
        self._token += 1

    def _worker_done(self, token: int) -> None:
        if token == self._token:
            self.worker = None

    def _built(self, token: int, index: int, laid: LaidOut | None) -> None:
        if token != self._token or laid is None:
            return
        self._cache[index] = laid
        self._show(laid)

    def _failed(self, token: int, message: str) -> None:
        if token == self._token:
            self.status.setText(f"The graph could not be drawn: {safe_text(message, 300)}")

    def _show(self, laid: LaidOut) -> None:
        self.current = laid
        graph, layout = laid.graph, laid.layout
        self.canvas.set_graph(graph, layout, laid.sizes)
        self.canvas.fit()
        risky = graph.risky()
        parts = [f"{sum(1 for n in graph.nodes if n.kind == OP):,} operators", f"{len(graph.edges):,} edges",
                 f"built and laid out in {laid.seconds:.2f} s"]
        if risky:
            parts.append(f"{len(risky):,} highlighted")
        if layout.long_edges:
            parts.append(f"{len(layout.long_edges):,} long edges drawn along the side")
        if graph.note:
            parts.append(graph.note)
        self.status.setText(" · ".join(parts))
        self.risky_button.setEnabled(bool(risky))
        self._risky_at = -1
        self._search_changed(self.search.text())
        self._fill_props(None)
        node = self.view.current_node()
        if node is not None:
            self.show_tree_node(node, switch=False)

    # Selection

    def select(self, index: int) -> None:
        """Select a box: mark it, list its details, and select its element in the tree."""
        if self.current is None:
            return
        self.canvas.selected = index
        self.canvas.refresh()
        box = self.current.graph.nodes[index]
        self._fill_props(index)
        node = self.current.graph.locate(box)
        if node is not None:
            self.view.select_node(node)

    def can_show(self, node: Node) -> bool:
        return self.current is not None and self.current.graph.index_of(node) is not None

    def show_tree_node(self, node: Node, *, switch: bool = True) -> bool:
        """Show a tree node's box, if the graph on screen has one (and bring the tab up)."""
        if self.current is None:
            return False
        index = self.current.graph.index_of(node)
        if index is None:
            return False
        if switch:
            _bring_up(self)
        self.canvas.selected = index
        self._fill_props(index)
        self.canvas.reveal(index)
        self.canvas.refresh()
        return True

    def show_in_tree(self, index: int) -> None:
        if self.current is None:
            return
        node = self.current.graph.locate(self.current.graph.nodes[index])
        if node is not None:
            tabs = _tabs_of(self)
            if tabs is not None:
                tabs.setCurrentIndex(0)
            self.view.select_node(node)

    def _menu(self, index: int, where: QPoint) -> None:
        if self.current is None:
            return
        from airlock.gui import node_menu

        self.select(index)
        node = self.current.graph.locate(self.current.graph.nodes[index])
        if node is None:
            return
        extra = [("Show in Tree", lambda: self.show_in_tree(index))]
        menu = node_menu.build_menu(self.view, node, self, extra)
        menu.exec(where)

    # Search and risky boxes

    def _search_changed(self, text: str) -> None:
        if self.current is None:
            self.found.setText("")
            return
        self._match_list = self.current.graph.search(text)
        self._match_at = -1
        self.canvas.matches = set(self._match_list)
        self.canvas.refresh()
        self.found.setText(f"{len(self._match_list):,} found" if text.strip() else "")

    def next_match(self) -> int | None:
        if not self._match_list:
            return None
        self._match_at = (self._match_at + 1) % len(self._match_list)
        index = self._match_list[self._match_at]
        self.select(index)
        self.canvas.reveal(index)
        return index

    def next_risky(self) -> int | None:
        if self.current is None:
            return None
        risky = self.current.graph.risky()
        if not risky:
            return None
        risky.sort(key=lambda i: -int(self.current.graph.nodes[i].severity) if self.current else 0)
        self._risky_at = (self._risky_at + 1) % len(risky)
        index = int(risky[self._risky_at])
        self.select(index)
        self.canvas.reveal(index)
        return index

    # The panel under the canvas

    def _fill_props(self, index: int | None) -> None:
        self.props.clear()
        if self.current is None or index is None:
            QTreeWidgetItem(self.props, ["Click a box to see its inputs, outputs and attributes."])
            return
        box = self.current.graph.nodes[index]
        top = QTreeWidgetItem(self.props, [box.title, box.name])
        top.setExpanded(True)
        if box.reasons:
            why = QTreeWidgetItem(self.props, ["Highlighted", f"{len(box.reasons)} reason(s)"])
            for reason in box.reasons:
                QTreeWidgetItem(why, [severity_word(box.severity), reason])
            why.setExpanded(True)
        inputs = QTreeWidgetItem(self.props, ["Inputs", str(len(box.inputs))])
        for name, where in box.inputs:
            item = QTreeWidgetItem(inputs, [name, where])
            if where.startswith("initializer"):
                item.setData(0, TENSOR_ROLE, name)
                item.setToolTip(0, "Click to open this initializer (its values and bytes)")
        inputs.setExpanded(True)
        outputs = QTreeWidgetItem(self.props, ["Outputs", str(len(box.outputs))])
        for name in box.outputs:
            QTreeWidgetItem(outputs, [name, ""])
        outputs.setExpanded(len(box.outputs) <= 4)
        if box.attributes:
            attrs = QTreeWidgetItem(self.props, ["Attributes", str(len(box.attributes))])
            for name, value in box.attributes:
                QTreeWidgetItem(attrs, [name, value])
            attrs.setExpanded(True)
        self.props.resizeColumnToContents(0)

    def _prop_activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        name = item.data(0, TENSOR_ROLE)
        if self.current is None or not isinstance(name, str):
            return
        node = self.current.graph.locate_tensor(name)
        if node is not None:
            self.view.select_node(node)

    def clear(self) -> None:
        self.set_sources([])


def _build(source: GraphSource, char_width: float, line_height: float, *, progress: Any = None,
           cancelled: Any = None) -> LaidOut | None:
    from airlock.core.errors import Cancelled

    try:
        return build_and_lay_out(source, char_width, line_height, cancelled)
    except Cancelled:
        return None


def _tabs_of(widget: QWidget) -> QTabWidget | None:
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QTabWidget):
        parent = parent.parentWidget()
    return parent


def _bring_up(widget: QWidget) -> None:
    tabs = _tabs_of(widget)
    if tabs is not None:
        tabs.setCurrentIndex(tabs.indexOf(widget))


def attach(view: FileView) -> GraphView | None:
    """Give a file view a Graph tab beside its tree when its file has a graph (on every new result)."""
    sources = graph_sources(view.result.root) if view.result is not None else []
    existing: GraphView | None = getattr(view, "graph_view", None)
    if existing is not None:
        tabs = _tabs_of(existing)
        existing.set_sources(sources)
        if tabs is not None:
            tabs.setTabVisible(tabs.indexOf(existing), bool(sources))
            if tabs.currentWidget() is existing:
                existing.ensure_shown()
        return existing
    if not sources:
        return None
    # The tree's own container (the tree, or the box holding it and its filter bar) moves into a
    # tab; the splitter it sat in keeps its place and sizes.
    container: QWidget = view.tree
    parent = container.parentWidget()
    while parent is not None and not isinstance(parent, QSplitter):
        container, parent = parent, parent.parentWidget()
    splitter = parent
    if not isinstance(splitter, QSplitter):
        return None
    position = splitter.indexOf(container)
    tabs = QTabWidget()
    tabs.setDocumentMode(True)
    splitter.replaceWidget(position, tabs)
    # A splitter's stretch factor lives in its widget's size policy: the tabs take the tree's, or a
    # wider window would give all its new room to the details pane.
    policy = container.sizePolicy()
    splitter.setStretchFactor(position, max(policy.horizontalStretch(), policy.verticalStretch()))
    tabs.addTab(container, "Structure")
    graph = GraphView(view)
    tabs.addTab(graph, "Graph")
    tabs.currentChanged.connect(lambda i: graph.ensure_shown() if tabs.widget(i) is graph else None)
    view.graph_view = graph
    graph.set_sources(sources)
    return graph
