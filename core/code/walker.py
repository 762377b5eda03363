"""The walk: statements in the order they run, names bound as they are, calls handed to the checks.

Imports, aliases, constants and parameters are bound in scopes (values.py) as the walk meets them,
so a call resolves through `import torch as t`, `from joblib import load`, `WEIGHTS_ONLY = False`
earlier in the same function or module. A notebook's cells are units of one module, walked in order.
An assignment inside a branch or a loop merges with what the name held before (it may not run).

Expressions are only searched on hot lines (hotlines.py); every statement still binds its names.
Statement nesting is bounded by CPython's indentation limit (100 levels), so walking statements
recursively is safe; expressions are searched iteratively (calls.py).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from airlock.core.code import checks
from airlock.core.code.calls import CallFinder
from airlock.core.code.callsite import CallSite
from airlock.core.code.checks import Issue
from airlock.core.code.checks.sources import ca_bundle_cleared
from airlock.core.code.evaluate import value_of
from airlock.core.code.hotlines import ALIASED_MODULES, HotLines, has_sink
from airlock.core.code.names import canonical
from airlock.core.code.rules import CouldNotTell, DeserializerImport, TlsVerifyOff
from airlock.core.code.values import UNKNOWN, Const, DictValue, Local, Obj, Param, Ref, Scope, Value
from airlock.core.findings import Severity

DESERIALIZER_MODULES = frozenset({"pickle", "dill", "cloudpickle", "shelve", "marshal", "jsonpickle",
                                  "torch.package"})


# Calls whose result a check may need even off the hot lines (copies of **kwargs, buffers, paths...).
EVALUATED_CALLS = frozenset({"copy", "deepcopy", "dict", "BytesIO", "open", "read", "read_text", "read_bytes",
                             "join", "Path", "get", "getattr", "content", "text"})


def _worth_evaluating(expr: ast.expr) -> bool:
    """A call off the hot lines yields nothing a check looks at, except these (cheap to tell)."""
    if not isinstance(expr, ast.Call):
        return True
    func = expr.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return name in EVALUATED_CALLS


MAX_CALLER_WALKS = 256  # function bodies walked again with a caller's arguments, per module


class Wrapper:
    """A function this file defines, kept so that a call to it can be judged with the caller's
    arguments: `def load(path, **kw): return torch.load(path, **kw)` then `load(p, weights_only=False)`,
    or `def fetch(repo): return AutoModel.from_pretrained(repo)` then `fetch("org/name")`."""

    __slots__ = ("defn", "home", "lines", "seen", "unit")

    def __init__(self, defn: ast.FunctionDef | ast.AsyncFunctionDef, home: Scope, lines: HotLines, unit: int,
                 seen: set[tuple[str, int, int]]) -> None:
        self.defn = defn
        self.home = home  # the scope the function was defined in
        self.lines = lines  # the hot lines of its unit (a notebook cell may define it)
        self.unit = unit
        self.seen = seen  # what its own walk already reported (rule, line, column)


def _key(issue: Issue) -> tuple[str, int, int]:
    return issue.rule.id, getattr(issue.node, "lineno", 0), getattr(issue.node, "col_offset", 0)


def _literal(expr: ast.expr, value: Value) -> ast.expr:
    """A caller's keyword value, as an expression the callee's scope evaluates the same way: its literal
    when the caller's code fixes one, else a name nothing binds (Airlock then cannot tell)."""
    fixed = isinstance(value, Const) and len(value.values) == 1
    if fixed and isinstance(value, Const) and isinstance(value.values[0], bool | int | float | str):
        literal: ast.expr = ast.Constant(value.values[0])
    else:
        literal = ast.Name("<the caller's value>", ast.Load())
    return ast.copy_location(literal, expr)


class Unit:
    """One parsed piece of code: a module, or a notebook cell (cells form one module, in order)."""

    __slots__ = ("index", "text", "tree")

    def __init__(self, index: int, text: str, tree: ast.Module) -> None:
        self.index = index
        self.text = text
        self.tree = tree


