"""Files that change on disk after they were read: the window watches them and the tab says so.

A tab shows a file as it was when Airlock read it. If the file is then rewritten, truncated, replaced
or deleted, the tab turns stale: a bar says "changed on disk" with a Reload button, and the tab stops
reading the file (no hex, no statistics, no expanding lists that would read it: a mapped file that
shrank is not safe to touch). Reload analyses it again (MainWindow.reload_current_tab).

QFileSystemWatcher reports changes; a file replaced by a rename stops being watched, so it is watched
again. Tabs also compare the file's size and modification time when they become current, for
platforms or file systems where the watcher says nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from PySide6.QtCore import QFileSystemWatcher, QObject, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from airlock.core.text import human_size, safe_text

Stamp = tuple[int, int] | None  # (size, mtime in ns) of a file, None when it cannot be read


def stamp_of(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def describe_change(before: Stamp, after: Stamp) -> str | None:
    """None when nothing changed; else what did, in words."""
    if before == after:
        return None
    if after is None:
        return "it was deleted or can no longer be read"
    if before is None:
        return "it can be read again"
    (old_size, _), (new_size, _) = before, after
    if new_size < old_size:
        return f"it was truncated ({human_size(old_size)} → {human_size(new_size)})"
    if new_size > old_size:
        return f"it grew ({human_size(old_size)} → {human_size(new_size)})"
    return "it was rewritten (same size, new modification time)"


class StaleBar(QFrame):
    """ "Changed on disk — …  [Reload]", above a stale tab's contents."""

    reload_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("stale")
        self.setStyleSheet("QFrame#stale { background: #64748b; border-radius: 4px; }"
                           "QFrame#stale QLabel { color: white; }")
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setWordWrap(True)
        self.button = QPushButton("Reload")
        self.button.clicked.connect(self.reload_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 6, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)
        self.setVisible(False)

    def show_change(self, path: str, change: str) -> None:
        name = safe_text(os.path.basename(path), 120)
        self.label.setText(f"Changed on disk — {change}: {name}. This tab shows the file as it was read, "
                           "and no longer reads it. Reload to analyse it again.")
        self.setVisible(True)


class DiskWatch(QObject):
    """The window's watcher: `changed(path)` for a watched file that changed, was replaced or vanished."""

    changed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.watcher = QFileSystemWatcher(self)
        self.watcher.fileChanged.connect(self._file_changed)

    def watch(self, path: str) -> None:
        if os.path.isfile(path) and path not in self.watcher.files():
            self.watcher.addPath(path)

    def forget(self, path: str, still_open: Callable[[str], bool]) -> None:
        if not still_open(path) and path in self.watcher.files():
            self.watcher.removePath(path)

    def _file_changed(self, path: str) -> None:
        self.watch(path)  # replaced by a rename: the watcher dropped it; a new file is watched again
        self.changed.emit(path)
