"""The drawing surface of the graph view: a QGraphicsView with no items, painting only what is visible.

A 5,000-operator graph would be 15,000 QGraphicsItems (boxes, texts, edges) created on the GUI
thread; here the view's background paints, for the exposed rectangle only, the rows it overlaps
(binary search on the layout's row tops) and in each row the boxes it overlaps (binary search on
x). Edges are indexed by the rows they cross. Zoomed far out, boxes are plain rectangles and text is
left out (level of detail). Pan: drag, scroll bars, arrow keys; zoom: Ctrl+wheel, +/-, 0 to fit.
Every string painted comes from core already escaped, and is painted as plain text.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView, QToolTip, QWidget

from airlock.core.findings import Severity
from airlock.core.graph.layout import Layout
from airlock.core.graph.model import CUSTOM, EXTERNAL, INPUT, OUTPUT, PAD_X, PAD_Y, PYTHON, TRIGGER, Graph
from airlock.gui import theme
from airlock.gui.tree_model import plain_tooltip

TEXT_PX = 12  # text size in scene units (pixels at zoom 1)
DETAIL_SCALE = 0.32  # below this zoom, boxes are drawn without text
MIN_SCALE, MAX_SCALE = 0.01, 4.0
MARGIN = 40.0

# Header colours by operator category (light theme, dark theme).
HEADER = {
    "layer": ("#33609c", "#4a7cc0"), "activation": ("#9c3b3b", "#b85454"), "pool": ("#36773a", "#4d9651"),
    "normalization": ("#4f4f98", "#6b6bb8"), "shape": ("#5f6673", "#7a8290"),
    "control": ("#87570c", "#a86f16"),
    "constant": ("#666666", "#7f7f7f"), "input": ("#1f2937", "#cbd5e1"), "output": ("#1f2937", "#cbd5e1"),
    "": ("#4b5563", "#64748b"),
}


def text_metrics() -> tuple[QFont, float, float]:
    """The canvas font and the (character width, line height) core sizes boxes with."""
    font = QFont()
    font.setPixelSize(TEXT_PX)
    fm = QFontMetricsF(font)
    # Operator names are mostly letters; 1.08 × the average width keeps most of them unelided.
    return font, fm.averageCharWidth() * 1.08, fm.height() + 2.0


class GraphCanvas(QGraphicsView):
    node_clicked = Signal(int)  # a box was clicked (its index in the graph)
    node_activated = Signal(int)  # double-clicked
    node_menu = Signal(int, object)  # right-clicked: index, global position (QPoint)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setAccessibleName("Graph")
        self.graph: Graph | None = None
        self.layout_: Layout | None = None
        self.sizes: list[tuple[float, float]] = []
        self.selected: int | None = None
        self.matches: set[int] = set()
        self.font_, _, self.line_height = text_metrics()
        self.small_font = QFont(self.font_)
        self.small_font.setPixelSize(TEXT_PX - 1)
        self._row_x: list[list[float]] = []
        self._row_edges: list[list[int]] = []
        self._lane_edges: list[tuple[QRectF, int]] = []
        self._elided: dict[int, tuple[str, str, list[str]]] = {}
        self._press: QPointF | None = None

    # Content

    def set_graph(self, graph: Graph | None, layout: Layout | None, sizes: list[tuple[float, float]]) -> None:
        self.graph, self.layout_, self.sizes = graph, layout, sizes
        self.selected = None
        self.matches = set()
        self._elided = {}
        self._row_x, self._row_edges, self._lane_edges = [], [], []
        if graph is None or layout is None:
            self.scene().setSceneRect(QRectF(0, 0, 1, 1))
            self.viewport().update()
            return
        self._row_x = [[layout.x[v] for v in row] for row in layout.layers]
        self._row_edges = [[] for _ in layout.layers]
        long = set(layout.long_edges)
        for e, points in enumerate(layout.edges):
            if not points:
                continue
            if e in long:
                xs = [p[0] for p in points]
                ys = [p[1] for p in points]
                box = QRectF(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys))
                self._lane_edges.append((box, e))
                continue
            first, last = layout.edge_layers[e]
            for r in range(first, last + 1):
                self._row_edges[r].append(e)
        self.scene().setSceneRect(QRectF(-MARGIN, -MARGIN, layout.width + 2 * MARGIN,
                                         layout.height + 2 * MARGIN))
        self.viewport().update()

    def refresh(self) -> None:
        self.viewport().update()

    # Geometry

    def box_rect(self, index: int) -> QRectF:
        assert self.layout_ is not None
        w, h = self.sizes[index]
        return QRectF(self.layout_.x[index] - w / 2, self.layout_.y[index] - h / 2, w, h)

    def node_at(self, scene_pos: QPointF) -> int | None:
        layout = self.layout_
        if layout is None:
            return None
        for r in layout.rows_between(scene_pos.y(), scene_pos.y()):
            xs = self._row_x[r]
            i = bisect.bisect_left(xs, scene_pos.x())
            for j in (i - 1, i):
                if 0 <= j < len(xs):
                    v = layout.layers[r][j]
                    if self.box_rect(v).contains(scene_pos):
                        return v
        return None

    def visible_nodes(self, rect: QRectF) -> list[int]:
        layout = self.layout_
        if layout is None:
            return []
        out: list[int] = []
        widest = max((w for w, _ in self.sizes), default=0.0) / 2
        for r in layout.rows_between(rect.top(), rect.bottom()):
            xs = self._row_x[r]
            lo = bisect.bisect_left(xs, rect.left() - widest)
            hi = bisect.bisect_right(xs, rect.right() + widest)
            out.extend(layout.layers[r][lo:hi])
        return out

    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, scale: float) -> None:
        scale = min(MAX_SCALE, max(MIN_SCALE, scale))
        factor = scale / self.zoom()
        self.scale(factor, factor)

    def zoom_by(self, factor: float) -> None:
        self.set_zoom(self.zoom() * factor)

    def fit(self) -> None:
        if self.layout_ is None:
            return
        rect = self.scene().sceneRect()
        view = self.viewport().rect()
        scale = min(view.width() / max(rect.width(), 1.0), view.height() / max(rect.height(), 1.0))
        # a tall graph fitted whole is a line of dots: fit its width, start at its top
        scale = max(scale, min(1.0, view.width() / max(rect.width(), 1.0)), 0.2)
        self.resetTransform()
        self.set_zoom(min(scale, 1.0))
        self.centerOn(rect.center().x(), rect.top() + view.height() / (2 * self.zoom()))

    def reveal(self, index: int) -> None:
        """Centre on a box, zooming in if it would be too small to read."""
        if self.layout_ is None:
            return
        if self.zoom() < 0.6:
            self.set_zoom(0.9)
        self.centerOn(self.layout_.x[index], self.layout_.y[index])

    # Painting

    def drawBackground(self, painter: QPainter, rect: QRectF | QRect) -> None:
        rect = QRectF(rect)
        dark = theme.is_dark()
        painter.fillRect(rect, QColor("#15181c" if dark else "#fbfbfc"))
        if self.graph is None or self.layout_ is None:
            return
        detailed = self.zoom() >= DETAIL_SCALE
        self._paint_edges(painter, rect, dark, detailed)
        for v in self.visible_nodes(rect):
            self._paint_box(painter, v, dark, detailed)

    def _paint_edges(self, painter: QPainter, rect: QRectF, dark: bool, detailed: bool) -> None:
        layout, graph = self.layout_, self.graph
        assert layout is not None and graph is not None
        seen: set[int] = set()
        rows = layout.rows_between(rect.top() - 60, rect.bottom() + 60)
        todo = [e for r in rows for e in self._row_edges[r]]
        todo += [e for box, e in self._lane_edges if box.intersects(rect)]
        normal = QPen(QColor("#8b95a5" if dark else "#7b8494"), 1.2)
        marked = QPen(QColor((theme.TEXT_DARK if dark else theme.BADGE)[Severity.CRITICAL]), 2.6)
        chosen = QPen(QColor("#3b82f6"), 2.2)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        arrows: list[tuple[QPointF, QPen]] = []
        long = set(layout.long_edges)
        for e in todo:
            if e in seen:
                continue
            seen.add(e)
            points = layout.edges[e]
            a, b = graph.edges[e]
            pen = marked if graph.edge_marks[e] else chosen if self.selected in (a, b) else normal
            painter.setPen(pen)
            path = QPainterPath(QPointF(*points[0]))
            if e in long or not detailed:
                for p in points[1:]:
                    path.lineTo(QPointF(*p))
            else:
                for (x1, y1), (x2, y2) in itertools.pairwise(points):
                    mid = (y2 - y1) / 2
                    path.cubicTo(QPointF(x1, y1 + mid), QPointF(x2, y2 - mid), QPointF(x2, y2))
            painter.drawPath(path)
            if detailed:
                arrows.append((QPointF(*points[-1]), pen))
        for tip, pen in arrows:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(pen.color())
            x, y = tip.x(), tip.y()
            painter.drawPolygon(QPolygonF([tip, QPointF(x - 4, y - 7), QPointF(x + 4, y - 7)]))

    def _paint_box(self, painter: QPainter, v: int, dark: bool, detailed: bool) -> None:
        graph = self.graph
        assert graph is not None
        node = graph.nodes[v]
        rect = self.box_rect(v)
        header = QColor(HEADER.get(node.category, HEADER[""])[1 if dark else 0])
        body = QColor("#22262c" if dark else "#ffffff")
        risky = node.severity >= Severity.LOW or bool(node.marks & {CUSTOM, PYTHON, EXTERNAL, TRIGGER})
        border = QColor("#4b5563" if dark else "#9aa3af")
        width = 1.0
        if risky:
            sev = max(node.severity, Severity.MEDIUM if node.marks else Severity.LOW)
            border = QColor((theme.TEXT_DARK if dark else theme.BADGE)[Severity(sev)])
            width = 3.0
            tint = QColor(border)
            tint.setAlpha(40)
            body = QColor(border.red() // 4, border.green() // 4, border.blue() // 4 + 20) if dark else tint
        halo = QColor("#3b82f6") if v == self.selected else QColor("#eab308") if v in self.matches else None
        if halo is not None:  # outside the box, so a risky box keeps its own border colour
            painter.setPen(QPen(halo, 3.0))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            outer = rect.adjusted(-4, -4, 4, 4)
            pill_radius = outer.height() / 2 if node.kind in (INPUT, OUTPUT) else 8.0
            painter.drawRoundedRect(outer, pill_radius, pill_radius)
        painter.setPen(QPen(border, width))
        painter.setBrush(QBrush(body))
        pill = node.kind in (INPUT, OUTPUT)
        radius = rect.height() / 2 if pill else 5.0
        if not detailed:
            painter.setBrush(QBrush(header if not risky else border))
            painter.drawRect(rect)
            return
        painter.drawRoundedRect(rect, radius, radius)
        title, name, rows = self._texts(v, rect.width())
        head = QRectF(rect.left(), rect.top(), rect.width(), self.line_height + PAD_Y)
        if not pill:
            clip = QPainterPath()
            clip.addRoundedRect(rect, radius, radius)
            painter.save()
            painter.setClipPath(clip, Qt.ClipOperation.IntersectClip)
            painter.fillRect(head, header)
            painter.restore()
            painter.setPen(QColor("#ffffff"))
        else:
            painter.setPen(QColor("#e5e7eb" if dark else "#111827"))
        painter.setFont(self.font_)
        text_flags = int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextSingleLine)
        if pill:  # an input or output: its name, and its type under it
            painter.drawText(QRectF(rect.left() + PAD_X, rect.top() + PAD_Y, rect.width() - 2 * PAD_X,
                                    self.line_height), text_flags, title)
            if name:
                painter.setFont(self.small_font)
                painter.drawText(QRectF(rect.left() + PAD_X, rect.top() + PAD_Y + self.line_height,
                                        rect.width() - 2 * PAD_X, self.line_height), text_flags, name)
            return
        painter.drawText(head.adjusted(PAD_X, PAD_Y / 2, -PAD_X, 0), text_flags, title)
        painter.setFont(self.small_font)
        painter.setPen(QColor("#cbd5e1" if dark else "#374151"))
        y = head.bottom()
        left = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextSingleLine)
        for line in ([name] if name else []) + rows:
            line_rect = QRectF(rect.left() + PAD_X, y, rect.width() - 2 * PAD_X, self.line_height)
            painter.drawText(line_rect, left, line)
            y += self.line_height

    def _texts(self, v: int, width: float) -> tuple[str, str, list[str]]:
        cached = self._elided.get(v)
        if cached is None:
            assert self.graph is not None
            node = self.graph.nodes[v]
            room = width - 2 * PAD_X
            big, small = QFontMetricsF(self.font_), QFontMetricsF(self.small_font)
            mode = Qt.TextElideMode.ElideMiddle
            cached = (big.elidedText(node.title, mode, room), small.elidedText(node.name, mode, room),
                      [small.elidedText(r, mode, room) for r in node.rows])
            self._elided[v] = cached
        return cached

    # Interaction

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._press = event.position()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        super().mouseReleaseEvent(event)
        start, self._press = self._press, None
        if start is None or (event.position() - start).manhattanLength() > 4:
            return  # a drag that panned, not a click
        hit = self.node_at(self.mapToScene(event.position().toPoint()))
        if event.button() == Qt.MouseButton.LeftButton and hit is not None:
            self.node_clicked.emit(hit)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        hit = self.node_at(self.mapToScene(event.position().toPoint()))
        if hit is not None:
            self.node_activated.emit(hit)
        else:
            super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event: Any) -> None:
        hit = self.node_at(self.mapToScene(event.pos()))
        if hit is not None:
            self.node_menu.emit(hit, event.globalPos())

    def wheelEvent(self, event: QWheelEvent) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_by(1.0015 ** event.angleDelta().y())
            event.accept()
            return
        super().wheelEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_by(1.25)
        elif key == Qt.Key.Key_Minus:
            self.zoom_by(0.8)
        elif key == Qt.Key.Key_0:
            self.fit()
        else:
            super().keyPressEvent(event)

    def viewportEvent(self, event: Any) -> bool:
        from PySide6.QtCore import QEvent

        if event.type() == QEvent.Type.ToolTip and self.graph is not None:
            hit = self.node_at(self.mapToScene(event.pos()))
            if hit is None:
                QToolTip.hideText()
            else:
                QToolTip.showText(event.globalPos(), plain_tooltip(self.tooltip(hit)), self.viewport())
            return True
        return super().viewportEvent(event)

    def tooltip(self, index: int) -> str:
        assert self.graph is not None
        node = self.graph.nodes[index]
        lines = [node.title + (f"  {node.name}" if node.name else "")]
        lines += [f"{severity_word(node.severity)}: {reason}" for reason in node.reasons]
        lines += [f"in: {name}  ({where})" for name, where in node.inputs[:12]]
        lines += [f"out: {name}" for name in node.outputs[:6]]
        return "\n".join(lines)


def severity_word(severity: Severity) -> str:
    return severity.label.upper() if severity > Severity.NONE else "note"
