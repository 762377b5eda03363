"""Computation graphs for the graph view: a model (model.py), sources kept on the tree by the
formats that have a graph (onnx_graph.py, torchscript_graph.py) and a layered layout (layout.py).

Nothing here runs during a scan except keeping an `OnnxGraphSource` on a tree node; building and
laying out a graph happens when a view asks, in its worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airlock.core.tree import FILE, GROUP, MEMBER, OPERATOR, Node

if TYPE_CHECKING:
    from airlock.core.graph.model import GraphSource

GRAPH_ATTR = "graph"
MAX_VISITED = 100_000  # tree nodes looked at when listing a file's graphs
_HOLDERS = frozenset({FILE, MEMBER, GROUP, OPERATOR})  # kinds that can hold a graph below them


def graph_sources(root: Node, limit: int = MAX_VISITED) -> list[GraphSource]:
    """The graphs kept on this tree (the model's first), from its loaded nodes only."""
    found: list[GraphSource] = []
    stack = [root]
    visited = 0
    while stack and visited < limit:
        node = stack.pop()
        visited += 1
        source = node.attrs.get(GRAPH_ATTR)
        if source is not None and hasattr(source, "build") and hasattr(source, "operator_count"):
            found.append(source)
        if node.kind in _HOLDERS and not node.is_lazy:
            stack.extend(reversed(node.children()))
    return found