class Walker(CallFinder):
    def __init__(self, tick: Callable[[], None]) -> None:
        super().__init__(tick)
        self.lines: HotLines | None = None
        self.full = False  # work out every assignment's value (the code has exec/import sinks)
        self.inside_caller_walk = False
        self.caller_walks = 0
        self.named_calls = 0  # calls handed to a check that looks for that function or method

    def run(self, units: list[Unit]) -> list[Issue]:
        module = Scope("module", None)
        words: set[str] = set()
        for unit in units:
            self.unit = unit.index
            self.full = self.full or has_sink(unit.text)
            self.lines = HotLines(unit.text, self.full)
            for word in sorted(words):  # names bound in earlier cells are used in later ones
                self.lines.add_word(word)
            self.aliases(unit.tree.body)
            words = self.lines.words
            self.block(unit.tree.body, module, 0)
        self.close_events()
        return self.issues

    def aliases(self, body: list[ast.stmt]) -> None:
        """Mark the lines naming an imported function a check looks at before the walk, so that a
        function defined above `from pickle import loads as L` still has its `L(...)` lines hot."""
        assert self.lines is not None
        stack = list(body)
        while stack:
            s = stack.pop()
            if isinstance(s, ast.ImportFrom) and not s.level:
                for alias in s.names:
                    if canonical(f"{s.module}.{alias.name}") in checks.TARGETS:
                        self.lines.add_word(alias.asname or alias.name)
            elif isinstance(s, ast.Import):
                for alias in s.names:
                    name = canonical(alias.name)
                    if alias.asname and (name in checks.TARGETS or name in ALIASED_MODULES):
                        self.lines.add_word(alias.asname)
            elif isinstance(s, ast.If | ast.Try | ast.TryStar):
                stack.extend([*s.body, *s.orelse])
                if isinstance(s, ast.Try | ast.TryStar):
                    stack.extend(s.finalbody)
                    for handler in s.handlers:
                        stack.extend(handler.body)

    def hot(self, node: ast.expr | ast.stmt) -> bool:
        return self.lines is not None and self.lines.hot(node)

    def search(self, nodes: list[ast.expr], scope: Scope) -> None:
        """Search these expressions for calls if any of them is on a hot line."""
        if any(self.hot(n) for n in nodes):
            self.expressions(nodes, scope)

    def block(self, body: list[ast.stmt], scope: Scope, cond: int) -> None:
        """`cond` > 0: the statements may not run (a branch, a loop body, a try block)."""
        for stmt in body:
            self.tick()
            handler = HANDLERS.get(type(stmt))
            if handler is not None:
                handler(self, stmt, scope, cond)

    # One method per kind of statement (HANDLERS below).

    def import_(self, s: ast.Import, scope: Scope, cond: int) -> None:
        for alias in s.names:
            name = canonical(alias.name)
            self.note_import(name, s)
            if alias.asname:
                self.bind(scope, alias.asname, Ref(name), cond > 0)
            else:
                top = alias.name.split(".", 1)[0]
                self.bind(scope, top, Ref(canonical(top)), cond > 0)

    def import_from(self, s: ast.ImportFrom, scope: Scope, cond: int) -> None:
        base = "." * s.level + (s.module or "")
        for alias in s.names:
            if alias.name == "*":
                if not s.level:
                    scope.module.star_modules.append(canonical(base))
                continue
            if s.level:  # relative: this package's own module, not a library the checks know
                full = f"{base}.{alias.name}"
            else:
                full = canonical(f"{base}.{alias.name}")
                self.note_import(canonical(base), s)
                self.note_import(full, s)
            self.bind(scope, alias.asname or alias.name, Ref(full), cond > 0)

    def function(self, s: ast.FunctionDef | ast.AsyncFunctionDef, scope: Scope, cond: int) -> None:
        args = s.args
        kw_defaults = [d for d in args.kw_defaults if d is not None]
        self.search([*s.decorator_list, *args.defaults, *kw_defaults], scope)
        local = Local(s.name)
        scope.bind(s.name, local, cond > 0)
        if not self.hot(s):
            return  # nothing in the body can matter: its names are its own
        inner = self.parameters(s, scope)
        outer_events, self.events = self.events, []
        start, named = len(self.issues), self.named_calls
        self.block(s.body, inner, 0)
        self.close_events()
        self.events = outer_events
        # Only a function that calls something a check looks for can hide a risky option from its
        # body (each name kept costs a scan of the text, so plain functions are not kept).
        if (not self.inside_caller_walk and self.lines is not None and self.named_calls > named
                and (args.args or args.kwarg is not None)):
            local.body = Wrapper(s, scope, self.lines, self.unit, {_key(i) for i in self.issues[start:]})
            self.lines.add_word(s.name)  # its calls are searched, to be judged with their arguments

    def parameters(self, s: ast.FunctionDef | ast.AsyncFunctionDef, scope: Scope) -> Scope:
        """The function's scope with its parameters bound (each holds its default unless a caller says)."""
        args = s.args
        inner = Scope("function", scope)
        positional = [*args.posonlyargs, *args.args]
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        pairs = [*zip(positional, defaults, strict=True),
                 *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
        for arg, default in pairs:
            inner.names[arg.arg] = Param(arg.arg, value_of(default, scope) if default is not None else None)
        if args.vararg is not None:
            inner.names[args.vararg.arg] = Param(args.vararg.arg, None, "vararg")
        if args.kwarg is not None:
            inner.names[args.kwarg.arg] = Param(args.kwarg.arg, None, "kwarg")
        return inner

    # Judging a call to a function of this file with the caller's arguments

    def dispatch(self, site: CallSite) -> None:
        if (site.name is not None and site.name in checks.BY_NAME) or (
                site.method is not None and site.method in checks.BY_METHOD):
            self.named_calls += 1
        super().dispatch(site)

    def call(self, node: ast.Call, scope: Scope) -> None:
        super().call(node, scope)
        func = value_of(node.func, scope)
        if (isinstance(func, Local) and isinstance(func.body, Wrapper) and (node.args or node.keywords)
                and not self.inside_caller_walk and self.caller_walks < MAX_CALLER_WALKS):
            self.caller_walks += 1
            self.judge_at_caller(func.name, func.body, node, scope)

    def judge_at_caller(self, name: str, w: Wrapper, node: ast.Call, scope: Scope) -> None:
        """Walk the function's body again with this call's arguments bound to its parameters; what
        becomes risky only now (weights_only=False through **kwargs, a repository id the caller names)
        is reported here, at the call, with the line inside the function."""
        inner = self.bind_arguments(w, node, scope)
        if inner is None:
            return
        saved = (self.issues, self.events, self.lines, self.unit)
        self.issues, self.events, self.lines, self.unit = [], [], w.lines, w.unit
        self.inside_caller_walk = True
        try:
            self.block(w.defn.body, inner, 0)
            found = self.issues
        finally:
            self.issues, self.events, self.lines, self.unit = saved
            self.inside_caller_walk = False
        done = {i.rule.id for i in self.issues if i.node is node}  # the call itself was judged already
        for issue in found:
            key = _key(issue)
            if key in w.seen or key[0] in done or issue.level <= Severity.INFO or issue.rule is CouldNotTell:
                continue  # "could not tell" at the call adds nothing to what the function's own walk says
            done.add(key[0])
            message = f"{name}(…) makes its line {key[1]} risky with the arguments given: {issue.message}"
            self.issues.append(Issue(issue.rule, message, node, self.unit, issue.severity))

    def bind_arguments(self, w: Wrapper, node: ast.Call, scope: Scope) -> Scope | None:
        if any(isinstance(a, ast.Starred) for a in node.args):
            return None  # *args: which parameter gets what is not known
        args = w.defn.args
        inner = self.parameters(w.defn, w.home)
        positional = [*args.posonlyargs, *args.args]
        for param, expr in zip(positional, node.args, strict=False):
            inner.names[param.arg] = value_of(expr, scope)
        named = {a.arg for a in [*positional, *args.kwonlyargs]}
        extra: dict[str, ast.expr] = {}
        spread: list[ast.expr | Value] = []
        for kw in node.keywords:
            value = value_of(kw.value, scope)
            if kw.arg is None:
                spread.append(value)
            elif kw.arg in named:
                inner.names[kw.arg] = value
            else:
                extra[kw.arg] = _literal(kw.value, value)
        if args.kwarg is not None:
            inner.names[args.kwarg.arg] = DictValue(extra, spread)
        for bound, held in list(inner.names.items()):  # not passed here: the default is what it holds
            if isinstance(held, Param) and held.kind == "arg" and held.default is not None:
                inner.names[bound] = held.default
        return inner

    def class_(self, s: ast.ClassDef, scope: Scope, cond: int) -> None:
        self.search([*s.decorator_list, *s.bases, *(k.value for k in s.keywords)], scope)
        scope.bind(s.name, Local(s.name, [value_of(b, scope) for b in s.bases]), cond > 0)
        self.block(s.body, Scope("class", scope), 0)

    def assign_(self, s: ast.Assign, scope: Scope, cond: int) -> None:
        hot = self.hot(s)
        if hot:
            self.expressions([s.value], scope)
            for target in s.targets:
                self.cleared_ca_bundle(target, s.value, scope, s)
        value = value_of(s.value, scope) if hot or self.full or _worth_evaluating(s.value) else UNKNOWN
        for target in s.targets:
            self.assign(target, s.value, value, scope, cond > 0)

    def ann_assign(self, s: ast.AnnAssign, scope: Scope, cond: int) -> None:
        if s.value is not None:
            self.search([s.value], scope)
            self.assign(s.target, s.value, value_of(s.value, scope), scope, cond > 0)

    def aug_assign(self, s: ast.AugAssign, scope: Scope, cond: int) -> None:
        self.search([s.value], scope)
        if isinstance(s.target, ast.Name):
            old = scope.lookup(s.target.id) or UNKNOWN
            scope.bind(s.target.id, Obj(None, old.flags | value_of(s.value, scope).flags), False)

    def branch(self, s: ast.If | ast.While, scope: Scope, cond: int) -> None:
        self.search([s.test], scope)
        self.block(s.body, scope, cond + 1)
        self.block(s.orelse, scope, cond + 1)

    def loop(self, s: ast.For | ast.AsyncFor, scope: Scope, cond: int) -> None:
        self.search([s.iter], scope)
        self.assign(s.target, None, Obj(None, value_of(s.iter, scope).flags), scope, True)
        self.block(s.body, scope, cond + 1)
        self.block(s.orelse, scope, cond + 1)

    def with_(self, s: ast.With | ast.AsyncWith, scope: Scope, cond: int) -> None:
        for item in s.items:
            self.search([item.context_expr], scope)
            if item.optional_vars is not None:
                self.assign(item.optional_vars, None, value_of(item.context_expr, scope), scope, cond > 0)
        self.block(s.body, scope, cond)

    def try_(self, s: ast.Try | ast.TryStar, scope: Scope, cond: int) -> None:
        self.block(s.body, scope, cond + 1)
        for handler in s.handlers:
            if handler.name:
                scope.bind(handler.name, UNKNOWN, True)
            self.block(handler.body, scope, cond + 1)
        self.block(s.orelse, scope, cond + 1)
        self.block(s.finalbody, scope, cond)

    def match(self, s: ast.Match, scope: Scope, cond: int) -> None:
        self.search([s.subject], scope)
        for case in s.cases:
            self.block(case.body, scope, cond + 1)

    def global_(self, s: ast.Global, scope: Scope, cond: int) -> None:
        scope.globals_.update(s.names)

    def plain(self, s: ast.stmt, scope: Scope, cond: int) -> None:
        """Expression statements, return, raise, assert, del: only calls to look at."""
        if self.hot(s):
            self.expressions([n for n in ast.iter_child_nodes(s) if isinstance(n, ast.expr)], scope)

    # Binding names

    def bind(self, scope: Scope, name: str, value: Value, conditional: bool) -> None:
        scope.bind(name, value, conditional)
        if isinstance(value, Ref) and self.lines is not None and (
                value.name in checks.TARGETS or value.name in ALIASED_MODULES):
            self.lines.add_word(name)

    def assign(self, target: ast.expr, expr: ast.expr | None, value: Value, scope: Scope,
               conditional: bool) -> None:
        if isinstance(target, ast.Name):
            self.bind(scope, target.id, value, conditional)
        elif isinstance(target, ast.Tuple | ast.List):
            parts = expr.elts if isinstance(expr, ast.Tuple | ast.List) else None
            pairwise = parts is not None and len(parts) == len(target.elts) and \
                not any(isinstance(e, ast.Starred) for e in target.elts)
            for i, element in enumerate(target.elts):
                if pairwise and parts is not None:
                    self.assign(element, parts[i], value_of(parts[i], scope), scope, conditional)
                else:
                    self.assign(element, None, Obj(None, value.flags), scope, conditional)
        elif isinstance(target, ast.Starred):
            self.assign(target.value, None, Obj(None, value.flags), scope, conditional)
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and expr is not None:
            self.set_item(target.value.id, target.slice, expr, scope, conditional)

    def set_item(self, name: str, key: ast.expr, expr: ast.expr, scope: Scope, conditional: bool) -> None:
        """`kwargs["trust_remote_code"] = x`: the dict now says so (read when it is spread into a call)."""
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            return
        holder = scope.lookup(name)
        if isinstance(holder, DictValue):
            scope.bind(name, holder.with_item(key.value, expr), conditional)
        elif isinstance(holder, Param):
            scope.bind(name, DictValue({key.value: expr}, [holder]), conditional)

    def note_import(self, name: str, node: ast.stmt) -> None:
        if name in DESERIALIZER_MODULES:
            message = f"imports {name}, which runs code named by the data it loads (each load is judged)"
            self.issues.append(Issue(DeserializerImport, message, node, self.unit))

    def cleared_ca_bundle(self, target: ast.expr, value: ast.expr, scope: Scope, node: ast.stmt) -> None:
        name = ca_bundle_cleared(target, value, CallSite(value, None, None, scope, self.unit))
        if name is not None:
            message = f"os.environ[{name!r}] = '': requests and huggingface_hub then check no TLS certificate"
            self.issues.append(Issue(TlsVerifyOff, message, node, self.unit))


HANDLERS: dict[type[ast.stmt], Callable[[Walker, Any, Scope, int], None]] = {
    ast.Import: Walker.import_, ast.ImportFrom: Walker.import_from,
    ast.FunctionDef: Walker.function, ast.AsyncFunctionDef: Walker.function, ast.ClassDef: Walker.class_,
    ast.Assign: Walker.assign_, ast.AnnAssign: Walker.ann_assign, ast.AugAssign: Walker.aug_assign,
    ast.If: Walker.branch, ast.While: Walker.branch, ast.For: Walker.loop, ast.AsyncFor: Walker.loop,
    ast.With: Walker.with_, ast.AsyncWith: Walker.with_, ast.Try: Walker.try_, ast.TryStar: Walker.try_,
    ast.Match: Walker.match, ast.Global: Walker.global_,
    ast.Expr: Walker.plain, ast.Return: Walker.plain, ast.Raise: Walker.plain, ast.Assert: Walker.plain,
    ast.Delete: Walker.plain,
}


def analyse(units: list[Unit], tick: Callable[[], None]) -> list[Issue]:
    """Every issue in these units (a module, or a notebook's cells in order), in walk order."""
    return Walker(tick).run(units)
