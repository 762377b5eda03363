"""The statistics and histogram of one tensor: core computes them in a worker, this view draws them.

Where the bytes are and how they decode is `airlock.core.tensors`; the statistics (sampled above a
cap, and said so) are `airlock.core.tensor_stats`. matplotlib loads only when a histogram is drawn.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from airlock.core import tensor_stats, tensors
from airlock.core.tensors import Read, TensorData
from airlock.core.text import safe_text
from airlock.core.tree import Node
from airlock.gui import theme
from airlock.gui.workers import FunctionWorker, pool


class TensorStatsView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setFont(theme.monospace_font())
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addWidget(self.summary)
        self._layout.addWidget(self.bar)
        self._canvas: Any = None
        self._figure: Any = None
        self._token = 0
        self.worker: FunctionWorker | None = None
        self.stats: tensor_stats.Stats | None = None
        self.show_message("Select a tensor to see its statistics.")

    def show_message(self, text: str) -> None:
        self._token += 1
        self._cancel_worker()
        self.stats = None
        self.bar.setVisible(False)
        self.summary.setText(text)
        if self._canvas is not None:
            self._canvas.setVisible(False)

    def release(self) -> None:
        """Drop the histogram's figure and canvas (matplotlib keeps both large)."""
        self.show_message("")
        if self._canvas is not None:
            self._layout.removeWidget(self._canvas)
            self._canvas.setParent(None)
            self._canvas.deleteLater()
            self._figure.clear()
            self._canvas = self._figure = None

    def show_tensor(self, node: Node, read: Read, file_size: int) -> None:
        ref = tensors.describe(node)
        why = ref if isinstance(ref, str) else tensor_stats.unsupported(ref)
        if isinstance(ref, str) or why is not None:
            self.show_message(f"Statistics not available: {why}.")
            return
        self.show_message(f"Computing statistics for {safe_text(node.label, 120)}…")
        self.bar.setVisible(True)
        self.bar.setValue(0)
        token = self._token
        worker = FunctionWorker(tensor_stats.compute_stats, read, file_size, ref)
        worker.signals.progress.connect(lambda f, _m, t=token: self._progress(t, f))
        worker.signals.returned.connect(lambda stats, t=token: self._done(t, ref, stats))
        worker.signals.errored.connect(lambda msg, t=token: self._failed(t, msg))
        self.worker = worker
        pool().start(worker)

    def _failed(self, token: int, message: str) -> None:
        if token == self._token:
            self.show_message(f"Statistics failed: {safe_text(message, 300)}")

    def _progress(self, token: int, fraction: float) -> None:
        if token == self._token:
            self.bar.setValue(int(fraction * 100))

    def _cancel_worker(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.worker = None

    def _done(self, token: int, ref: TensorData, stats: tensor_stats.Stats | None) -> None:
        if token != self._token or stats is None:
            return
        self.stats = stats
        self.bar.setVisible(False)
        self.summary.setText(tensor_stats.stats_summary(stats, ref))
        self._plot(stats)

    def _plot(self, stats: tensor_stats.Stats) -> None:
        from airlock.gui.workers import import_plotting

        import_plotting()  # not beside the warm-up's import of it (workers.py)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        if self._canvas is None:
            self._figure = Figure(figsize=(5, 2.6), layout="constrained")
            self._canvas = FigureCanvasQTAgg(self._figure)  # type: ignore[no-untyped-call]  # matplotlib's Qt canvas
            self._canvas.setMinimumHeight(180)
            self._layout.addWidget(self._canvas, 1)
        ax = themed_axes(self._figure)
        counts, edges = stats["counts"], stats["edges"]
        if counts:
            widths = [b - a for a, b in pairwise(edges)]
            ax.bar(edges[:-1], counts, width=widths, align="edge", color="#3b82f6", edgecolor="none")
            nonzero = [c for c in counts if c]
            if nonzero and max(nonzero) / min(nonzero) > 1000:
                ax.set_yscale("log")
        label_axes(ax, "value" + (" (sample)" if stats["sampled"] else ""))
        self._canvas.setVisible(True)
        self._canvas.draw_idle()


def _colours() -> tuple[str, str]:
    """Text and background colours of a histogram in the window's theme."""
    return ("#e6e9ee", "#16191d") if theme.is_dark() else ("#111827", "#ffffff")


def themed_axes(figure: Any) -> Any:
    """`figure` cleared, with one axes on the theme's background (the tensor and diff histograms)."""
    bg = _colours()[1]
    figure.clear()
    figure.set_facecolor(bg)
    ax = figure.add_subplot()
    ax.set_facecolor(bg)
    return ax


def label_axes(ax: Any, xlabel: str) -> None:
    """Value and count labels, ticks and frame in the theme's text colour."""
    fg = _colours()[0]
    ax.set_xlabel(xlabel, color=fg)
    ax.set_ylabel("count", color=fg)
    ax.tick_params(colors=fg)
    for spine in ax.spines.values():
        spine.set_color(fg)
