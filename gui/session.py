"""What the window remembers between runs (geometry, toolbars and docks, the panes' splitters) and
reloading a tab from disk. Everything is kept in QSettings under "window/"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QSplitter

from airlock.core.tree import Node

if TYPE_CHECKING:
    from airlock.gui.file_view import FileView
    from airlock.gui.main_window import MainWindow

GEOMETRY, STATE = "window/geometry", "window/state"
SPLITTERS = "window/splitters"  # one list of sizes per splitter of a file view, in splitters() order


def splitters(view: FileView) -> list[QSplitter]:
    """A file view's splitters, outermost first: findings below, tree beside details, details' two halves."""
    found = [view.splitter]
    top = view.details.parentWidget()
    if isinstance(top, QSplitter):
        found.append(top)
    found.append(view.details)
    return found


def save_window(window: MainWindow) -> None:
    settings = QSettings()
    settings.setValue(GEOMETRY, window.saveGeometry())
    settings.setValue(STATE, window.saveState())
    view = window.current_view()
    if view is not None:
        settings.setValue(SPLITTERS, [[int(s) for s in sp.sizes()] for sp in splitters(view)])


def restore_window(window: MainWindow) -> bool:
    """Put the window back where it was; False when nothing was saved (or it no longer applies)."""
    settings = QSettings()
    geometry, state = settings.value(GEOMETRY), settings.value(STATE)
    restored = False
    if isinstance(geometry, QByteArray | bytes) and geometry:
        restored = window.restoreGeometry(QByteArray(geometry))
    if isinstance(state, QByteArray | bytes) and state:
        window.restoreState(QByteArray(state))
    return restored


def saved_splitters() -> list[list[int]]:
    value: Any = QSettings().value(SPLITTERS)
    if not isinstance(value, list):
        return []
    out = []
    for sizes in value:
        if not isinstance(sizes, list):
            return []
        try:
            out.append([max(0, int(s)) for s in sizes])
        except (TypeError, ValueError):
            return []
    return out


def apply_splitters(view: FileView) -> None:
    """Give a new file view the pane sizes the user left the last one with."""
    for splitter, sizes in zip(splitters(view), saved_splitters(), strict=False):
        if len(sizes) == splitter.count() and sum(sizes) > 0:
            splitter.setSizes(sizes)


def node_trail(node: Node | None) -> list[tuple[int, str]]:
    """How to find a node again in a new tree of the same file: (index, label) from the root down."""
    trail = []
    while node is not None and node.parent is not None:
        trail.append((node.index, node.label))
        node = node.parent
    return list(reversed(trail))


def follow_trail(root: Node, trail: list[tuple[int, str]]) -> Node:
    """The deepest node along `trail` whose labels still match (the file may have changed)."""
    node = root
    for index, label in trail:
        if index >= node.child_count:
            break
        child = node.child_at(index)
        if child.label != label:
            break
        node = child
    return node


def reload_view(view: FileView) -> bool:
    """Scan the tab's file again from disk, keeping the selected node where it still exists."""
    if view.busy:
        return False
    trail = node_trail(view.current_node())

    def reselect(done: FileView) -> None:
        view.scan_finished.disconnect(reselect)
        if done.result is not None and trail:
            done.select_node(follow_trail(done.result.root, trail))

    view.scan_finished.connect(reselect)
    view.reload()
    return True
