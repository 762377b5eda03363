"""A model's computation graph as the graph view draws it: operators as boxes, tensors as edges.

Built from a format's own description (ONNX: core/graph/onnx_graph.py; TorchScript:
core/graph/torchscript_graph.py) when the view asks, never during a scan. Every string here is
already escaped (`safe_text`): the view paints them as they are. Constant inputs (ONNX
initializers) are rows inside the box that reads them, as Netron shows them, not nodes of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from airlock.core.findings import Severity
from airlock.core.tree import Node

OP, INPUT, OUTPUT = "op", "input", "output"

# Marks: why a box is highlighted, besides its severity.
CUSTOM = "custom operator"
PYTHON = "python operator"
EXTERNAL = "external data"
TRIGGER = "trigger path"
SUBGRAPH = "subgraph"

MAX_ROWS = 6  # constant inputs listed in a box; the rest are counted
MIN_WIDTH, MAX_WIDTH = 84.0, 300.0
PAD_X, PAD_Y = 12.0, 6.0


class GraphNode:
    __slots__ = (
        "attributes",
        "category",
        "inputs",
        "kind",
        "marks",
        "name",
        "outputs",
        "reasons",
        "rows",
        "search_text",
        "severity",
        "title",
        "tree_ref",
    )

    def __init__(self, kind: str, title: str, name: str = "", category: str = "") -> None:
        self.kind = kind
        self.title = title  # operator type, or the input's / output's name
        self.name = name  # the operator's own name, if any
        self.category = category  # drives the header colour (see category_of)
        self.rows: list[str] = []  # constant inputs shown inside the box
        self.inputs: list[tuple[str, str]] = []  # (tensor, where it comes from) for the details
        self.outputs: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.severity = Severity.NONE
        self.marks: set[str] = set()
        self.reasons: list[str] = []
        self.tree_ref: tuple[str, int] | None = None  # what the owning source can locate in the tree
        self.search_text = ""  # casefolded: type, name, tensor names

    def flag(self, severity: Severity, mark: str | None, reason: str) -> None:
        if severity > self.severity:
            self.severity = severity
        if mark is not None:
            self.marks.add(mark)
        if reason not in self.reasons:
            self.reasons.append(reason)


class Graph:
    """Nodes and edges, plus how to find a node's element in the file's tree."""

    def __init__(self, title: str, locate: Callable[[GraphNode], Node | None] | None = None,
                 locate_tensor: Callable[[str], Node | None] | None = None,
                 index_of: Callable[[Node], int | None] | None = None) -> None:
        self.title = title
        self.nodes: list[GraphNode] = []
        self.edges: list[tuple[int, int]] = []
        self.edge_names: list[str] = []  # the tensor each edge carries (escaped)
        self.edge_marks: list[bool] = []  # True when both ends are on a trigger path
        self.note = ""  # what the builder left out, said in the view
        self.by_ref: dict[tuple[str, int], int] = {}  # tree_ref -> box index, for tree-to-graph jumps
        self._locate = locate
        self._locate_tensor = locate_tensor
        self._index_of = index_of

    def add(self, node: GraphNode) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def connect(self, src: int, dst: int, name: str) -> None:
        self.edges.append((src, dst))
        self.edge_names.append(name)
        self.edge_marks.append(False)

    def finish(self) -> None:
        """Mark edges inside a trigger path, so the view can draw the whole path highlighted."""
        nodes = self.nodes
        self.edge_marks = [TRIGGER in nodes[a].marks and TRIGGER in nodes[b].marks for a, b in self.edges]
        self.by_ref = {n.tree_ref: i for i, n in enumerate(nodes) if n.tree_ref is not None}

    def locate(self, node: GraphNode) -> Node | None:
        """The tree node for a box (an operator, a graph input or output), if the tree has one."""
        return self._locate(node) if self._locate is not None else None

    def index_of(self, tree_node: Node) -> int | None:
        """The box of a tree node (an operator, a graph input or output), if it is in this graph."""
        return self._index_of(tree_node) if self._index_of is not None else None

    def locate_tensor(self, name: str) -> Node | None:
        """The tree node of a constant input (an initializer), by its escaped name."""
        return self._locate_tensor(name) if self._locate_tensor is not None else None

    def search(self, text: str) -> list[int]:
        needle = text.strip().casefold()
        if not needle:
            return []
        return [i for i, n in enumerate(self.nodes) if needle in n.search_text]

    def risky(self, at_least: Severity = Severity.LOW) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.severity >= at_least or n.marks & {TRIGGER, CUSTOM,
                                                                                           PYTHON, EXTERNAL}]


class GraphSource(Protocol):
    """What a format keeps on a tree node (attrs["graph"]) so that a view can build the graph later."""

    title: str

    @property
    def operator_count(self) -> int: ...

    def build(self, cancelled: Callable[[], bool] | None = None) -> Graph: ...


def box_size(node: GraphNode, char_width: float, line_height: float) -> tuple[float, float]:
    """A box's size for text of the given metrics: a header line (type), the name, constant rows."""
    lines = [node.title]
    if node.name:
        lines.append(node.name)
    lines.extend(node.rows)
    widest = max(len(line) for line in lines) * char_width + 2 * PAD_X
    width = min(MAX_WIDTH, max(MIN_WIDTH, widest))
    height = len(lines) * line_height + 2 * PAD_Y
    return width, height


# Operator categories, for colours (Netron's grouping, by ONNX operator type).
_CATEGORIES: dict[str, tuple[str, ...]] = {
    "layer": ("Conv", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger", "QLinearConv", "QLinearMatMul",
              "ConvInteger", "LSTM", "GRU", "RNN", "Attention", "Einsum", "linear", "conv"),
    "activation": ("Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Gelu",
                   "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus", "Mish", "relu", "gelu", "silu",
                   "sigmoid", "tanh", "softmax"),
    "pool": ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "pool"),
    "normalization": ("BatchNormalization", "LayerNormalization", "InstanceNormalization",
                      "GroupNormalization", "LpNormalization", "norm"),
    "shape": ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
              "Gather", "GatherElements", "Shape", "Expand", "Tile", "Pad", "view", "reshape", "cat"),
    "control": ("If", "Loop", "Scan", "Where"),
    "constant": ("Constant", "ConstantOfShape"),
}
_BY_TYPE = {op: category for category, ops in _CATEGORIES.items() for op in ops}


def category_of(op_type: str) -> str:
    found = _BY_TYPE.get(op_type)
    if found is not None:
        return found
    low = op_type.casefold()
    for key in ("conv", "linear", "norm", "pool"):
        if key in low:
            return {"conv": "layer", "linear": "layer", "norm": "normalization", "pool": "pool"}[key]
    return ""


def search_text(*parts: Any) -> str:
    return "\n".join(str(p)[:200] for p in parts if p).casefold()
