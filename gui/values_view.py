"""The Values tab: a tensor's values as a paged table, decoded in core from the file's bytes.

Three ways in: the first values (page by page through the whole tensor), an evenly spaced sample,
or a slice the user types (`0, :, 2:5`). Pages are decoded in a worker (airlock.core.values); the
table shows one page at a time, so a 100 GB tensor costs a page of reading. The tensor can also be
exported as a .npy file (airlock.core.convert.npy_export), streamed, in a worker.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QPoint, Qt
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from airlock.core.errors import AirlockError
from airlock.core.text import safe_text
from airlock.core.tree import Node
from airlock.gui import theme
from airlock.gui.workers import FunctionWorker, pool

if TYPE_CHECKING:
    from airlock.core.tensors import TensorData
    from airlock.core.values import Page
    from airlock.gui.file_view import FileView

AnyIndex = QModelIndex | QPersistentModelIndex
_NO_INDEX = QModelIndex()
SPIN_MAX = 2**31 - 1  # the largest row a QSpinBox can hold
MODES = (("first", "First values"), ("sample", "Evenly spaced sample"), ("slice", "Slice…"))


class PageModel(QAbstractTableModel):
    """One page of values; cells are formatted when shown, never all at once."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.page: Page | None = None

    def set_page(self, page: Page | None) -> None:
        self.beginResetModel()
        self.page = page
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = _NO_INDEX) -> int:
        return 0 if self.page is None or parent.isValid() else self.page.rows

    def columnCount(self, parent: AnyIndex = _NO_INDEX) -> int:
        return 0 if self.page is None or parent.isValid() else len(self.page.column_labels)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        page = self.page
        if page is None or not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            from airlock.core.values import format_value

            cols = len(page.column_labels)
            if 0 <= page.valid <= index.row() * cols + index.column():
                return ""  # past the tensor's end (or the file's)
            return format_value(page.values[index.row(), index.column()])
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        page = self.page
        if page is None or role != Qt.ItemDataRole.DisplayRole:
            return None
        labels = page.column_labels if orientation == Qt.Orientation.Horizontal else page.row_labels
        return labels[section] if 0 <= section < len(labels) else None


def _load(mode: str, read: Any, t: TensorData, start_row: int, text: str, file_size: int, *,
          progress: Any = None, cancelled: Any = None) -> Page:
    from airlock.core import values

    if mode == "sample":
        return values.sample_page(read, t, file_size=file_size)
    if mode == "slice":
        return values.slice_page(read, t, text)
    return values.first_page(read, t, start_row, file_size=file_size)


