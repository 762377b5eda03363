"""What a chat template emits, and under which conditions: the analysis behind the poisoned-template
rules (never renders; works on jinja2's AST).

A poisoned template is valid Jinja that adds text around the conversation: always, or only when a
message says something (a trigger), or rewrites what the user wrote. So for every literal the
template can output (template data, string constants reaching `{{ }}` directly, through
variables, namespaces, filters or conditional expressions) this records the line and whether
its emission depends on message content: a test on `content` (comparisons, `in`, `startswith`,
length checks, filters over it), a loop over content or over messages filtered by it, or a flag
set under such a test. It also records every place message content is rewritten before it is
emitted (replace, slicing, case changes, messages dropped by content or by role).

Deliberately not rewrites: trimming whitespace and cutting the reasoning part off at a special
token (`content.split('</think>')[-1]`), which real Qwen and DeepSeek templates do.
"""

from __future__ import annotations

import re
from typing import Any

from airlock.core.template_ast import (
    CONTENT_FIELDS,
    TYPE_TESTS,
    Tick,
    descendants,
    field_name,
    nodes_module,
    render_expr,
    static_truth,
)
from airlock.core.template_literals import SPECIAL_TOKEN

# Filters whose output is not their input's text (a count, a number, a boolean).
_NON_TEXT_FILTERS = frozenset({"length", "count", "wordcount", "int", "float", "abs", "round", "sum", "min",
                               "max", "bool", "selectattr", "rejectattr", "select", "reject", "map",
                               "groupby", "unique", "dictsort", "items", "list"})
_REWRITE_FILTERS = frozenset({"replace", "upper", "lower", "title", "capitalize", "truncate", "wordwrap",
                              "reverse", "center", "striptags", "slice", "regex_replace", "format", "urlize"})
_REWRITE_METHODS = frozenset({"replace", "upper", "lower", "title", "capitalize", "swapcase", "translate",
                              "format", "casefold", "zfill", "center", "ljust", "rjust", "expandtabs",
                              "removeprefix", "removesuffix"})
_STRIP_METHODS = frozenset({"strip", "lstrip", "rstrip"})
# String methods whose result is (a piece of) their object's text, and the arguments that reach
# the output too (`'{}'.format(x)`, `sep.join(items)`, `s.replace(old, new)`, `d.get(k, default)`).
_TEXT_METHODS = frozenset({"strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize", "swapcase",
                           "replace", "format", "join", "center", "ljust", "rjust", "zfill", "removeprefix",
                           "removesuffix", "casefold", "expandtabs", "split", "rsplit", "splitlines",
                           "partition", "rpartition", "translate"})
_EMITTED_ARGS: dict[str, Any] = {"format": "all", "join": 0, "replace": 1, "get": 1, "center": 1, "ljust": 1,
                                 "rjust": 1, "pop": 1, "setdefault": 1}
_EMITTING_GLOBALS = frozenset({"cycler", "joiner"})  # their arguments come out of .next() / ()
MAX_VAR_PASSES = 12
MAX_REWRITES = 100  # rewrites described per template; the rest are counted
MAX_PIECES = 50_000  # literals collected per template (a variable emitted 10,000 times counts each time)


class Condition:
    """The first content-dependent test guarding an emission (or None when there is none)."""

    __slots__ = ("expr", "line")

    def __init__(self, expr: str, line: int) -> None:
        self.expr = expr
        self.line = line


class Emission:
    __slots__ = ("line", "literal", "trigger")

    def __init__(self, literal: str, line: int, trigger: Condition | None) -> None:
        self.literal = literal  # the whole string constant or template data, as the template holds it
        self.line = line
        self.trigger = trigger


class Rewrite:
    __slots__ = ("expr", "line", "why")

    def __init__(self, line: int, expr: str, why: str) -> None:
        self.line = line
        self.expr = expr
        self.why = why


class Analysis:
    def __init__(self) -> None:
        self.emissions: list[Emission] = []
        self.rewrites: list[Rewrite] = []
        self.literals: set[str] = set()  # every string literal and template data, emitted or not
        self.truncated = False  # more than MAX_PIECES literals: the rest were not looked at
        self.more_rewrites = 0


Frames = tuple[Any, ...]  # enclosing tests (expressions), outermost first


def analyse(ast: Any, tick: Tick) -> Analysis:
    return _Analyser(tick).run(ast)


