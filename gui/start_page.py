"""The start page, shown while no file is open: open buttons, the samples, recent files and
folders (kept in QSettings by the main window), a drop target and the formats Airlock reads."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, QSize, Qt
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDragMoveEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QScrollArea,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from airlock.core.text import safe_text
from airlock.gui import theme

if TYPE_CHECKING:
    from airlock.gui.main_window import MainWindow

PATH_ROLE = Qt.ItemDataRole.UserRole + 1
# Formats as users name them (the registry's names are short ids). Modules not listed here still
# appear, under their id, so a new reader shows up without an edit here.
FRIENDLY = {
    "torch_zip": "PyTorch checkpoint (zip)", "pickle": "Pickle",
    "torch_legacy": "PyTorch legacy / tar checkpoint", "torchscript": "TorchScript",
    "safetensors": "SafeTensors", "safetensors-index": "Sharded SafeTensors index", "gguf": "GGUF",
    "onnx": "ONNX (with a graph view)", "keras": "Keras (.keras, HDF5)", "npy": "NumPy .npy",
    "npz": "NumPy .npz", "joblib": "joblib", "json": "Hugging Face configs", "yaml": "YAML / Hydra configs",
    "chat_template": "Chat templates (Jinja)", "nemo": "NeMo archives", "7z": "7z archives",
    "tar": "tar archives", "zip": "zip archives", "python": "Python code", "notebook": "Jupyter notebooks",
    "compressed": "gzip / bz2 / xz / lz4 wrapped files",
    "pt2": "torch.export (.pt2)", "tflite": "TensorFlow Lite", "executorch": "ExecuTorch (.pte)",
    "saved_model": "TF SavedModel", "skops": "skops", "msgpack": "Flax / msgpack checkpoints",
    "gbdt": "XGBoost / LightGBM", "catboost": "CatBoost", "openvino": "OpenVINO IR", "coreml": "Core ML",
    "ort": "onnxruntime .ort (with a graph view)", "tf_checkpoint": "TensorFlow checkpoints",
}
HIDDEN_FORMATS = frozenset({"inert"})  # names for what is not a model format


def supported_formats() -> list[tuple[str, str]]:
    """(name, usual extensions) for every reader in the format registry, in its order."""
    from airlock.core.formats import load_all_modules

    order = list(FRIENDLY)
    modules = [m for m in load_all_modules() if m.NAME not in HIDDEN_FORMATS]
    modules.sort(key=lambda m: order.index(m.NAME) if m.NAME in order else len(order))
    # ALSO_NAMED: names a format is often saved under though they say nothing by themselves (.xml).
    return [(FRIENDLY.get(m.NAME, m.NAME),
             " ".join(dict.fromkeys((*getattr(m, "EXTENSIONS", ()), *getattr(m, "ALSO_NAMED", ())))))
            for m in modules]


class _WrappingDelegate(QStyledItemDelegate):
    """Row heights for text wrapped in its column's width: QTreeView's own size hint measures the
    text on one line, so wrapped extensions would be cut to their first line."""

    MARGIN = 12  # the style's text margins on both sides, and a little room

    def __init__(self, tree: QTreeWidget) -> None:
        super().__init__(tree)
        self.tree = tree

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        base = super().sizeHint(option, index)
        if index.column() == 0:  # the names: their column is sized to them
            return base
        width = max(self.tree.columnWidth(index.column()) - self.MARGIN, 20)
        text = str(index.data() or "")
        needed = option.fontMetrics.boundingRect(0, 0, width, 1 << 20, int(Qt.TextFlag.TextWordWrap), text)
        return QSize(base.width(), max(base.height(), needed.height() + 2))


class DropFrame(QFrame):
    """The drop target: a dashed frame that lights up while something is dragged over the page."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("drop_frame")
        self.label = QLabel("Drop model files or folders here — or anywhere in this window.\n"
                            "They are read, never loaded: nothing in them runs.")
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 22, 18, 22)
        layout.addWidget(self.label)
        self.set_active(False)

    def set_active(self, active: bool) -> None:
        colour = "#3b82f6" if active else "palette(mid)"
        background = "rgba(59, 130, 246, 40)" if active else "transparent"
        self.setStyleSheet(f"QFrame#drop_frame {{ border: 2px dashed {colour}; border-radius: 10px; "
                           f"background: {background}; }}")


