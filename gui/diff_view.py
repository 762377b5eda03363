"""The diff tab: "Compare with…" shows what changed between the reviewed model (A) and another (B).

core (airlock.core.diff) computes everything in workers: the diff itself, then, for a selected
tensor, both histograms and the difference statistics. This module only shows them: a union tree of
both files (each row marked identical, changed, added, removed, renamed…), the reasons B is
security-relevant, and the selected tensor's details with both histograms drawn over each other.
"""

from __future__ import annotations

import os
from itertools import pairwise
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from airlock.core.text import safe_path, safe_text
from airlock.gui import theme
from airlock.gui.details import tensor_stats
from airlock.gui.workers import FunctionWorker, pool

ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1  # the tensor's entry (a dict) on tensor rows
PAIR_ROLE = Qt.ItemDataRole.UserRole + 2  # the pair's entry on every row below it
COL_NAME, COL_STATUS, COL_A, COL_B, COL_CHANGE = range(5)
PROGRESS_STEPS = 1000
CANCELLED = "Diff cancelled."
HEADERS = ("name", "status", "A", "B", "change")

MARKS = {"identical": "=", "changed": "~", "dtype changed": "~", "shape changed": "~", "renamed": "→",
         "added": "+", "removed": "−", "not compared": "?"}
COLOURS = {"identical": None, "changed": "#d97706", "dtype changed": "#d97706", "shape changed": "#d97706",
           "renamed": "#2563eb", "added": "#16a34a", "removed": "#dc2626", "not compared": "#dc2626"}


def _row(name: str, status: str = "", a: str = "", b: str = "", change: str = "") -> list[QStandardItem]:
    items = [QStandardItem(text) for text in (name, status, a, b, change)]
    colour = COLOURS.get(status)
    for item in items:
        item.setEditable(False)
        if colour:
            item.setForeground(QBrush(QColor(colour)))
    if status in MARKS:
        items[COL_STATUS].setText(f"{MARKS[status]} {status}")
    return items


def _shape(side: dict[str, Any] | None) -> str:
    if not side:
        return ""
    return f"{side['dtype']} [{', '.join(map(str, side['shape']))}]"


def _change(t: dict[str, Any]) -> str:
    stats = t.get("stats")
    if stats:
        bad = stats.get("non_finite_changed") or 0  # left out of max |Δ| and L2: say so
        return (f"max |Δ| {stats['max_abs_diff']:.4g}, rel L2 {stats['rel_l2']:.3g}, "
                f"{stats['changed']:,} of {stats['elements']:,} changed"
                + (f", {bad:,} to or from NaN/Inf" if bad else ""))
    if t["status"] == "renamed":
        return f"was {safe_text(t['from'], 120)}"
    return safe_text(t.get("note") or "", 160)


