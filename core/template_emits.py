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

from typing import Any

from airlock.core.template_ast import (
    CONTENT_FIELDS,
    TYPE_TESTS,
    BlockValue,
    LoopElement,
    Tick,
    descendants,
    field_name,
    nodes_module,
    render_expr,
    static_truth,
)
from airlock.core.template_rewrites import Rewrite, find_rewrites

# Filters whose output is not their input's text (a count, a number, a boolean).
_NON_TEXT_FILTERS = frozenset({"length", "count", "wordcount", "int", "float", "abs", "round", "sum", "min",
                               "max", "bool", "selectattr", "rejectattr", "select", "reject", "map",
                               "groupby", "unique", "dictsort", "items", "list"})
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
        self._inner_chains: set[int] = set()  # `~`/`+` links folded as part of a longer chain
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
            for literal in self._folded(output):
                found.setdefault((literal, output.lineno), Emission(literal, output.lineno, guard))
            for item in output.nodes:
                for literal, line, trigger in self._pieces(item, item.lineno, guard):
                    known = found.get((literal, line))
                    if known is None:
                        found[(literal, line)] = Emission(literal, line, trigger)
                    elif known.trigger is None:  # emitted both ways: the conditional one is the finding
                        known.trigger = trigger
        result.emissions = list(found.values())
        result.truncated = self.budget <= 0
        find_rewrites(self, result)
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
                guard = (*frames, *((node.test,) if node.test is not None else ()), LoopElement(node.iter))
                self.loops.append((node, frames))
                self._bind(node.target, node.iter, frames)
                stack.extend((child, guard) for child in reversed(node.body))
                stack.extend((child, (*frames, LoopElement(node.iter))) for child in reversed(node.else_))
            elif isinstance(node, n.Assign):
                self._bind(node.target, node.node, frames)
            elif isinstance(node, n.AssignBlock):
                self._bind(node.target, BlockValue(node), frames)
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
                        self._first_test(f) or (not isinstance(v, BlockValue) and self._is_content_test(v))
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
        if isinstance(expr, BlockValue):
            return any(self._tainted(o) for o in expr.outputs(n))
        if isinstance(expr, LoopElement):
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
        if isinstance(test, LoopElement):  # a loop over message content, or over messages filtered by it
            over_content = self._tainted(test.expr) and not self._is_messages(test.expr)
            return over_content or self._filters_content(test.expr)
        for d in descendants(test, self.tick):
            key = self._key(d)
            if key is not None and key in self.controlled:
                return True
            if self._messages_content(d):
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

    def _messages_content(self, d: Any) -> bool:
        """The conversation's content read whole: `messages | map(attribute='content')`,
        `messages | selectattr('content', …)`, `messages | tojson` or `| string`."""
        n = self.nodes
        if not isinstance(d, n.Filter) or d.node is None:
            return False
        base = d.node
        while isinstance(base, n.Filter) and base.node is not None:
            base = base.node
        if not self._is_messages(base):
            return False
        if d.name in ("tojson", "string", "pprint"):
            return True
        named = [a.value for a in d.args[:1] if isinstance(a, n.Const)]
        named += [kw.value.value for kw in d.kwargs
                  if kw.key == "attribute" and isinstance(kw.value, n.Const)]
        return d.name in ("map", "selectattr", "rejectattr") and any(x in CONTENT_FIELDS for x in named)

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
                    expr = test.expr if isinstance(test, LoopElement) else test
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
            for folded in self._folded(node):
                self.budget -= 1
                out.append((folded, getattr(node, "lineno", None) or line, trigger))
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

    def _folded(self, node: Any) -> list[str]:
        """Text that only appears when constants are put together: a `~`/`+` chain, a list through
        `|join` or `sep.join(...)`, adjacent outputs. Spelled a word or a letter per constant, each
        piece alone reads as structure; the joined run is judged when no piece is text by itself."""
        from airlock.core.template_literals import TEXT, classify

        n = self.nodes
        sep = ""
        if isinstance(node, n.Output):
            operands = list(node.nodes)
        elif isinstance(node, n.Concat | n.Add):
            if id(node) in self._inner_chains:
                return []  # part of a chain already folded from its top
            operands = self._chain(node)
        elif isinstance(node, n.Filter) and node.name == "join" and isinstance(node.node, n.List | n.Tuple):
            operands = list(node.node.items)
            if node.args and isinstance(node.args[0], n.Const) and isinstance(node.args[0].value, str):
                sep = node.args[0].value
        elif isinstance(node, n.Call) and isinstance(node.node, n.Getattr) and node.node.attr == "join" \
                and isinstance(node.node.node, n.Const) and isinstance(node.node.node.value, str) \
                and node.args and isinstance(node.args[0], n.List | n.Tuple):
            operands, sep = list(node.args[0].items), node.node.node.value
        else:
            return []
        found: list[str] = []
        run: list[str] = []
        for operand in [*operands, None]:
            text = operand.data if isinstance(operand, n.TemplateData) else (
                operand.value if isinstance(operand, n.Const) and isinstance(operand.value, str) else None)
            if text is not None:
                run.append(text)
                continue
            if len(run) >= 2 and all(classify(piece) != TEXT for piece in run):
                joined = sep.join(run)
                if classify(" ".join(joined.split())) == TEXT:
                    found.append(joined)
            run = []
        return found

    def _chain(self, node: Any) -> list[Any]:
        """The operands of a `~`/`+` chain, left to right; its inner links are marked as seen."""
        n = self.nodes
        operands: list[Any] = []
        stack = [node]
        while stack:
            item = stack.pop()
            self.tick()
            if isinstance(item, n.Concat | n.Add) and item is not node:
                self._inner_chains.add(id(item))
            if isinstance(item, n.Concat):
                stack.extend(reversed(item.nodes))
            elif isinstance(item, n.Add):
                stack.extend((item.right, item.left))
            else:
                operands.append(item)
        return operands

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
            if isinstance(value, BlockValue):
                for output in value.outputs(self.nodes):
                    found.extend((lit, output.lineno, guard) for lit in self._folded(output))
                    for item in output.nodes:
                        found.extend((lit, ln, guard or t) for lit, ln, t in self._pieces(item, item.lineno))
            elif isinstance(value, LoopElement):
                pieces = self._pieces(value.expr, value.expr.lineno)
                found.extend((lit, ln, guard or t) for lit, ln, t in pieces)
            else:
                found.extend((lit, ln, guard or t) for lit, ln, t in self._pieces(value, value.lineno))
        self._var_pieces[key] = found
        return found
