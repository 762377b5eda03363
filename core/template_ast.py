"""Small helpers over jinja2's template AST, shared by the template analyses. Nothing here renders.

A hostile template can nest expressions far deeper than Python's recursion limit (jinja2 parses
`a.b.c…`, `a|f|g…` and `a + b + c…` with loops, into left-deep trees 100,000 levels deep), so
every walk here is iterative and calls `tick` as it goes, and `render_expr` stops at depth 40.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

Tick = Callable[[], None]

# Attribute or item names that hold what a message says (its free text), in every chat format:
# OpenAI-style `content`, content parts' `text`, reasoning fields.
CONTENT_FIELDS = frozenset({"content", "text", "reasoning_content", "thinking", "reasoning"})
# Jinja tests that look at a value's type or presence, not at what it says.
TYPE_TESTS = frozenset({"string", "mapping", "iterable", "sequence", "defined", "undefined", "none",
                        "number", "integer", "float", "boolean", "true", "false", "callable", "sameas"})


@functools.cache
def nodes_module() -> Any:
    from jinja2 import nodes

    return nodes


def _noop() -> None:
    return None


def descendants(root: Any, tick: Tick = _noop) -> Iterator[Any]:
    """`root` and every node below it, parents before children, without recursion."""
    stack = [root]
    while stack:
        node = stack.pop()
        tick()
        yield node
        children = list(node.iter_child_nodes())
        children.reverse()  # pop in source order
        stack.extend(children)


def static_truth(expr: Any) -> bool | None:
    """True/False when a test is a constant (`false == true`, `not true`), else None.

    Real templates keep dead branches: Command-R's default system prompt sits under
    `{% elif false == true %}`, and transformers writes `USE_DEFAULT_PROMPT` as a literal.
    """
    nodes = nodes_module()
    if isinstance(expr, nodes.Const):
        return bool(expr.value)
    if isinstance(expr, nodes.Not):
        inner = static_truth(expr.node)
        return None if inner is None else not inner
    if isinstance(expr, nodes.Compare) and isinstance(expr.expr, nodes.Const) and len(expr.ops) == 1:
        op = expr.ops[0]
        if isinstance(op.expr, nodes.Const) and op.op in ("eq", "ne"):
            same = bool(expr.expr.value == op.expr.value)
            return same if op.op == "eq" else not same
    if isinstance(expr, nodes.And | nodes.Or):
        left, right = static_truth(expr.left), static_truth(expr.right)
        if isinstance(expr, nodes.And):
            return False if False in (left, right) else (True if left and right else None)
        return True if True in (left, right) else (False if left is False and right is False else None)
    return None


def field_name(expr: Any) -> str | None:
    """The attribute or constant item a Getattr/Getitem reads (`m.content`, `m['content']`)."""
    nodes = nodes_module()
    if isinstance(expr, nodes.Getattr):
        return str(expr.attr)
    if isinstance(expr, nodes.Getitem) and isinstance(expr.arg, nodes.Const) \
            and isinstance(expr.arg.value, str):
        return str(expr.arg.value)
    return None


def reads_messages(ast: Any, tick: Tick = _noop) -> bool:
    """Does the template read the conversation (`messages`)? Only then is it a chat template
    whose output can be poisoned around the messages."""
    nodes = nodes_module()
    return any(isinstance(n, nodes.Name) and n.name == "messages" for n in descendants(ast, tick))


_BINOPS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "FloorDiv": "//", "Mod": "%", "Pow": "**",
           "And": "and", "Or": "or"}
_COMPARE = {"eq": "==", "ne": "!=", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<=", "in": "in",
            "notin": "not in"}


def render_expr(n: Any, depth: int = 0) -> str:
    """Jinja source for an expression node, close to how it was written."""
    nodes = nodes_module()
    if depth > 40:
        return "…"
    d = depth + 1
    if isinstance(n, nodes.Name):
        return str(n.name)
    if isinstance(n, nodes.NSRef):
        return f"{n.name}.{n.attr}"
    if isinstance(n, nodes.Const):
        return repr(n.value)
    if isinstance(n, nodes.Getattr):
        return f"{render_expr(n.node, d)}.{n.attr}"
    if isinstance(n, nodes.Getitem):
        return f"{render_expr(n.node, d)}[{render_expr(n.arg, d)}]"
    if isinstance(n, nodes.Call):
        return f"{render_expr(n.node, d)}({_render_args(n, d)})"
    if isinstance(n, nodes.Filter):
        args = _render_args(n, d)
        inner = render_expr(n.node, d) if n.node is not None else ""
        return f"{inner}|{n.name}" + (f"({args})" if args else "")
    if isinstance(n, nodes.Test):
        return f"{render_expr(n.node, d)} is {n.name}"
    if isinstance(n, nodes.Concat):
        return " ~ ".join(render_expr(x, d) for x in n.nodes[:20])
    if isinstance(n, nodes.BinExpr):
        return f"{render_expr(n.left, d)} {_BINOPS.get(type(n).__name__, '?')} {render_expr(n.right, d)}"
    if isinstance(n, nodes.Not):
        return f"not {render_expr(n.node, d)}"
    if isinstance(n, nodes.Compare):
        ops = " ".join(f"{_COMPARE.get(o.op, o.op)} {render_expr(o.expr, d)}" for o in n.ops)
        return f"{render_expr(n.expr, d)} {ops}"
    if isinstance(n, nodes.CondExpr):
        other = f" else {render_expr(n.expr2, d)}" if n.expr2 is not None else ""
        return f"{render_expr(n.expr1, d)} if {render_expr(n.test, d)}{other}"
    if isinstance(n, nodes.Tuple | nodes.List):
        return "[" + ", ".join(render_expr(x, d) for x in n.items[:20]) + "]"
    if isinstance(n, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
        return f"{type(n).__name__.lower()} {render_expr(n.template, d)}"
    if isinstance(n, nodes.Slice):
        return ":".join(render_expr(x, d) if x is not None else "" for x in (n.start, n.stop))
    return f"<{type(n).__name__}>"


def _render_args(n: Any, depth: int) -> str:
    parts = [render_expr(a, depth) for a in n.args]
    parts += [f"{kw.key}={render_expr(kw.value, depth)}" for kw in n.kwargs]
    if n.dyn_args is not None:
        parts.append("*" + render_expr(n.dyn_args, depth))
    if n.dyn_kwargs is not None:
        parts.append("**" + render_expr(n.dyn_kwargs, depth))
    return ", ".join(parts)


class LoopElement:
    """The element of a loop's iterable: what the loop variable holds, and a test on the loop."""

    __slots__ = ("expr",)

    def __init__(self, expr: Any) -> None:
        self.expr = expr


