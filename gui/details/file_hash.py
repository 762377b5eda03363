"""The opened file's SHA-256 and size, at the top of the details pane.

Hashing reads every byte, so it never runs on the GUI thread and never starts by itself for a
large file: small files (up to AUTO_HASH_BYTES) are hashed at once in a worker; larger ones wait for
"Compute SHA-256", with progress and Cancel. The digest comes from core
(airlock.core.provenance.hashing.sha256_file, the function `airlock hash` uses) and can be copied.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from airlock.core.text import human_size, safe_text
from airlock.gui.workers import FunctionWorker, pool

AUTO_HASH_BYTES = 64 * 1024 * 1024  # a fraction of a second to read; larger files wait for the user


def hash_with_progress(path: str, total: int | None, *, progress: Callable[[float, str], None],
                       cancelled: Callable[[], bool]) -> tuple[str, int] | None:
    """(sha256, size) of the file as read now, or None when cancelled. Runs in a worker."""
    from airlock.core.errors import Cancelled
    from airlock.core.provenance.hashing import sha256_file

    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if total:
            progress(min(done / total, 1.0), "")

    try:
        return sha256_file(path, progress=step, cancelled=cancelled)
    except Cancelled:
        return None


class FileHashBar(QWidget):
    """SHA-256 · size · [Compute SHA-256] [Cancel] [Copy], for one file at a time."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("File hash")
        self.path: str | None = None
        self.file_size: int | None = None
        self.sha256: str | None = None
        self.worker: FunctionWorker | None = None
        self.label = QLabel()  # the digest: a line of its own, selectable, never wrapped mid-digest
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.note = QLabel()  # size, or what is happening
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        self.note.setWordWrap(True)
        self.compute_button = QPushButton("Compute SHA-256")
        self.compute_button.clicked.connect(self.compute)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the SHA-256 to the clipboard")
        self.copy_button.clicked.connect(self.copy)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(160)
        row = QHBoxLayout()
        row.addWidget(self.note, 1)
        for widget in (self.progress, self.compute_button, self.cancel_button, self.copy_button):
            row.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.label)
        layout.addLayout(row)
        self.setMinimumHeight(self.sizeHint().height())  # the splitter must not squeeze it away
        self.set_file(None, None)

    def set_file(self, path: str | None, size: int | None, known: tuple[str, int] | None = None) -> None:
        """Show `path`: its known digest, or hash it now if it is small, or offer to."""
        self.cancel()
        self.worker = None
        self.path, self.file_size, self.sha256 = path, size, None
        if path is None:
            self._show("no file", busy=False)
            self.compute_button.setVisible(False)
            return
        if known is not None:
            self._hashed(known)
        elif size is not None and size <= AUTO_HASH_BYTES:
            self.compute()
        else:
            what = human_size(size) if size is not None else "an unknown size"
            self._show(f"not computed: it reads the whole file ({what})", busy=False)

    def compute(self) -> None:
        if self.path is None or self.worker is not None:
            return
        worker = FunctionWorker(hash_with_progress, self.path, self.file_size)
        # Bound methods (not lambdas): Qt drops the connections when this widget goes away.
        worker.signals.progress.connect(self._progress)
        worker.signals.returned.connect(self._returned)
        worker.signals.errored.connect(self._errored)
        self.worker = worker
        self.progress.setValue(0)
        self._show("reading the whole file…", busy=True)
        pool().start(worker)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def copy(self) -> None:
        if self.sha256 is not None:
            QGuiApplication.clipboard().setText(self.sha256)

    # Results arrive from the worker; one for a file no longer shown is dropped.

    def _current(self) -> bool:
        return self.worker is not None and self.sender() is self.worker.signals

    def _progress(self, fraction: float, _message: str) -> None:
        if self._current():
            self.progress.setValue(int(fraction * 1000))

    def _returned(self, result: tuple[str, int] | None) -> None:
        if not self._current():
            return
        self.worker = None
        if result is None:
            self._show("cancelled, not computed", busy=False)
        else:
            self._hashed(result)

    def _errored(self, message: str) -> None:
        if self._current():
            self.worker = None
            self._show(f"the file cannot be read: {safe_text(message, 300)}", busy=False)

    def _hashed(self, result: tuple[str, int]) -> None:
        digest, size = result
        self.sha256 = digest
        text = f"{size:,} bytes ({human_size(size)})"
        if self.file_size is not None and size != self.file_size:
            text += f" · the file changed since the scan ({self.file_size:,} bytes then)"
        self._show(text, busy=False)
        self.compute_button.setVisible(False)

    def _show(self, text: str, *, busy: bool) -> None:
        self.label.setText(f"SHA-256 {self.sha256}" if self.sha256 is not None else "SHA-256")
        self.note.setText(text)
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.compute_button.setVisible(not busy and self.path is not None)
        self.copy_button.setVisible(self.sha256 is not None and not busy)