class DiffModel(QStandardItemModel):
    """The union tree. Rows refer to their entries (plain dicts kept here) by index: Qt would copy a
    dict into a QVariantMap, converting its values."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []

    def keep(self, item: QStandardItem, role: int, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        item.setData(len(self.entries) - 1, role)

    def entry(self, item: QStandardItem | None, role: int) -> dict[str, Any] | None:
        index = item.data(role) if item is not None else None
        return self.entries[index] if isinstance(index, int) and 0 <= index < len(self.entries) else None


def build_model(doc: dict[str, Any]) -> DiffModel:
    """The union tree of a diff document: one branch per pair of files, tensors grouped by their
    dotted names, then metadata, templates, pickle imports and calls, ONNX operators."""
    model = DiffModel()
    model.setHorizontalHeaderLabels(list(HEADERS))
    for pair in doc["pairs"]:
        name = safe_path(str(pair["b"] if pair["b"] is not None else pair["a"]), 200)
        differs = bool(pair["security"]) or any(t["status"] != "identical" for t in pair["tensors"])
        status = "added" if pair["a"] is None else "removed" if pair["b"] is None else \
            "changed" if differs else "identical"
        top = _row(name, status, *(safe_text(str(f), 40) for f in pair["format"]))
        model.keep(top[COL_NAME], PAIR_ROLE, pair)
        model.appendRow(top)
        _add_tensors(model, top[COL_NAME], pair)
        _add_rest(model, top[COL_NAME], pair)
    return model


def _add_tensors(model: DiffModel, parent: QStandardItem, pair: dict[str, Any]) -> None:
    if not pair["tensors"]:
        return
    group = _row(f"tensors ({len(pair['tensors']):,})")
    parent.appendRow(group)
    branches: dict[str, QStandardItem] = {}
    for t in pair["tensors"]:
        parts = t["name"].split(".")
        holder = group[COL_NAME]
        for depth in range(1, len(parts)):
            key = ".".join(parts[:depth])
            if key not in branches:
                row = _row(safe_text(parts[depth - 1], 80))
                holder.appendRow(row)
                branches[key] = row[COL_NAME]
            holder = branches[key]
        row = _row(safe_text(parts[-1], 120), t["status"], _shape(t.get("a")), _shape(t.get("b")), _change(t))
        model.keep(row[COL_NAME], ENTRY_ROLE, t)
        model.keep(row[COL_NAME], PAIR_ROLE, pair)
        holder.appendRow(row)


def _add_rest(model: DiffModel, parent: QStandardItem, pair: dict[str, Any]) -> None:
    meta = pair["metadata"]
    if any(meta.values()):
        group = _row("metadata")
        parent.appendRow(group)
        for key, value in meta["added"].items():
            group[COL_NAME].appendRow(_row(safe_text(key, 120), "added", "", safe_text(value, 200)))
        for key, value in meta["removed"].items():
            group[COL_NAME].appendRow(_row(safe_text(key, 120), "removed", safe_text(value, 200)))
        for key, (old, new) in meta["changed"].items():
            group[COL_NAME].appendRow(_row(safe_text(key, 120), "changed", safe_text(old, 200),
                                           safe_text(new, 200)))
    if pair["templates"]:
        group = _row("chat templates")
        parent.appendRow(group)
        for t in pair["templates"]:
            row = _row(safe_text(t["key"], 120), t["status"])
            if t.get("diff"):  # shown as plain text when selected (a tooltip could render it as rich text)
                added = sum(1 for x in t["diff"].splitlines() if x[:1] == "+" and x[:3] != "+++")
                row[COL_CHANGE].setText(f"{added} line(s) added or changed")
                model.keep(row[COL_NAME], ENTRY_ROLE, t)
            group[COL_NAME].appendRow(row)
    for label, key, status in (("pickle imports added", "imports_added", "added"),
                               ("pickle imports removed", "imports_removed", "removed"),
                               ("pickle calls added", "calls_added", "added")):
        if pair[key]:
            group = _row(label)
            parent.appendRow(group)
            for name in pair[key]:
                group[COL_NAME].appendRow(_row(safe_text(name, 160), status))
    ops = pair["operators"]
    if ops["added"] or ops["removed"]:
        group = _row("operators")
        parent.appendRow(group)
        for name in ops["added"]:
            group[COL_NAME].appendRow(_row(safe_text(name, 120), "added"))
        for name in ops["removed"]:
            group[COL_NAME].appendRow(_row(safe_text(name, 120), "removed"))


class DiffView(QWidget):
    """One diff tab. `diff_finished` fires when the diff is shown, `detail_finished` when a
    selected tensor's histograms and statistics are."""

    diff_finished = Signal()
    detail_finished = Signal()

    def __init__(self, path_a: str, path_b: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path_a, self.path_b = path_a, path_b
        self.doc: dict[str, Any] | None = None
        self.detail: dict[str, Any] | None = None
        self.model = DiffModel()
        self.banner = QLabel(f"Comparing {safe_path(path_a, 120)} (A, reviewed) with "
                             f"{safe_path(path_b, 120)} (B)…")
        self.banner.setTextFormat(Qt.TextFormat.PlainText)
        self.banner.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until core reports how far it is (see _progress)
        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setUniformRowHeights(True)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.info = QLabel("Select a changed tensor to see both histograms and the difference statistics.")
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        self.info.setWordWrap(True)
        self.info.setFont(theme.monospace_font())
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lower = QWidget()
        self._lower = QVBoxLayout(lower)
        self._lower.addWidget(self.info)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        split.addWidget(lower)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the diff (nothing is shown as compared that was not)")
        self.cancel_button.clicked.connect(self.cancel)
        busy = QHBoxLayout()
        busy.addWidget(self.bar, 1)
        busy.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addLayout(busy)
        layout.addWidget(split, 1)
        self._canvas: Any = None
        self._figure: Any = None
        self._token = 0
        self.worker: FunctionWorker | None = None
        self.detail_worker: FunctionWorker | None = None

    @property
    def name(self) -> str:
        return f"diff {safe_path(self.path_b.rstrip('/').rsplit('/', 1)[-1], 40)}"

    def start(self) -> None:
        from airlock.core.diff.compare import compare_paths

        worker = FunctionWorker(compare_paths, self.path_a, self.path_b)
        worker.signals.progress.connect(self._progress)
        worker.signals.returned.connect(self._done)
        worker.signals.errored.connect(self._failed)
        self.worker = worker
        pool().start(worker)

    def _progress(self, fraction: float, message: str) -> None:
        """core's diff says how far it is (by bytes of tensors compared, pair by pair for folders)."""
        if self.bar.maximum() == 0:
            self.bar.setRange(0, PROGRESS_STEPS)
        self.bar.setFormat(f"%p%  {safe_text(message, 100)}" if message else "%p%")
        self.bar.setValue(max(self.bar.value(), int(min(max(fraction, 0.0), 1.0) * PROGRESS_STEPS)))

    @property
    def cancelled(self) -> bool:
        return self.worker is not None and self.worker.is_cancelled

    def _failed(self, message: str) -> None:
        self.bar.setVisible(False)
        self.cancel_button.setVisible(False)
        if self.cancelled or message.startswith("Cancelled"):  # asked for: neutral, never "failed"
            self.banner.setText(CANCELLED)
        else:
            self.banner.setText(f"The diff failed: {safe_text(message, 300)}")
        self.diff_finished.emit()

    def _done(self, pairs: list[dict[str, Any]] | None) -> None:
        from airlock.core.diff.render import document

        self.bar.setVisible(False)
        self.cancel_button.setVisible(False)
        if pairs is None:
            self.banner.setText(CANCELLED)
            self.diff_finished.emit()
            return
        self.doc = document(self.path_a, self.path_b, pairs, "high")
        self.model = build_model(self.doc)
        self.tree.setModel(self.model)
        self.tree.expandToDepth(1)
        self.tree.header().resizeSection(COL_NAME, 320)
        self.tree.selectionModel().currentChanged.connect(lambda cur, _prev: self._select(cur))
        counts = ", ".join(f"{n:,} {s}" for s, n in self.doc["tensor_counts"].items() if n) or "no tensors"
        lines = [f"A (reviewed): {safe_path(self.path_a, 160)}   B: {safe_path(self.path_b, 160)}",
                 f"Tensors: {counts}."]
        if self.doc["errors"]:
            lines.append("Not complete: " + "; ".join(safe_text(e, 160) for e in self.doc["errors"][:4]))
        if self.doc["security"]:
            lines.append("Security-relevant in B: "
                         + "; ".join(safe_text(s, 160) for s in self.doc["security"][:4]))
        elif not self.doc["errors"]:
            lines.append("Nothing security-relevant is new in B.")
        self.banner.setText("\n".join(lines))
        self.diff_finished.emit()

    def _select(self, index: Any) -> None:
        item = self.model.itemFromIndex(index.siblingAtColumn(COL_NAME))
        entry, pair = self.model.entry(item, ENTRY_ROLE), self.model.entry(item, PAIR_ROLE)
        if entry is not None and "diff" in entry:  # a chat template: its unified diff, as plain text
            self.info.setText(f"chat template {safe_text(entry['key'], 120)} {entry['status']}:\n"
                              f"{entry['diff']}")
            return
        if entry is None or pair is None:
            return
        self.show_tensor(pair, entry)

    def show_tensor(self, pair: dict[str, Any], entry: dict[str, Any]) -> None:
        """Both histograms and the difference statistics of a tensor, computed in a worker."""
        from airlock.core.diff.detail import tensor_detail

        self._token += 1
        if self.detail_worker is not None:
            self.detail_worker.cancel()
        if pair["a"] is None or pair["b"] is None or entry["status"] in ("added", "removed"):
            self.info.setText(f"{safe_text(entry['name'], 200)}: {entry['status']} — only one side has it.")
            self.detail_finished.emit()
            return
        name_a = entry.get("from", entry["name"])
        self.info.setText(f"Reading {safe_text(entry['name'], 200)} in A and B…")
        token = self._token
        worker = FunctionWorker(tensor_detail, pair["a"], name_a, pair["b"], entry["name"])
        worker.signals.returned.connect(lambda detail, t=token: self._detail(t, entry, detail))
        worker.signals.errored.connect(lambda msg, t=token: self._detail(t, entry, {"why": msg}))
        self.detail_worker = worker
        pool().start(worker)

    def _detail(self, token: int, entry: dict[str, Any], detail: dict[str, Any] | None) -> None:
        if token != self._token or detail is None:
            return
        self.detail = detail
        from airlock.core.diff.render import stats_line

        lines = [f"{safe_text(entry['name'], 200)}: {entry['status']}"]
        if detail.get("why"):
            lines.append(safe_text(detail["why"], 300))
        for key in ("a", "b"):
            s = detail.get(key)
            if s:
                odd = "".join(f"  {label} {s[k]:,}" for k, label in (("nan", "NaN"), ("posinf", "+Inf"),
                                                                     ("neginf", "−Inf")) if s.get(k))
                lines.append(f"{key.upper()}: min {s['min']:.6g}  max {s['max']:.6g}  mean {s['mean']:.6g}  "
                             f"std {s['std']:.6g}" + odd + ("  (sampled)" if s["sampled"] else ""))
        if detail.get("diff"):
            lines.append("B − A: " + stats_line(detail["diff"]))
        self.info.setText("\n".join(lines))
        if detail.get("edges"):
            self._plot(detail)
        self.detail_finished.emit()

    def _plot(self, detail: dict[str, Any]) -> None:
        from airlock.gui.workers import import_plotting

        import_plotting()  # not beside the warm-up's import of it (workers.py)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        if self._canvas is None:
            self._figure = Figure(figsize=(5, 2.4), layout="constrained")
            self._canvas = FigureCanvasQTAgg(self._figure)  # type: ignore[no-untyped-call]  # matplotlib's Qt canvas
            self._canvas.setMinimumHeight(160)
            self._lower.addWidget(self._canvas, 1)
        ax = tensor_stats.themed_axes(self._figure)
        edges = detail["edges"]
        widths = [b - a for a, b in pairwise(edges)]
        for key, colour in (("a", "#3b82f6"), ("b", "#f97316")):
            ax.bar(edges[:-1], detail[f"counts_{key}"], width=widths, align="edge", color=colour, alpha=0.55,
                   label=key.upper())
        ax.legend()
        tensor_stats.label_axes(ax, "value")
        self._canvas.setVisible(True)
        self._canvas.draw_idle()

    def cancel(self) -> None:
        for worker in (self.worker, self.detail_worker):
            if worker is not None:
                worker.cancel()


def compare_with(window: Any, path_b: str | None = None, path_a: str | None = None) -> DiffView | None:
    """File ▸ Compare with…: the open file or folder (or one asked for) is A, the chosen one B (a file
    for a file, a folder for a folder, as `airlock diff` compares them)."""
    if path_a is None:
        path_a = _open_path(window)
    if path_a is None:
        path_a, _ = QFileDialog.getOpenFileName(window, "Compare: the reviewed model (A)")
        if not path_a:
            return None
    if path_b is None:
        title = f"Compare {safe_path(path_a, 60)} with… (B)"
        if os.path.isdir(path_a):
            path_b = QFileDialog.getExistingDirectory(window, title)
        else:
            path_b, _ = QFileDialog.getOpenFileName(window, title)
        if not path_b:
            return None
    if os.path.isdir(path_a) != os.path.isdir(path_b):
        window.notify("Compare with…", "Compare two files or two folders: "
                      f"{safe_path(path_a, 200)} and {safe_path(path_b, 200)} are one of each.")
        return None
    diff = DiffView(path_a, path_b)
    index = window.tabs.addTab(diff, window.windowIcon(), diff.name)
    window.tabs.setTabToolTip(index, f"{safe_path(path_a, 200)} ↔ {safe_path(path_b, 200)}")
    window.stack.setCurrentWidget(window.tabs)
    window.tabs.setCurrentWidget(diff)
    diff.start()
    return diff


def _open_path(window: Any) -> str | None:
    """The path of the current tab: a file's, or a folder tab's folder."""
    view = window.current_view()
    if view is not None:
        return str(view.path)
    from airlock.gui.provenance_view import FolderView

    widget = window.tabs.currentWidget()
    return str(widget.path) if isinstance(widget, FolderView) else None


def install(window: Any) -> None:
    """File ▸ Compare with… on the main window."""
    menus = [a.menu() for a in window.menuBar().actions() if a.menu() is not None]
    file_menu = menus[0] if menus else window.menuBar().addMenu("&File")
    action = QAction("Compare &with…", window)
    action.triggered.connect(lambda: compare_with(window))
    action.setStatusTip("Diff the open file (A, the reviewed model) against another (B)")
    close = next((a for a in file_menu.actions() if a.text().replace("&", "") == "Close Tab"), None)
    file_menu.insertAction(close, action)  # before Close Tab (appended when there is none)
    window.compare_action = action