class BlockValue:
    """The value of `{% set x %}…{% endset %}`: what its body outputs."""

    __slots__ = ("node",)

    def __init__(self, node: Any) -> None:
        self.node = node

    def outputs(self, nodes: Any) -> list[Any]:
        return [d for d in descendants(self.node) if isinstance(d, nodes.Output)]


# Parsing (shared by the scan and the maintainers-only catalogue builder in template_catalog.py)


@functools.cache
def _environment() -> Any:
    """The environment transformers' `_compile_jinja_template` builds, minus its render globals."""
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        # transformers marks assistant turns with {% generation %}…{% endgeneration %}.
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                         extensions=[GenerationTag, loopcontrols])


def parse_template(text: str, tick: Any = None) -> Any:
    """jinja2's AST of `text` (never compiled). `tick` is called every token, so a huge hostile
    template stops at the scan's deadline even while jinja2 is still lexing and parsing it. The
    parser itself, not Environment.parse: on a syntax error that one rewrites the traceback by
    compile()-ing a fake `raise` (jinja2.debug), and nothing in core may call compile."""
    from jinja2.parser import Parser

    parser = Parser(_environment(), text)
    stream = parser.stream
    if tick is not None and hasattr(stream, "_iter"):
        stream._iter = _ticking(stream._iter, tick)
    return parser.parse()


def _ticking(tokens: Any, tick: Any) -> Any:
    for token in tokens:
        tick()
        yield token
