"""Message content rewritten before the model sees it: the third kind of poisoned chat template.

`replace`, slicing, case changes, `strip` of other than whitespace, keeping a piece of a split on an
ordinary separator, messages dropped by content or by role in a loop that emits the rest. Not
counted: trimming whitespace, cutting reasoning off at a special token
(`content.split('</think>')[-1]`, Qwen and DeepSeek) and removing a `/no_think` switch (SmolLM).
Works on the analyser of template_emits.py (which variables hold content, which tests read it).
"""

from __future__ import annotations

import re
from typing import Any

from airlock.core.template_ast import BlockValue, LoopElement, descendants, field_name, render_expr
from airlock.core.template_literals import SPECIAL_TOKEN

MAX_REWRITES = 100  # rewrites described per template; the rest are counted
_REWRITE_FILTERS = frozenset({"replace", "upper", "lower", "title", "capitalize", "truncate", "wordwrap",
                              "reverse", "center", "striptags", "slice", "regex_replace", "format", "urlize"})
_REWRITE_METHODS = frozenset({"replace", "upper", "lower", "title", "capitalize", "swapcase", "translate",
                              "format", "casefold", "zfill", "center", "ljust", "rjust", "expandtabs",
                              "removeprefix", "removesuffix"})
_STRIP_METHODS = frozenset({"strip", "lstrip", "rstrip"})


class Rewrite:
    __slots__ = ("expr", "line", "why")

    def __init__(self, line: int, expr: str, why: str) -> None:
        self.line = line
        self.expr = expr
        self.why = why


def find_rewrites(a: Any, result: Any) -> None:
    """Every place message content is rewritten before it is emitted, into `result.rewrites`."""
    n = a.nodes
    exprs = [item for output, _ in a.outputs for item in output.nodes
             if not isinstance(item, n.TemplateData)]
    exprs += [v for values in a.assigns.values() for v, _ in values
              if not isinstance(v, BlockValue | LoopElement)]
    seen: set[tuple[int, str]] = set()
    rendered = 0
    for expr in exprs:
        for d in _value_nodes(a, expr):
            why = _rewrite(a, d)
            if why is not None:
                line = getattr(d, "lineno", 0) or 0
                rendered += 1
                if rendered > MAX_REWRITES:  # counted, not rendered
                    result.more_rewrites += 1
                    continue
                shown = render_expr(d)
                if (line, shown) not in seen:
                    seen.add((line, shown))
                    result.rewrites.append(Rewrite(line, shown, why))
    for loop, _frames in a.loops:
        why = _drops(a, loop)
        if why is not None:
            shown = f"for {render_expr(loop.target)} in {render_expr(loop.iter)}"
            if loop.test is not None:
                shown += f" if {render_expr(loop.test)}"
            result.rewrites.append(Rewrite(loop.lineno or 0, shown, why))

def _value_nodes(a: Any, expr: Any) -> Any:
    """The nodes of `expr` whose value can reach the output: not what a comparison, a test or
    a conditional's condition only looks at (`c[:5] == 'Dear '` rewrites nothing)."""
    n = a.nodes
    if isinstance(expr, LoopElement):
        expr = expr.expr
    stack = [expr]
    while stack:
        node = stack.pop()
        a.tick()
        if isinstance(node, n.Compare | n.Test | n.Not):
            continue
        yield node
        if isinstance(node, n.CondExpr):
            stack.extend(x for x in (node.expr1, node.expr2) if x is not None)
        else:
            stack.extend(node.iter_child_nodes())

def _rewrite(a: Any, d: Any) -> str | None:
    n = a.nodes
    if isinstance(d, n.Filter) and d.node is not None and d.name in _REWRITE_FILTERS \
            and a._tainted(d.node):
        return f"applies |{d.name} to message content"
    if isinstance(d, n.Filter) and d.name == "map" and d.node is not None and d.args \
            and isinstance(d.args[0], n.Const) and d.args[0].value in _REWRITE_FILTERS \
            and (a._tainted(d.node) or _maps_content(a, d.node)):
        return f"applies |{d.args[0].value} to message content (through |map)"
    if isinstance(d, n.Getitem) and isinstance(d.arg, n.Slice) and a._tainted(d.node) \
            and not a._is_messages(d.node) and not _list_of_parts(d.node):
        return "slices message content"
    if isinstance(d, n.Call) and isinstance(d.node, n.Getattr) and a._tainted(d.node.node):
        method = d.node.attr
        if method == "replace" and _drops_marker(d.args, n):
            return None  # `.replace('/no_think', '')`: SmolLM-style reasoning switches removed
        if method in _REWRITE_METHODS:
            return f"calls .{method}() on message content"
        if method in _STRIP_METHODS and d.args and not _whitespace_const(d.args[0], n):
            return f"strips characters other than whitespace from message content (.{method})"
    if isinstance(d, n.Getitem) and isinstance(d.node, n.Call) and isinstance(d.node.node, n.Getattr) \
            and d.node.node.attr in ("split", "rsplit") and a._tainted(d.node.node.node):
        sep = d.node.args[0] if d.node.args else None
        if not (isinstance(sep, n.Const) and isinstance(sep.value, str) and _marker(sep.value)):
            return "keeps only a piece of message content split on a non-marker separator"
    return None

