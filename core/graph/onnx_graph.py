"""An ONNX graph for the graph view, from the description the isolated parser returned.

The ONNX reader keeps one `OnnxGraphSource` on each graph's tree node (`attrs["graph"]`): the
graph's plain-data description (full tensor names, which the tree's operator nodes only preview)
and the tree groups its operators, inputs and initializers live in. `build()` turns it into a
`Graph` when the view asks: edges join each tensor's producer to its consumers, initializers
become rows of the boxes that read them, and boxes are marked for what the scan judged risky:
custom operator domains, Python operators, external data, trigger paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airlock.core.errors import Cancelled
from airlock.core.findings import Severity
from airlock.core.formats.onnx_checks import PYOP_DOMAIN, STANDARD_DOMAINS, dtype_name, outside_reason
from airlock.core.graph.model import (
    CUSTOM,
    EXTERNAL,
    INPUT,
    MAX_ROWS,
    OP,
    OUTPUT,
    PYTHON,
    SUBGRAPH,
    TRIGGER,
    Graph,
    GraphNode,
    category_of,
    search_text,
)
from airlock.core.text import safe_text
from airlock.core.tree import Node


class OnnxGraphSource:
    """One graph (the model's, a subgraph of If/Loop/Scan, a local function's body)."""

    __slots__ = ("desc", "initializers", "inputs", "local_functions", "nodes", "outputs", "roles",
                 "title", "trigger_severity")

    def __init__(self, title: str, desc: dict[str, Any], local_functions: set[tuple[str, str]]) -> None:
        self.title = title
        self.desc = desc  # {"nodes", "inputs", "outputs", "initializers", "sparse_initializers"}
        self.local_functions = local_functions
        self.nodes: Node | None = None  # the tree's "nodes (N)" group: operator i is its child i
        self.inputs: Node | None = None
        self.outputs: Node | None = None
        self.initializers: Node | None = None
        self.roles: dict[int, str] = {}  # operator index -> its part in a trigger (backdoor analysis)
        self.trigger_severity = Severity.HIGH

    def __str__(self) -> str:  # shown in the details pane's attribute table
        return f"{self.operator_count:,} operators: see the Graph tab"

    @property
    def operator_count(self) -> int:
        return len(self.desc.get("nodes", ()))

    def build(self, cancelled: Callable[[], bool] | None = None) -> Graph:
        return _Builder(self, cancelled).run()

    # Finding a box's element in the tree

    def locate(self, node: GraphNode) -> Node | None:
        if node.tree_ref is None:
            return None
        kind, index = node.tree_ref
        group = {OP: self.nodes, INPUT: self.inputs, OUTPUT: self.outputs}.get(kind)
        if group is None or not 0 <= index < group.child_count:
            return None
        return group.child_at(index)

    def index_of(self, graph: Graph, node: Node) -> int | None:
        for kind, group in ((OP, self.nodes), (INPUT, self.inputs), (OUTPUT, self.outputs)):
            if group is not None and node.parent is group:
                return graph.by_ref.get((kind, node.index))
        return None

    def locate_tensor(self, shown_name: str) -> Node | None:
        group = self.initializers
        if group is None:
            return None
        for i, tensor in enumerate(_initializers(self.desc)):
            if safe_text(tensor["name"], 120) == shown_name:
                return group.child_at(i) if i < group.child_count else None
        return None


def _initializers(desc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(desc.get("initializers", ())) + list(desc.get("sparse_initializers", ()))


def _shape(dims: Any) -> str:
    if not isinstance(dims, list | tuple):
        return ""
    return "×".join(safe_text(str(d), 20) for d in dims) or "scalar"


class _Builder:
    def __init__(self, source: OnnxGraphSource, cancelled: Callable[[], bool] | None) -> None:
        self.source = source
        self.cancelled = cancelled
        self.graph = Graph(source.title, source.locate, source.locate_tensor,
                           lambda node: source.index_of(self.graph, node))
        self.producer: dict[str, int] = {}
        self.inits = {t["name"]: t for t in _initializers(source.desc)}

    def poll(self, i: int) -> None:
        if i % 1024 == 0 and self.cancelled is not None and self.cancelled():
            raise Cancelled("graph building cancelled")

    def run(self) -> Graph:
        desc, graph = self.source.desc, self.graph
        for k, vi in enumerate(desc.get("inputs", ())):
            name = vi["name"] if isinstance(vi, dict) else vi
            if name in self.inits:
                continue  # older exporters list initializers among the inputs too
            box = GraphNode(INPUT, safe_text(name, 60) or "(unnamed)", category="input")
            box.tree_ref = (INPUT, k)
            if isinstance(vi, dict) and vi.get("dtype") is not None:
                box.name = f"{dtype_name(vi['dtype'])} ⟨{_shape(vi.get('shape'))}⟩"
            box.outputs = [safe_text(name, 120)]
            box.search_text = search_text(name, "input")
            self.producer.setdefault(name, graph.add(box))
        ops = desc.get("nodes", ())
        first_op = len(graph.nodes)
        for i, op in enumerate(ops):
            self.poll(i)
            graph.add(self.op_box(i, op))
            for name in op["outputs"]:
                if name:
                    self.producer.setdefault(name, first_op + i)
        for i, op in enumerate(ops):
            self.poll(i)
            self.connect(first_op + i, op)
        for k, vi in enumerate(desc.get("outputs", ())):
            name = vi["name"] if isinstance(vi, dict) else vi
            box = GraphNode(OUTPUT, safe_text(name, 60) or "(unnamed)", category="output")
            box.tree_ref = (OUTPUT, k)
            box.inputs = [(safe_text(name, 120), "graph output")]
            box.search_text = search_text(name, "output")
            index = graph.add(box)
            src = self.producer.get(name)
            if src is not None:
                graph.connect(src, index, safe_text(name, 120))
        graph.finish()
        return graph

    def op_box(self, i: int, op: dict[str, Any]) -> GraphNode:
        domain, op_type = op["domain"], op["op_type"]
        shown_domain = safe_text(domain, 60)
        title = safe_text(op_type, 60) or "(no type)"
        if domain not in ("", "ai.onnx"):
            title = f"{shown_domain}.{title}"
        box = GraphNode(OP, title, safe_text(op["name"], 60), category_of(op_type))
        box.tree_ref = (OP, i)
        box.outputs = [safe_text(x, 120) for x in op["outputs"] if x]
        box.search_text = search_text(op_type, domain, op["name"], *op["inputs"], *op["outputs"])
        for attr in op.get("attributes", ()):
            value = attr.get("value", "")
            box.attributes.append((safe_text(attr["name"], 60), safe_text(str(value), 200)))
            if attr.get("graphs"):
                box.flag(Severity.NONE, SUBGRAPH, f"holds {len(attr['graphs'])} subgraph(s) in "
                         f"attribute {safe_text(attr['name'], 40)} (listed under this operator in the tree)")
            for tensor in attr.get("tensors", ()):
                self.external(box, tensor)
        if domain not in STANDARD_DOMAINS and (domain, op_type) not in self.source.local_functions:
            if domain == PYOP_DOMAIN and op_type.startswith("Py"):
                box.flag(Severity.HIGH, PYTHON, "onnxruntime-extensions Python operator: runs Python code "
                         "registered by the loading process")
            else:
                box.flag(Severity.MEDIUM, CUSTOM, f"custom operator domain {shown_domain!r}: loading needs "
                         "a native library")
        role = self.source.roles.get(i)
        if role is not None:
            box.flag(self.source.trigger_severity, TRIGGER, f"on a trigger path: {safe_text(role, 200)}")
        return box

    def connect(self, index: int, op: dict[str, Any]) -> None:
        box = self.graph.nodes[index]
        seen: set[int] = set()
        rows: list[str] = []
        for name in op["inputs"]:
            if not name:
                continue  # an optional input left out
            shown = safe_text(name, 120)
            src = self.producer.get(name)
            if src is not None:
                where = self.graph.nodes[src]
                box.inputs.append((shown, f"from {where.title}" + (f" {where.name}" if where.name else "")))
                if src not in seen and src != index:
                    seen.add(src)
                    self.graph.connect(src, index, shown)
                continue
            tensor = self.inits.get(name)
            if tensor is not None:
                kind = f"initializer {dtype_name(tensor['dtype'])} ⟨{_shape(tensor['dims'])}⟩"
                box.inputs.append((shown, kind))
                rows.append(f"{safe_text(name, 40)} ⟨{_shape(tensor['dims'])}⟩")
                self.external(box, tensor)
            else:
                box.inputs.append((shown, "from an enclosing graph"))
        if len(rows) > MAX_ROWS:
            rows = [*rows[: MAX_ROWS - 1], f"… {len(rows) - MAX_ROWS + 1} more"]
        box.rows = rows

    def external(self, box: GraphNode, tensor: dict[str, Any]) -> None:
        if tensor.get("location") != "external":
            return
        name = safe_text(tensor["name"], 60)
        locations = [value for key, value in tensor.get("external", ()) if key == "location"]
        for location in locations or [""]:
            problem = outside_reason(location)
            if problem is not None:
                box.flag(Severity.CRITICAL, EXTERNAL, f"reads external data for {name!r} from "
                         f"{safe_text(location, 120)!r}: {problem}")
            else:
                box.flag(Severity.INFO, EXTERNAL, f"reads {name!r} from external file "
                         f"{safe_text(location, 120)!r}")