class _Analyser:
    def __init__(self, tick: Tick) -> None:
        self.tick = tick
        self.nodes = nodes_module()
        self.outputs: list[tuple[Any, Frames]] = []
        self.assigns: dict[str, list[tuple[Any, Frames]]] = {}  # variable (or "ns.attr") → values
        self.loops: list[tuple[Any, Frames]] = []
        self.macros: set[str] = set()
        self.tainted: set[str] = set()  # variables holding message content
        self.controlled: set[str] = set()  # variables assigned under a content test
        self._var_pieces: dict[str, list[tuple[str, int, Condition | None]]] = {}
        self._content_test_cache: dict[int, bool] = {}
        self._taint: dict[int, bool] = {}
        self._conditions: dict[int, Condition] = {}
        self._emitted: set[tuple[str, bool]] = set()  # (variable, unguarded) already output
        self.budget = MAX_PIECES

    # Pass 1: statements, with the tests that guard them

    def run(self, ast: Any) -> Analysis:
        n = self.nodes
        result = Analysis()
        for node in descendants(ast, self.tick):
            if isinstance(node, n.Const) and isinstance(node.value, str):
                result.literals.add(node.value)
            elif isinstance(node, n.TemplateData):
                result.literals.add(node.data)
        self._statements(ast)
        self._variables()
        found: dict[tuple[str, int], Emission] = {}
        for output, frames in self.outputs:
            guard = self._first_test(frames)
            for item in output.nodes:
                for literal, line, trigger in self._pieces(item, item.lineno, guard):
                    known = found.get((literal, line))
                    if known is None:
                        found[(literal, line)] = Emission(literal, line, trigger)
                    elif known.trigger is None:  # emitted both ways: the conditional one is the finding
                        known.trigger = trigger
        result.emissions = list(found.values())
        result.truncated = self.budget <= 0
        self._rewrites(result)
        return result

    def _statements(self, ast: Any) -> None:
        n = self.nodes
        stack: list[tuple[Any, Frames]] = [(ast, ())]
        while stack:
            node, frames = stack.pop()
            self.tick()
            if isinstance(node, n.Output):
                self.outputs.append((node, frames))
            elif isinstance(node, n.If):
                self._if(node, frames, stack)
            elif isinstance(node, n.For):
                guard = (*frames, *((node.test,) if node.test is not None else ()), _Iter(node.iter))
                self.loops.append((node, frames))
                self._bind(node.target, node.iter, frames)
                stack.extend((child, guard) for child in reversed(node.body))
                stack.extend((child, (*frames, _Iter(node.iter))) for child in reversed(node.else_))
            elif isinstance(node, n.Assign):
                self._bind(node.target, node.node, frames)
            elif isinstance(node, n.AssignBlock):
                self._bind(node.target, _Block(node), frames)
                stack.extend((child, frames) for child in reversed(node.body))
            elif isinstance(node, n.With):
                for target, value in zip(node.targets, node.values, strict=False):
                    self._bind(target, value, frames)
                stack.extend((child, frames) for child in reversed(node.body))
            elif isinstance(node, n.Macro):
                self.macros.add(node.name)
                stack.extend((child, frames) for child in reversed(node.body))
            elif isinstance(node, n.Stmt | n.Template | n.Helper):
                stack.extend((child, frames) for child in reversed(list(node.iter_child_nodes()))
                             if isinstance(child, n.Stmt | n.Helper))

    def _if(self, node: Any, frames: Frames, stack: list[tuple[Any, Frames]]) -> None:
        branches = [(node.test, node.body)] + [(elif_.test, elif_.body) for elif_ in node.elif_]
        before: Frames = ()
        for test, body in branches:
            truth = static_truth(test)
            if truth is not False:
                stack.extend((child, frames + before + (test,)) for child in reversed(body))
            if truth is True:
                return  # later branches and else are dead
            before += (test,)
        stack.extend((child, frames + before) for child in reversed(node.else_))

    def _bind(self, target: Any, value: Any, frames: Frames) -> None:
        n = self.nodes
        if isinstance(target, n.Name):
            self.assigns.setdefault(target.name, []).append((value, frames))
        elif isinstance(target, n.NSRef):
            self.assigns.setdefault(f"{target.name}.{target.attr}", []).append((value, frames))
        elif isinstance(target, n.Tuple):
            for item in target.items:
                self._bind(item, value, frames)
        if isinstance(target, n.Name) and isinstance(value, n.Call) and isinstance(value.node, n.Name) \
                and value.node.name == "namespace":
            for kw in value.kwargs:  # ns = namespace(system_prompt='...'): ns.system_prompt starts so
                self.assigns.setdefault(f"{target.name}.{kw.key}", []).append((kw.value, frames))

    # Pass 2: which variables hold content, which were set under a content test

    def _variables(self) -> None:
        for _ in range(MAX_VAR_PASSES):
            changed = False
            self._content_test_cache.clear()
            self._taint.clear()
            for name, values in self.assigns.items():
                if name not in self.tainted and any(self._tainted(v) for v, _ in values):
                    self.tainted.add(name)
                    changed = True
                # Set under a content test, or holding one (`set k = 'x' in content`): a flag.
                if name not in self.controlled and any(
                        self._first_test(f) or (not isinstance(v, _Block) and self._is_content_test(v))
                        for v, f in values):
                    self.controlled.add(name)
                    changed = True
            if not changed:
                return

    def _key(self, node: Any) -> str | None:
        n = self.nodes
        if isinstance(node, n.Name):
            return str(node.name)
        if isinstance(node, n.Getattr) and isinstance(node.node, n.Name):
            return f"{node.node.name}.{node.attr}"
        return None

    def _tainted(self, expr: Any) -> bool:
        """Does the value of `expr` carry message content? Memoised bottom-up: a 10,000-link chain
        of filters asks this of every link."""
        n = self.nodes
        if isinstance(expr, _Block):
            return any(self._tainted(o) for o in expr.outputs(n))
        if isinstance(expr, _Iter):
            expr = expr.expr
        memo = self._taint
        if id(expr) in memo:
            return memo[id(expr)]
        stack: list[tuple[Any, bool]] = [(expr, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in memo:
                continue
            children = list(node.iter_child_nodes())
            if not ready:
                self.tick()
                stack.append((node, True))
                stack.extend((c, False) for c in children if id(c) not in memo)
                continue
            key = self._key(node)
            memo[id(node)] = (field_name(node) in CONTENT_FIELDS or (key is not None and key in self.tainted)
                              or any(memo.get(id(c), False) for c in children))
        return memo[id(expr)]

    def _is_content_test(self, test: Any) -> bool:
        cached = self._content_test_cache.get(id(test))
        if cached is None:
            cached = self._content_test_cache[id(test)] = self._content_test(test)
        return cached

    def _content_test(self, test: Any) -> bool:
        """A test whose outcome depends on what a message says (not on its role or type)."""
        n = self.nodes
        if isinstance(test, _Iter):  # a loop over message content, or over messages filtered by it
            over_content = self._tainted(test.expr) and not self._is_messages(test.expr)
            return over_content or self._filters_content(test.expr)
        for d in descendants(test, self.tick):
            key = self._key(d)
            if key is not None and key in self.controlled:
                return True
            if isinstance(d, n.Compare):
                if self._tainted(d.expr) or any(self._tainted(op.expr) for op in d.ops):
                    return True
            elif isinstance(d, n.Test):
                if d.name not in TYPE_TESTS and (
                        self._tainted(d.node) or any(self._tainted(a) for a in d.args)):
                    return True
            elif isinstance(d, n.Call) and isinstance(d.node, n.Getattr):
                if self._tainted(d.node.node):
                    return True
            elif isinstance(d, n.Filter) and d.node is not None and self._tainted(d.node):
                return True
        return False

    def _is_messages(self, expr: Any) -> bool:
        # `for m in messages` walks the conversation; `for part in message.content` walks content.
        n = self.nodes
        return isinstance(expr, n.Name) and expr.name in ("messages", "loop_messages")

    def _filters_content(self, expr: Any) -> bool:
        n = self.nodes
        for d in descendants(expr, self.tick):
            if isinstance(d, n.Filter) and d.name in ("selectattr", "rejectattr", "select", "reject") \
                    and d.args:
                first = d.args[0]
                if isinstance(first, n.Const) and first.value in CONTENT_FIELDS:
                    return True
        return False

    def _first_test(self, frames: Frames) -> Condition | None:
        for test in frames:
            if self._is_content_test(test):
                found = self._conditions.get(id(test))
                if found is None:
                    expr = test.expr if isinstance(test, _Iter) else test
                    found = Condition(render_expr(expr), getattr(expr, "lineno", 0) or 0)
                    self._conditions[id(test)] = found
                return found
        return None

    # Pass 3: the literals each output can produce

    def _pieces(self, root: Any, line: int, guard: Condition | None = None,
                ) -> list[tuple[str, int, Condition | None]]:
        """(literal, line, trigger) for every literal `root` can output under `guard`."""
        n = self.nodes
        out: list[tuple[str, int, Condition | None]] = []
        stack: list[tuple[Any, Condition | None]] = [(root, guard)]
        while stack and self.budget > 0:
            node, trigger = stack.pop()
            self.tick()
            if isinstance(node, n.TemplateData):
                self.budget -= 1
                out.append((node.data, node.lineno or line, trigger))
            elif isinstance(node, n.Const):
                if isinstance(node.value, str):
                    self.budget -= 1
                    out.append((node.value, node.lineno or line, trigger))
            elif isinstance(node, n.CondExpr):
                inner = trigger or self._first_test((node.test,))
                stack.append((node.expr1, inner))
                if node.expr2 is not None:
                    stack.append((node.expr2, inner))
            elif isinstance(node, n.Name | n.Getattr) and self._key(node) in self.assigns:
                key = self._key(node)
                assert key is not None
                # A variable output again under the same kind of guard adds nothing new.
                if (key, trigger is None) not in self._emitted:
                    self._emitted.add((key, trigger is None))
                    pieces = self._variable_pieces(key)
                    self.budget -= len(pieces)
                    out.extend((lit, ln, trigger or t) for lit, ln, t in pieces)
                if isinstance(node, n.Getattr):
                    stack.append((node.node, trigger))
            elif isinstance(node, n.Filter):
                if node.node is not None and node.name not in ("length", "count", "wordcount"):
                    stack.append((node.node, trigger))
                if node.name not in _NON_TEXT_FILTERS:
                    stack.extend((a, trigger) for a in node.args)
            elif isinstance(node, n.Call):
                stack.extend(self._call_pieces(node, trigger))
            elif isinstance(node, n.Compare | n.Test | n.Not | n.Slice | n.Keyword | n.Pair):
                if isinstance(node, n.Pair):
                    stack.extend(((node.key, trigger), (node.value, trigger)))
                elif isinstance(node, n.Keyword):
                    stack.append((node.value, trigger))
            else:  # Concat, Add, Mod, And/Or, Getitem, Getattr, List, Tuple, Dict, MarkSafe...
                children = list(node.iter_child_nodes())
                if isinstance(node, n.Getitem):
                    children = [node.node]  # the key is not output, the container's values may be
                stack.extend((c, trigger) for c in reversed(children))
        return out

    def _call_pieces(self, node: Any, trigger: Condition | None) -> list[tuple[Any, Condition | None]]:
        n = self.nodes
        callee = node.node
        if isinstance(callee, n.Getattr):  # a string or dict method: what of it reaches the output
            method = callee.attr
            parts: list[Any] = [callee.node] if method in _TEXT_METHODS else []
            which = _EMITTED_ARGS.get(method)
            if which is not None:
                parts += list(node.args) if which == "all" else node.args[which:which + 1]
            return [(p, trigger) for p in parts]
        if isinstance(callee, n.Name) and (callee.name in self.macros or callee.name in _EMITTING_GLOBALS):
            return [(p, trigger) for p in list(node.args) + [kw.value for kw in node.kwargs]]
        return []

    def _variable_pieces(self, key: str) -> list[tuple[str, int, Condition | None]]:
        done = self._var_pieces.get(key)
        if done is not None:
            return done
        self._var_pieces[key] = []  # a cycle (x = x + '...') sees what was found so far
        found: list[tuple[str, int, Condition | None]] = []
        for value, frames in self.assigns.get(key, []):
            guard = self._first_test(frames)
            if isinstance(value, _Block):
                for output in value.outputs(self.nodes):
                    for item in output.nodes:
                        found.extend((lit, ln, guard or t) for lit, ln, t in self._pieces(item, item.lineno))
            elif isinstance(value, _Iter):
                pieces = self._pieces(value.expr, value.expr.lineno)
                found.extend((lit, ln, guard or t) for lit, ln, t in pieces)
            else:
                found.extend((lit, ln, guard or t) for lit, ln, t in self._pieces(value, value.lineno))
        self._var_pieces[key] = found
        return found

    # Pass 4: content rewritten before it is emitted

    def _rewrites(self, result: Analysis) -> None:
        n = self.nodes
        exprs = [item for output, _ in self.outputs for item in output.nodes
                 if not isinstance(item, n.TemplateData)]
        exprs += [v for values in self.assigns.values() for v, _ in values
                  if not isinstance(v, _Block | _Iter)]
        seen: set[tuple[int, str]] = set()
        rendered = 0
        for expr in exprs:
            for d in self._value_nodes(expr):
                why = self._rewrite(d)
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
        for loop, _frames in self.loops:
            why = self._drops(loop)
            if why is not None:
                shown = f"for {render_expr(loop.target)} in {render_expr(loop.iter)}"
                if loop.test is not None:
                    shown += f" if {render_expr(loop.test)}"
                result.rewrites.append(Rewrite(loop.lineno or 0, shown, why))

    def _value_nodes(self, expr: Any) -> Any:
        """The nodes of `expr` whose value can reach the output: not what a comparison, a test or
        a conditional's condition only looks at (`c[:5] == 'Dear '` rewrites nothing)."""
        n = self.nodes
        if isinstance(expr, _Iter):
            expr = expr.expr
        stack = [expr]
        while stack:
            node = stack.pop()
            self.tick()
            if isinstance(node, n.Compare | n.Test | n.Not):
                continue
            yield node
            if isinstance(node, n.CondExpr):
                stack.extend(x for x in (node.expr1, node.expr2) if x is not None)
            else:
                stack.extend(node.iter_child_nodes())

    def _rewrite(self, d: Any) -> str | None:
        n = self.nodes
        if isinstance(d, n.Filter) and d.node is not None and d.name in _REWRITE_FILTERS \
                and self._tainted(d.node):
            return f"applies |{d.name} to message content"
        if isinstance(d, n.Getitem) and isinstance(d.arg, n.Slice) and self._tainted(d.node) \
                and not self._is_messages(d.node) and not self._list_of_parts(d.node):
            return "slices message content"
        if isinstance(d, n.Call) and isinstance(d.node, n.Getattr) and self._tainted(d.node.node):
            method = d.node.attr
            if method == "replace" and _drops_marker(d.args, n):
                return None  # `.replace('/no_think', '')`: SmolLM-style reasoning switches removed
            if method in _REWRITE_METHODS:
                return f"calls .{method}() on message content"
            if method in _STRIP_METHODS and d.args and not _whitespace_const(d.args[0], n):
                return f"strips characters other than whitespace from message content (.{method})"
        if isinstance(d, n.Getitem) and isinstance(d.node, n.Call) and isinstance(d.node.node, n.Getattr) \
                and d.node.node.attr in ("split", "rsplit") and self._tainted(d.node.node.node):
            sep = d.node.args[0] if d.node.args else None
            if not (isinstance(sep, n.Const) and isinstance(sep.value, str) and _marker(sep.value)):
                return "keeps only a piece of message content split on a non-marker separator"
        return None

    def _list_of_parts(self, expr: Any) -> bool:
        # `message['content'][1:]` on multimodal content lists is rare but structural; slicing a
        # string is what matters, and we cannot tell types apart statically: only plain names of
        # message lists are exempt, so keep this conservative (always False).
        return False

    def _drops(self, loop: Any) -> str | None:
        """A loop that emits message content over messages filtered by content or by role."""
        n = self.nodes
        if loop.test is not None and self._is_content_test(loop.test):
            return "drops messages whose content passes a test and emits the rest"
        if self._filters_content(loop.iter):
            return "drops messages by their content and emits the rest"
        by_role = (loop.test is not None
                   and any(field_name(d) == "role" for d in descendants(loop.test, self.tick))) \
            or any(isinstance(d, n.Filter) and d.name in ("selectattr", "rejectattr") and d.args
                   and isinstance(d.args[0], n.Const) and d.args[0].value == "role"
                   for d in descendants(loop.iter, self.tick))
        if by_role and self._body_emits_content(loop):
            return "drops messages by role (a filter on the loop) and emits the others' content"
        return None

    def _body_emits_content(self, loop: Any) -> bool:
        n = self.nodes
        for d in descendants(loop, self.tick):
            if isinstance(d, n.Output) and any(self._tainted(i) for i in d.nodes
                                               if not isinstance(i, n.TemplateData)):
                return True
        return False


class _Iter:
    """The element of a loop's iterable: what the loop variable holds, and a test on the loop."""

    __slots__ = ("expr",)

    def __init__(self, expr: Any) -> None:
        self.expr = expr


class _Block:
    """The value of `{% set x %}…{% endset %}`: what its body outputs."""

    __slots__ = ("node",)

    def __init__(self, node: Any) -> None:
        self.node = node

    def outputs(self, nodes: Any) -> list[Any]:
        return [d for d in descendants(self.node) if isinstance(d, nodes.Output)]


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