def _maps_content(a: Any, expr: Any) -> bool:
    """`messages | map(attribute='content')`: the list of every message's content."""
    n = a.nodes
    return any(isinstance(d, n.Filter) and d.name == "map" and any(
        kw.key == "attribute" and isinstance(kw.value, n.Const) and kw.value.value == "content"
        for kw in d.kwargs) for d in descendants(expr, a.tick))


def _list_of_parts(expr: Any) -> bool:
    # `message['content'][1:]` on multimodal content lists is rare but structural; slicing a
    # string is what matters, and we cannot tell types apart statically: only plain names of
    # message lists are exempt, so keep this conservative (always False).
    return False

def _drops(a: Any, loop: Any) -> str | None:
    """A loop that emits message content over messages filtered by content or by role."""
    n = a.nodes
    if loop.test is not None and a._is_content_test(loop.test):
        return "drops messages whose content passes a test and emits the rest"
    if a._filters_content(loop.iter):
        return "drops messages by their content and emits the rest"
    by_role = (loop.test is not None
               and any(field_name(d) == "role" for d in descendants(loop.test, a.tick))) \
        or any(isinstance(d, n.Filter) and d.name in ("selectattr", "rejectattr") and d.args
               and isinstance(d.args[0], n.Const) and d.args[0].value == "role"
               for d in descendants(loop.iter, a.tick))
    if by_role and _body_emits_content(a, loop):
        return "drops messages by role (a filter on the loop) and emits the others' content"
    if a._is_messages(loop.iter):
        return _drops_in_body(a, loop)
    return None


def _drops_in_body(a: Any, loop: Any) -> str | None:
    """The loop filter written as an `if` around the emission: `{% if 'x' not in message.content %}`
    emits the message, and nothing else in the loop emits content when the test fails."""
    n = a.nodes
    for node in descendants(loop, a.tick):
        if not isinstance(node, n.If) or not a._is_content_test(node.test) or _emptiness_test(a, node.test):
            continue
        branches = [node.body, *[e.body for e in node.elif_], node.else_]
        emits = [_emits_content(a, stmts) for stmts in branches]
        inside = {id(d) for d in descendants(node, a.tick)}
        elsewhere = any(isinstance(d, n.Output) and id(d) not in inside and _output_has_content(a, d)
                        for d in descendants(loop, a.tick))
        if any(emits) and not all(emits) and not elsewhere:
            return (f"emits a message's content only when `{render_expr(node.test)}` decides so "
                    "and drops the other messages")
    return None


def _emptiness_test(a: Any, test: Any) -> bool:
    """`content | length > 0`, `content != ''`: skipping an empty message drops nothing."""
    n = a.nodes
    compares = [d for d in descendants(test, a.tick) if isinstance(d, n.Compare)]
    return bool(compares) and all(
        any(isinstance(x, n.Const) and x.value in ("", 0, None) for x in (c.expr, *[op.expr for op in c.ops]))
        for c in compares)


def _emits_content(a: Any, stmts: list[Any]) -> bool:
    n = a.nodes
    return any(isinstance(d, n.Output) and _output_has_content(a, d)
               for stmt in stmts for d in descendants(stmt, a.tick))


def _output_has_content(a: Any, output: Any) -> bool:
    return any(a._tainted(i) for i in output.nodes if not isinstance(i, a.nodes.TemplateData))

def _body_emits_content(a: Any, loop: Any) -> bool:
    n = a.nodes
    for d in descendants(loop, a.tick):
        if isinstance(d, n.Output) and any(a._tainted(i) for i in d.nodes
                                           if not isinstance(i, n.TemplateData)):
            return True
    return False


def _whitespace_const(arg: Any, nodes: Any) -> bool:
    return isinstance(arg, nodes.Const) and isinstance(arg.value, str) and not arg.value.strip()


def _drops_marker(args: list[Any], nodes: Any) -> bool:
    """`replace(marker, '')` where the marker is a special token or a `/command` switch."""
    if len(args) < 2 or not all(isinstance(a, nodes.Const) and isinstance(a.value, str) for a in args[:2]):
        return False
    old, new = args[0].value, args[1].value
    return not new.strip() and (SPECIAL_TOKEN.fullmatch(old.strip()) is not None
                                or re.fullmatch(r"/\w{1,40}", old.strip()) is not None)


def _marker(sep: str) -> bool:
    """A separator that is a special token or whitespace: splitting there strips reasoning blocks."""
    return not sep.strip() or SPECIAL_TOKEN.fullmatch(sep.strip()) is not None
