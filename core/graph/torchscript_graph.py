"""A TorchScript module's forward() as a graph, from the archive's code/ text (never from torch).

A TorchScript archive stores no graph, only code: each module class's `forward` in TorchScript's
Python subset (`_0 = (conv).forward(x, )`, `input = torch.relu(_0)`). The text is read with the
code reader's `ast.parse` (a syntax tree, never code) when the view asks, and its data flow becomes
the graph: each call is a box (a submodule's forward is named after the submodule's class), names
carry edges from the call that assigned them, forward's parameters are inputs and what it returns
the output. Control flow is followed in order (both branches of an `if` feed what comes after), so
a scripted model's graph is an approximation; a traced one is exact. Calls the scan judged risky
(TS002, custom `ops.` namespaces) are marked.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

from airlock.core.errors import Cancelled
from airlock.core.findings import Severity
from airlock.core.formats.torch_rules import STANDARD_NAMESPACES
from airlock.core.graph.model import (
    CUSTOM,
    INPUT,
    OP,
    OUTPUT,
    TRIGGER,
    Graph,
    GraphNode,
    category_of,
    search_text,
)
from airlock.core.text import safe_text
from airlock.core.tree import Node

_CLASS = re.compile(r"^class\s+(\w+)\s*\(", re.MULTILINE)
_FORWARD = re.compile(r"^\s+def\s+forward\s*\(", re.MULTILINE)
_CALLS = re.compile(r"\w\s*\(")
_FINDING_LINE = re.compile(r"\bline (\d+)\b")
MAX_ARG_ROWS = 3
Source = tuple[int, ...]  # the boxes a value comes from


class TorchScriptGraphSource:
    """One code file's module class: its forward() is built into a graph on demand."""

    __slots__ = ("node", "rank", "title")

    def __init__(self, title: str, node: Node, rank: int) -> None:
        self.title = title
        self.node = node  # the code/ file's tree node; its "text" attribute holds the code
        self.rank = rank  # 0 for the archive's top module, listed first

    def __str__(self) -> str:
        return f"forward() of {self.title}: see the Graph tab"

    @property
    def operator_count(self) -> int:
        """Calls in the file's text: an upper estimate until the graph is built."""
        return len(_CALLS.findall(self.node.attrs.get("text", "")))

    def build(self, cancelled: Callable[[], bool] | None = None) -> Graph:
        from airlock.core.code.reader import parse_python

        graph = Graph(self.title, lambda _box: self.node, None, lambda node: None)
        text = self.node.attrs.get("text", "")
        try:
            module = parse_python(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            graph.note = f"the code does not parse as Python ({safe_text(str(exc), 120)}): no graph"
            return graph
        forward, fields = _forward(module)
        if forward is None:
            graph.note = "no forward() in this code file"
            return graph
        risky_lines = {int(m.group(1)): f.message for f in self.node.findings
                       if (m := _FINDING_LINE.search(f.message)) is not None}
        walker = _Walker(graph, fields, risky_lines, cancelled)
        roles = self.node.attrs.get("trigger_lines") or {}  # torchscript_triggers.py (str keys after JSON)
        walker.trigger_lines = {int(k): str(v) for k, v in roles.items()}
        walker.run(forward)
        graph.finish()
        return graph


def attach(nodes: list[Node]) -> None:
    """Keep a graph source on each code file that defines a module's forward(); the top module (a
    class no other class names as a submodule's type) ranks first."""
    texts = {id(n): n.attrs.get("text", "") for n in nodes}
    annotations = re.compile(r":\s*__torch__\.[\w.]*?\.?(\w+)\s*$", re.MULTILINE)
    referenced = set(annotations.findall("\n".join(texts.values())))
    for node in nodes:
        text = texts[id(node)]
        found = _CLASS.search(text)
        if found is None or not _FORWARD.search(text):
            continue
        name = found.group(1)
        rank = 1 if name in referenced else 0
        node.attrs["graph"] = TorchScriptGraphSource(safe_text(name, 80), node, rank)


def _forward(module: ast.Module) -> tuple[ast.FunctionDef | None, dict[str, str]]:
    """The first class's forward, and its annotated fields (`conv : __torch__...Conv2d` → Conv2d)."""
    for item in module.body:
        if isinstance(item, ast.ClassDef):
            fields: dict[str, str] = {}
            forward = None
            for member in item.body:
                if isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                    fields[member.target.id] = _dotted(member.annotation).rsplit(".", 1)[-1]
                elif isinstance(member, ast.FunctionDef) and member.name == "forward":
                    forward = member
            return forward, fields
    return None, {}


def _dotted(expr: ast.expr) -> str:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return f"{_dotted(expr.value)}.{expr.attr}"
    return ""


class _Walker:
    def __init__(self, graph: Graph, fields: dict[str, str], risky_lines: dict[int, str],
                 cancelled: Callable[[], bool] | None) -> None:
        self.graph = graph
        self.fields = fields  # submodule attribute -> its class name
        self.risky_lines = risky_lines
        self.trigger_lines: dict[int, str] = {}  # line -> its part in a trigger (TS003)
        self.cancelled = cancelled
        self.values: dict[str, Source] = {}  # name -> boxes its value comes from
        self.modules: dict[str, str] = {}  # local name -> submodule attribute (`conv = self.conv`)
        self.steps = 0

    def run(self, forward: ast.FunctionDef) -> None:
        for arg in forward.args.args[1:]:  # after self
            box = GraphNode(INPUT, safe_text(arg.arg, 60), category="input")
            if arg.annotation is not None:
                box.name = safe_text(_dotted(arg.annotation) or "", 60)
            box.outputs = [box.title]
            box.search_text = search_text(arg.arg, "input")
            self.values[arg.arg] = (self.graph.add(box),)
        self.block(forward.body)

    def block(self, statements: list[ast.stmt]) -> None:
        for stmt in statements:
            self.steps += 1
            if self.steps % 256 == 0 and self.cancelled is not None and self.cancelled():
                raise Cancelled("graph building cancelled")
            if isinstance(stmt, ast.Assign):
                self.assign(stmt.targets, stmt.value)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                self.assign([stmt.target], stmt.value)
            elif isinstance(stmt, ast.Return) and stmt.value is not None:
                self.output(self.expr(stmt.value))
            elif isinstance(stmt, ast.Expr):
                self.expr(stmt.value)
            else:  # if / for / while / with: their expressions, then their bodies in order
                for child in ast.iter_child_nodes(stmt):
                    if isinstance(child, ast.expr):
                        self.expr(child)
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(stmt, field, None)
                    if isinstance(inner, list):
                        self.block([s for s in inner if isinstance(s, ast.stmt)])

    def assign(self, targets: list[ast.expr], value: ast.expr) -> None:
        if isinstance(value, ast.Attribute) and _dotted(value.value) == "self" and value.attr in self.fields:
            for target in targets:
                if isinstance(target, ast.Name):
                    self.modules[target.id] = value.attr  # `conv = self.conv`: a submodule, not data
            return
        found = self.expr(value)
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    self.values[name.id] = found

    def expr(self, expr: ast.expr) -> Source:
        if isinstance(expr, ast.Name):
            return self.values.get(expr.id, ())
        if isinstance(expr, ast.Call):
            return (self.call(expr),)
        found: tuple[int, ...] = ()
        for child in ast.iter_child_nodes(expr):
            if isinstance(child, ast.expr):
                found += self.expr(child)
        return tuple(dict.fromkeys(found))

    def call(self, call: ast.Call) -> int:
        func = call.func
        title, name = _dotted(func) or type(func).__name__, ""
        receiver = func.value if isinstance(func, ast.Attribute) else None
        if isinstance(func, ast.Attribute) and isinstance(receiver, ast.Name) and receiver.id in self.modules:
            attr = self.modules[receiver.id]
            title, name = self.fields.get(attr, attr), f"{attr}.{func.attr}"
        elif isinstance(func, ast.Attribute) and _dotted(func.value) == "self":
            title, name = func.attr, "self"
        box = GraphNode(OP, safe_text(title.rsplit(".", 1)[-1] if title.startswith("torch.") else title, 60),
                        safe_text(name or title, 60), category_of(title.rsplit(".", 1)[-1]))
        box.tree_ref = (OP, getattr(call, "lineno", 0))
        index = self.graph.add(box)
        rows: list[str] = []
        linked: set[int] = set()
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            sources = self.expr(arg)
            for src in sources:
                if src not in linked:
                    linked.add(src)
                    self.graph.connect(src, index, self.graph.nodes[src].title)
                    box.inputs.append((self.graph.nodes[src].title, "from " + self.graph.nodes[src].title))
            if not sources and len(rows) < MAX_ARG_ROWS:
                rows.append(safe_text(ast.unparse(arg), 40))
        box.rows = rows
        box.outputs = [f"line {getattr(call, 'lineno', 0)}"]
        box.search_text = search_text(title, name)
        self.judge(box, title, getattr(call, "lineno", 0))
        return index

    def judge(self, box: GraphNode, title: str, line: int) -> None:
        parts = title.split(".")
        if "ops" in parts[:-2]:
            namespace = parts[parts.index("ops") + 1]
            if namespace not in STANDARD_NAMESPACES:
                box.flag(Severity.MEDIUM, CUSTOM, f"operator namespace {safe_text(namespace, 60)!r} needs a "
                         "native library outside torch")
        message = self.risky_lines.get(line)
        if message is not None:
            box.flag(Severity.HIGH, None, safe_text(message, 300))
        role = self.trigger_lines.get(line)
        if role is not None:
            box.flag(Severity.HIGH, TRIGGER, f"on a trigger path: {safe_text(role, 200)}")

    def output(self, sources: Source) -> None:
        box = GraphNode(OUTPUT, "return", category="output")
        index = self.graph.add(box)
        for src in sources:
            self.graph.connect(src, index, self.graph.nodes[src].title)
