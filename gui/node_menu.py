"""Right-click menus on tree nodes (and graph boxes): copy what a node says, show its bytes, open it
elsewhere. Everything copied is the node's escaped text, never raw bytes from the file."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMenu, QWidget

from airlock.core.tree import Node
from airlock.gui.tree_model import NODE_ROLE, shape_text

if TYPE_CHECKING:
    from airlock.gui.file_view import FileView

VALUE_KEYS = ("value", "preview", "repr")  # attributes that hold a node's value, best first


def install(view: FileView) -> None:
    """Give the file view's tree its context menu."""
    tree = view.tree
    tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    tree.customContextMenuRequested.connect(lambda pos: _tree_menu(view, pos))


def _tree_menu(view: FileView, pos: QPoint) -> None:
    index = view.tree.indexAt(pos)
    node = index.data(NODE_ROLE) if index.isValid() else None
    if isinstance(node, Node):
        menu = build_menu(view, node, view.tree)
        menu.exec(view.tree.viewport().mapToGlobal(pos))


def copy_text(text: str) -> None:
    QGuiApplication.clipboard().setText(text)


def value_of(node: Node) -> str | None:
    for key in VALUE_KEYS:
        value = node.attrs.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def offset_of(node: Node) -> str | None:
    if node.offset is None:
        return None
    text = f"{node.offset}"
    return f"{text} (in member {node.member})" if node.member else text


def copy_items(node: Node) -> list[tuple[str, str]]:
    """(menu label, text to copy) for what this node has."""
    items = [("Copy Name", node.label)]
    if "shape" in node.attrs:
        items.append(("Copy Shape", shape_text(node.attrs["shape"])))
    value = value_of(node)
    if value is not None:
        items.append(("Copy Value", value))
    offset = offset_of(node)
    if offset is not None:
        items.append(("Copy Offset", offset))
    items.append(("Copy Path", node.path()))
    return items


def build_menu(view: FileView, node: Node, parent: QWidget,
               extra: list[tuple[str, Callable[[], Any]]] | None = None) -> QMenu:
    menu = QMenu(parent)
    for label, text in copy_items(node):
        menu.addAction(label, functools.partial(copy_text, text))
    menu.addSeparator()
    show_hex = menu.addAction("Show in Hex", lambda: show_in_hex(view, node))
    show_hex.setEnabled(node.offset is not None)
    graph = getattr(view, "graph_view", None)
    if graph is not None and graph.can_show(node):
        menu.addAction("Show in Graph", lambda: graph.show_tree_node(node))
    from airlock.gui import values_view

    if values_view.can_export(node):
        menu.addAction("Export This Tensor as .npy…", lambda: values_view.export_dialog(view, node))
    for label, action in extra or []:
        menu.addAction(label, action)
    return menu


def show_in_hex(view: FileView, node: Node) -> None:
    from airlock.gui.details.pane import TAB_HEX

    view.select_node(node)
    view.details.tabs.setCurrentIndex(TAB_HEX)
