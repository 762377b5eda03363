"""Computation graphs for the graph view: a model (model.py), sources kept on the tree by the
formats that have a graph (onnx_graph.py, torchscript_graph.py) and a layered layout (layout.py).

Nothing here runs during a scan except keeping an `OnnxGraphSource` on a tree node; building and
laying out a graph happens when a view asks, in its worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
    found.sort(key=lambda s: getattr(s, "rank", 0))  # a format's main graph first
    return found


MAX_OPERATORS = 100_000  # larger graphs are listed in the tree, not drawn


class LaidOut:
    """A built graph, its boxes' sizes and its layout: what the graph view's worker returns."""

    __slots__ = ("graph", "layout", "seconds", "sizes")

    def __init__(self, graph: Any, layout: Any, sizes: list[tuple[float, float]], seconds: float) -> None:
        self.graph = graph
        self.layout = layout
        self.sizes = sizes
        self.seconds = seconds  # building and laying out


def build_and_lay_out(source: GraphSource, char_width: float, line_height: float,
                      cancelled: Callable[[], bool] | None = None) -> LaidOut:
    """Build `source`'s graph and lay it out (in a worker: this is the slow part of the view)."""
    import time

    from airlock.core.graph.layout import layered_layout
    from airlock.core.graph.model import box_size

    if source.operator_count > MAX_OPERATORS:
        raise ValueError(f"the graph has {source.operator_count:,} operators; the graph view draws at most "
                         f"{MAX_OPERATORS:,} (the tree lists them all)")
    start = time.perf_counter()
    graph = source.build(cancelled)
    sizes = [box_size(n, char_width, line_height) for n in graph.nodes]
    layout = layered_layout(len(graph.nodes), graph.edges, [w for w, _ in sizes], [h for _, h in sizes],
                            cancelled=cancelled)
    return LaidOut(graph, layout, sizes, time.perf_counter() - start)