class ValuesView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.node: Node | None = None
        self.tensor: TensorData | None = None
        self.page: Page | None = None
        self._read: Any = None
        self._size = 0
        self._token = 0
        self.worker: FunctionWorker | None = None
        self.view: FileView | None = None  # for the export's source path

        self.mode = QComboBox()
        for key, label in MODES:
            self.mode.addItem(label, key)
        self.mode.setAccessibleName("Which values")
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.slice = QLineEdit(placeholderText="e.g. 0, :, 2:5 — Enter to show")
        self.slice.returnPressed.connect(self.reload)
        self.slice.setVisible(False)
        self.prev_button = QPushButton("◀")
        self.prev_button.setToolTip("Previous page")
        self.prev_button.clicked.connect(lambda: self.go_to_row(self._start() - self._per_page()))
        self.next_button = QPushButton("▶")
        self.next_button.setToolTip("Next page")
        self.next_button.clicked.connect(lambda: self.go_to_row(self._start() + self._per_page()))
        self.row_box = QSpinBox()
        self.row_box.setPrefix("row ")
        self.row_box.setKeyboardTracking(False)
        self.row_box.setAccessibleName("Go to row")
        self.row_box.valueChanged.connect(lambda row: self.go_to_row(row))
        self.export_button = QPushButton("Export .npy…")
        self.export_button.clicked.connect(self.export_dialog)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for widget in (self.mode, self.slice, self.prev_button, self.row_box, self.next_button):
            bar.addWidget(widget)
        bar.addStretch(1)
        bar.addWidget(self.export_button)
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setWordWrap(True)
        self.model = PageModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setFont(theme.monospace_font())
        self.table.setAccessibleName("Tensor values")
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setDefaultSectionSize(96)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._cell_menu)
        copy = QShortcut(QKeySequence.StandardKey.Copy, self.table)
        copy.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        copy.activated.connect(self.copy_selection)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        self.show_message("Select a tensor to see its values.")

    # What to show

    def show_message(self, text: str) -> None:
        self._cancel()
        self.tensor = None
        self.page = None
        self.model.set_page(None)
        self.status.setText(text)
        self._update_controls()

    def show_node(self, node: Node, read: Any, file_size: int) -> None:
        from airlock.core import values

        self.node = node
        self._read, self._size = read, file_size
        try:
            found = values.describe(node, read)
        except (AirlockError, OSError) as exc:  # the file shrank or went away since the scan
            found = f"the file cannot be read any more: {exc}"
        if isinstance(found, str):
            self.show_message(f"Values not available: {found}.")
            return
        self.tensor = found
        self.row_box.blockSignals(True)
        self.row_box.setValue(0)
        self.row_box.blockSignals(False)
        self.reload()

    def reload(self, start_row: int = 0) -> None:
        t = self.tensor
        if t is None:
            return
        self._cancel()
        mode = self.mode.currentData()
        if mode == "slice" and not self.slice.text().strip():
            self.model.set_page(None)
            self.status.setText(f"{self._describe(t)}\nType a slice (integers and start:stop, one per "
                                "dimension) and press Enter.")
            self._update_controls()
            return
        self._token += 1
        token = self._token
        self.status.setText(f"{self._describe(t)}\nReading…")
        worker = FunctionWorker(_load, mode, self._read, t, start_row, self.slice.text(), self._size)
        worker.signals.returned.connect(lambda page, k=token: self._loaded(k, page))
        worker.signals.errored.connect(lambda message, k=token: self._failed(k, message))
        self.worker = worker
        pool().start(worker)

    def go_to_row(self, row: int) -> None:
        if self.tensor is not None and self.mode.currentData() == "first":
            self.reload(max(0, row))

    def _cancel(self) -> None:
        self._token += 1
        if self.worker is not None:
            self.worker.cancel()
            self.worker = None

    def _loaded(self, token: int, page: Page) -> None:
        if token != self._token or self.tensor is None:
            return
        self.worker = None
        self.page = page
        self.model.set_page(page)
        self._fit_columns()
        lines = [self._describe(self.tensor)]
        if self.mode.currentData() == "first":
            last = page.start_row + page.rows - 1
            lines.append(f"rows {page.start_row:,}–{last:,} of {page.total_rows:,}")
        elif self.mode.currentData() == "sample":
            lines.append(f"{page.rows:,} values at evenly spaced positions (flat index, then index)")
        if page.note:
            lines.append(page.note)
        self.status.setText("\n".join(lines))
        self.row_box.blockSignals(True)
        # A spin box holds a C int: rows past 2**31 (a hostile shape) are reached with ▶, not typed.
        self.row_box.setMaximum(min(max(0, page.total_rows - 1), SPIN_MAX))
        self.row_box.setValue(min(page.start_row, SPIN_MAX))
        self.row_box.blockSignals(False)
        self._update_controls()

    def _fit_columns(self) -> None:
        """Every column as wide as the page's longest value (the font is monospaced, so the longest
        text is the widest): no value is cut, and short integers leave room for more columns."""
        page = self.page
        if page is None or not page.rows:
            return
        from airlock.core.values import format_value

        cols = len(page.column_labels)
        shown = page.values.ravel()[:page.valid] if page.valid >= 0 else page.values.ravel()
        longest = max((len(format_value(v)) for v in shown), default=1)
        label = max((len(c) for c in page.column_labels), default=1)
        metrics = self.table.fontMetrics()
        width = metrics.horizontalAdvance("0" * max(longest, label)) + 16  # the cell's margins
        header = self.table.horizontalHeader()
        for col in range(cols):
            header.resizeSection(col, width)

    def _failed(self, token: int, message: str) -> None:
        if token != self._token:
            return
        self.worker = None
        self.model.set_page(None)
        shown = re.sub(r"^\w+Error: ", "", message)
        self.status.setText(f"{self._describe(self.tensor) if self.tensor else ''}\n{safe_text(shown, 400)}")
        self._update_controls()

    def _describe(self, t: TensorData) -> str:
        shape = " × ".join(str(d) for d in t.shape) or "scalar"
        order = ""
        if self.node is not None and self.node.attrs.get("innermost_first"):
            order = " (row-major: the file lists its dimensions innermost first)"  # GGUF's 256 × 64
        return f"{t.dtype.code}  {shape}{order}  ({t.numel:,} values, from file offset {t.offset:,})"

    def _start(self) -> int:
        return self.page.start_row if self.page is not None else 0

    def _per_page(self) -> int:
        from airlock.core.values import rows_per_page

        return rows_per_page(self.tensor) if self.tensor is not None else 1

    def _mode_changed(self, _index: int) -> None:
        self.slice.setVisible(self.mode.currentData() == "slice")
        if self.mode.currentData() == "slice":
            self.slice.setFocus()
        self.reload()

    def _update_controls(self) -> None:
        paging = self.tensor is not None and self.mode.currentData() == "first" and self.page is not None
        start = self._start()
        total = self.page.total_rows if self.page is not None else 0
        self.prev_button.setEnabled(paging and start > 0)
        self.next_button.setEnabled(paging and start + (self.page.rows if self.page else 0) < total)
        self.row_box.setEnabled(paging)
        self.export_button.setEnabled(self.tensor is not None)

    # A cell's right-click menu: its value, index and bytes

    def cell_items(self, row: int, col: int) -> list[tuple[str, str]]:
        """(menu label, text to copy) for one cell: its value, index in the tensor and file offset."""
        from airlock.core import values

        t, page = self.tensor, self.page
        flat = values.cell_flat_index(page, row, col) if page is not None else None
        if t is None or page is None or flat is None:
            return []
        offset, length = values.value_span(t, flat)
        where = f"{offset}" if t.unit_elems == 1 else \
            f"{offset} (the {length}-byte block of {t.unit_elems} values that holds it)"
        index = "[" + ", ".join(map(str, values.value_index(t, flat))) + "]"
        return [("Copy Value", str(self.model.data(self.model.index(row, col)))),
                ("Copy Index", index), ("Copy Offset", where)]

    def copy_selection(self) -> str:
        """Copy the selected cells as text (tab between columns, a line per row); returns it."""
        cells = sorted((i.row(), i.column()) for i in self.table.selectionModel().selectedIndexes()) \
            if self.table.selectionModel() is not None else []
        lines: dict[int, list[str]] = {}
        for row, col in cells:
            lines.setdefault(row, []).append(str(self.model.data(self.model.index(row, col))))
        text = "\n".join("\t".join(line) for line in lines.values())
        if text:
            QGuiApplication.clipboard().setText(text)
        return text

    def build_cell_menu(self, row: int, col: int) -> QMenu:
        import functools

        menu = QMenu(self.table)
        items = self.cell_items(row, col)
        selected = self.table.selectionModel().selectedIndexes() if self.table.selectionModel() else []
        if len(selected) > 1:
            menu.addAction(f"Copy {len(selected):,} Selected Values", self.copy_selection)
        for label, text in items:
            menu.addAction(label, functools.partial(QGuiApplication.clipboard().setText, text))
        menu.addSeparator()
        show_hex = menu.addAction("Show in Hex", lambda: self.show_in_hex(row, col))
        show_hex.setEnabled(bool(items) and self.view is not None)
        export = menu.addAction("Export This Tensor as .npy…", self.export_dialog)
        export.setEnabled(self.tensor is not None)
        return menu

    def show_in_hex(self, row: int, col: int) -> bool:
        """Show the bytes of one cell's value (or of its GGML block) marked in the Hex tab."""
        from airlock.core import values
        from airlock.gui.details.pane import TAB_HEX

        t, page, view = self.tensor, self.page, self.view
        flat = values.cell_flat_index(page, row, col) if page is not None else None
        if t is None or flat is None or view is None:
            return False
        offset, length = values.value_span(t, flat)
        view.details.hex.show_at(offset, length)
        view.details.tabs.setCurrentIndex(TAB_HEX)
        return True

    def _cell_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if index.isValid():
            self.build_cell_menu(index.row(), index.column()).exec(self.table.viewport().mapToGlobal(pos))

    # Export

    def export_dialog(self) -> None:
        if self.node is None or self.tensor is None:
            return
        name = re.sub(r"[^\w.-]+", "_", self.tensor.name)[:80] or "tensor"
        folder = os.path.dirname(self.view.path) if self.view is not None else ""
        suggested = os.path.join(folder, name + ".npy")
        path, _ = QFileDialog.getSaveFileName(self, "Export tensor as .npy", suggested,
                                              "NumPy arrays (*.npy)")
        if path:
            self.export_to(path)

    def export_to(self, path: str) -> FunctionWorker | None:
        """Write the tensor to `path` in a worker; the status line says how it went."""
        from airlock.core.convert.npy_export import write_npy

        t = self.tensor
        if t is None:
            return None
        source = self.view.path if self.view is not None else None
        worker = FunctionWorker(write_npy, self._read, t, path, source_path=source, overwrite=True)
        worker.signals.progress.connect(lambda f, _m: self.status.setText(f"Exporting… {f:.0%}"))
        worker.signals.returned.connect(lambda n: self.status.setText(
            f"Exported {t.numel:,} values ({n:,} bytes) to {safe_text(path, 300)}"))
        worker.signals.errored.connect(lambda message: self._export_failed(message))
        pool().start(worker)
        return worker

    def _export_failed(self, message: str) -> None:
        self.status.setText(f"Export failed: {safe_text(message, 400)}")
        if self.isVisible():  # not modal: this runs from a worker's signal, nothing may block on it
            text = "The tensor could not be exported:\n" + safe_text(message, 400)
            box = QMessageBox(QMessageBox.Icon.Warning, "Airlock", text, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.setModal(False)
            box.show()


def can_export(node: Node) -> bool:
    return "shape" in node.attrs and node.attrs.get("dtype") is not None


def export_dialog(view: FileView, node: Node) -> None:
    """The tree's "Export This Tensor as .npy…": show the node's values, then ask where to write."""
    view.select_node(node)
    view.details.show_values()
    view.details.values.export_dialog()