class StartPage(QScrollArea):
    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.window_ = window
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAcceptDrops(True)
        self.setAccessibleName("Start page")

        title = QLabel("Airlock")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 2.2)
        font.setBold(True)
        title.setFont(font)
        icon = QLabel()
        icon.setPixmap(theme.app_icon().pixmap(QSize(56, 56)))
        tagline = QLabel("Look inside machine-learning model files before anything loads them. "
                         "Nothing you open is ever executed.")
        tagline.setWordWrap(True)
        head = QHBoxLayout()
        head.addWidget(icon)
        words = QVBoxLayout()
        words.addWidget(title)
        words.addWidget(tagline)
        head.addLayout(words, 1)

        style = self.style()
        self.open_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton),
                                       "Open Files…")
        self.open_button.clicked.connect(window.open_dialog)
        self.folder_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon),
                                         "Open Folder…")
        self.folder_button.clicked.connect(window.open_folder_dialog)
        self.samples_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_FileDialogContentsView),
                                          "Open Samples")
        self.samples_button.setToolTip(
            "Writes a few sample files made by Airlock (a clean checkpoint, a hostile pickle, a GGUF model "
            "with a hostile chat template, a SafeTensors file, an ONNX graph) into a temporary folder and "
            "opens them")
        self.samples_button.clicked.connect(self.open_samples)
        buttons = QHBoxLayout()
        for button in (self.open_button, self.folder_button, self.samples_button):
            button.setMinimumHeight(34)
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.recent = QListWidget()
        self.recent.setAccessibleName("Recent files and folders")
        # A long folder is shortened in its middle (its name and its end stay); the tooltip has it all.
        self.recent.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.recent.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.recent.itemActivated.connect(self._recent_activated)
        self.recent.itemClicked.connect(self._recent_activated)
        self.recent.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.recent.customContextMenuRequested.connect(self._recent_menu)
        self.clear_recent = QPushButton("Clear")
        self.clear_recent.setFlat(True)
        self.clear_recent.clicked.connect(self._clear_recent)
        recent_head = QHBoxLayout()
        recent_head.addWidget(_heading("Recent files and folders"), 1)
        recent_head.addWidget(self.clear_recent)
        self.formats = QTreeWidget()
        self.formats.setAccessibleName("Formats Airlock reads")
        self.formats.setHeaderLabels(["Format", "Usual extensions"])
        self.formats.setRootIsDecorated(False)
        self.formats.setSelectionMode(QTreeWidget.SelectionMode.NoSelection)
        self.formats.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        # Extensions wrap onto more lines rather than end in "…": every one is readable at any width.
        self.formats.setWordWrap(True)
        self.formats.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.formats.setItemDelegate(_WrappingDelegate(self.formats))
        self.formats.header().setStretchLastSection(True)
        # Row heights follow the column's width (a wider window: fewer wrapped lines).
        self.formats.header().sectionResized.connect(lambda *_: self.formats.scheduleDelayedItemsLayout())
        for name, extensions in supported_formats():
            item = QTreeWidgetItem(self.formats, [name, extensions])
            item.setToolTip(1, extensions)
        self.formats.resizeColumnToContents(0)
        columns = QGridLayout()
        columns.addLayout(recent_head, 0, 0)
        columns.addWidget(_heading("Formats Airlock reads (by content, whatever the name)"), 0, 1)
        columns.addWidget(self.recent, 1, 0)
        columns.addWidget(self.formats, 1, 1)
        columns.setColumnStretch(0, 1)
        columns.setColumnStretch(1, 1)
        columns.setRowStretch(1, 1)

        self.drop = DropFrame()
        body = QWidget()
        body.setMaximumWidth(1100)
        inner = QVBoxLayout(body)
        inner.setSpacing(14)
        inner.addLayout(head)
        inner.addLayout(buttons)
        inner.addWidget(self.drop)
        inner.addLayout(columns, 1)
        page = QWidget()
        outer = QHBoxLayout(page)
        outer.setContentsMargins(24, 24, 24, 24)
        outer.addStretch(1)
        outer.addWidget(body, 8)
        outer.addStretch(1)
        self.setWidget(page)
        self.refresh()

    # Recent files

    def refresh(self) -> None:
        """Fill the recent list again from the settings; entries that are gone are shown, greyed."""
        self.recent.clear()
        paths = self.window_.recent()
        for path in paths:
            folder = os.path.isdir(path)
            exists = folder or os.path.exists(path)
            kind = QStyle.StandardPixmap.SP_DirIcon if folder else QStyle.StandardPixmap.SP_FileIcon
            name = os.path.basename(path.rstrip(os.sep)) or path
            text = f"{safe_text(name, 80)}    {safe_text(os.path.dirname(path), 160)}"
            text += "" if exists else "    (missing)"
            item = QListWidgetItem(self.style().standardIcon(kind), text)
            item.setData(PATH_ROLE, path)
            item.setToolTip(safe_text(path, 400))
            if not exists:
                item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent.addItem(item)
        if not paths:
            item = QListWidgetItem("Files and folders you open appear here.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent.addItem(item)
        self.clear_recent.setEnabled(bool(paths))

    def _recent_activated(self, item: QListWidgetItem) -> None:
        path = item.data(PATH_ROLE)
        if isinstance(path, str) and os.path.exists(path):
            self.window_.open_paths([path])

    def recent_menu(self, item: QListWidgetItem) -> QMenu | None:
        """Right-click on a recent entry: open it, or copy its path."""
        path = item.data(PATH_ROLE)
        if not isinstance(path, str):
            return None
        menu = QMenu(self.recent)
        opened = menu.addAction("Open", lambda: self._recent_activated(item))
        opened.setEnabled(os.path.exists(path))
        menu.addAction("Copy Path", lambda: QGuiApplication.clipboard().setText(path))
        return menu

    def _recent_menu(self, pos: QPoint) -> None:
        item = self.recent.itemAt(pos)
        menu = self.recent_menu(item) if item is not None else None
        if menu is not None:
            menu.exec(self.recent.viewport().mapToGlobal(pos))

    def _clear_recent(self) -> None:
        self.window_.clear_recent()
        self.refresh()

    def open_samples(self) -> list[str]:
        from airlock.gui.demo import write_demo_files

        paths = write_demo_files()
        self.window_.open_paths(paths)
        return paths

    def showEvent(self, event: object) -> None:
        self.refresh()
        super().showEvent(event)  # type: ignore[arg-type]

    # Dropping

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            self.drop.set_active(True)
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self.drop.set_active(False)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.drop.set_active(False)
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.window_.open_paths(paths)


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label
