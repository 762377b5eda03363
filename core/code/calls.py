"""Finding the calls inside expressions and handing each to the checks that want it.

Expressions are searched with an explicit stack (a pathological file cannot make this recurse).
Besides plain calls: `functools.partial(f, ...)` is judged as the call it prepares, a risky function
passed as an argument (`map(pickle.loads, xs)`) is judged as called without options, and downloads
and loads are remembered in order so that "downloaded, then loaded without a hash check" (PY305)
can be told at the end of each function.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from airlock.core.code import checks
from airlock.core.code.callsite import CallSite
from airlock.core.code.checks import Issue
from airlock.core.code.checks.deserialize import LOADER_RULES, MSGPACK_PATCHED
from airlock.core.code.evaluate import value_of
from airlock.core.code.names import DOWNLOADS
from airlock.core.code.rules import UnverifiedDownloadLoaded
from airlock.core.code.values import Const, Local, Obj, Param, Ref, Scope, Value

# Names a check can judge when the function is passed around uncalled.
REFERENCE_CHECKED = frozenset({
    "torch.load", "pickle.load", "pickle.loads", "dill.load", "dill.loads", "cloudpickle.load",
    "cloudpickle.loads", "joblib.load", "pandas.read_pickle", "marshal.load", "marshal.loads", "yaml.load",
    "yaml.unsafe_load", "yaml.full_load", "jsonpickle.decode", "shelve.open",
})
# Calls that take a function without calling it.
NOT_A_CALL = frozenset({
    "builtins.isinstance", "builtins.issubclass", "builtins.hasattr", "builtins.id", "builtins.getattr",
    "builtins.repr", "builtins.str", "builtins.print",
})
# Keywords of a download call that check what arrives (torch.hub's hash_prefix, pooch's known_hash...).
INTEGRITY_KEYWORDS = frozenset({
    "hash_prefix", "check_hash", "sha256", "md5", "known_hash", "file_hash", "checksum", "expected_hash",
    "hash",
})
PARTIALS = frozenset({"functools.partial", "functools.partialmethod"})
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


class CallFinder:
    def __init__(self, tick: Callable[[], None]) -> None:
        checks.load_checks()
        self.tick = tick
        self.issues: list[Issue] = []
        self.unit = 0
        # Downloads, hashes and loads of the function (or module) being walked, in order, for PY305.
        self.events: list[tuple[str, CallSite | Issue]] = []

    def assign(self, target: ast.expr, expr: ast.expr | None, value: Value, scope: Scope,
               conditional: bool) -> None:
        raise NotImplementedError  # the statement walker binds names

    def expressions(self, roots: list[ast.expr], scope: Scope) -> None:
        stack: list[tuple[ast.AST, Scope]] = [(r, scope) for r in reversed(roots)]
        while stack:
            self.tick()
            node, where = stack.pop()
            if isinstance(node, ast.Call):
                self.call(node, where)
            elif isinstance(node, ast.Lambda):
                inner = Scope("function", where)
                for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                    inner.names[arg.arg] = Param(arg.arg, None)
                stack.append((node.body, inner))
                continue
            elif isinstance(node, COMPREHENSIONS):
                inner = Scope("function", where)
                for comp in node.generators:
                    stack.append((comp.iter, where))
                    self.assign(comp.target, None, Obj(None, value_of(comp.iter, where).flags), inner, True)
                    stack.extend((cond, inner) for cond in comp.ifs)
                parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
                stack.extend((p, inner) for p in parts)
                continue
            elif isinstance(node, ast.NamedExpr):
                self.assign(node.target, node.value, value_of(node.value, where), where, True)
            children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr | ast.keyword)]
            stack.extend((c, where) for c in reversed(children))

    def call(self, node: ast.Call, scope: Scope) -> None:
        func = value_of(node.func, scope)
        name = func.name if isinstance(func, Ref) else None
        # A function this file defines is not the library method of the same name.
        method = None
        if isinstance(node.func, ast.Attribute) and not isinstance(func, Local):
            method = node.func.attr
        if name == "msgpack_numpy.patch":
            scope.module.names[MSGPACK_PATCHED] = Const((True,))
        if name in PARTIALS and node.args:
            self.partial(node, scope)
        else:
            self.dispatch(CallSite(node, name, method, scope, self.unit))
            self.references(node, name, scope)
        if name in DOWNLOADS and not any(k.arg in INTEGRITY_KEYWORDS for k in node.keywords):
            self.events.append(("download", CallSite(node, name, method, scope, self.unit)))
        elif name is not None and name.startswith("hashlib."):
            self.events.append(("hash", CallSite(node, name, method, scope, self.unit)))

    def dispatch(self, site: CallSite) -> None:
        found: list[checks.CheckFn] = []
        if site.name is not None:
            found.extend(checks.BY_NAME.get(site.name, ()))
        if site.method is not None:
            found.extend(f for f in checks.BY_METHOD.get(site.method, ()) if f not in found)
        if not site.reference:
            found.extend(checks.ANY_CALL)
        for fn in found:
            for issue in fn(site):
                self.issues.append(issue)
                # A call given nothing to load (keras.config.enable_unsafe_deserialization()) is a
                # switch, not the load of a downloaded file.
                bare = isinstance(site.node, ast.Call) and not site.node.args and not site.node.keywords
                if issue.rule.id in LOADER_RULES and not bare:
                    self.events.append(("load", issue))

    def partial(self, node: ast.Call, scope: Scope) -> None:
        """functools.partial(f, *args, **kw) is judged as the call f(*args, **kw) it prepares."""
        target = node.args[0]
        inner = ast.Call(func=target, args=node.args[1:], keywords=node.keywords)
        ast.copy_location(inner, node)
        inner.end_lineno, inner.end_col_offset = node.end_lineno, node.end_col_offset
        func = value_of(target, scope)
        name = func.name if isinstance(func, Ref) else None
        method = target.attr if isinstance(target, ast.Attribute) else None
        self.dispatch(CallSite(inner, name, method, scope, self.unit))

    def references(self, node: ast.Call, name: str | None, scope: Scope) -> None:
        """Risky functions passed as arguments are called elsewhere, without the safe options."""
        if name in NOT_A_CALL:
            return
        for expr in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(expr, ast.Name | ast.Attribute):
                value = value_of(expr, scope)
                if isinstance(value, Ref) and value.name in REFERENCE_CHECKED:
                    self.dispatch(CallSite(expr, value.name, None, scope, self.unit, reference=True))

    def close_events(self) -> None:
        """PY305: a download followed, in the same function or module, by a loader that runs code,
        with no hash computed in between."""
        pending: list[CallSite] = []
        for kind, item in self.events:
            if kind == "download" and isinstance(item, CallSite):
                pending.append(item)
            elif kind == "hash":
                pending.clear()
            elif isinstance(item, Issue) and pending:
                line = getattr(item.node, "lineno", "?")
                for site in pending:
                    message = (f"{site.name} downloads a file that line {line} then loads "
                               f"({item.rule.title}) without checking its hash")
                    self.issues.append(Issue(UnverifiedDownloadLoaded, message, site.node, site.unit))
                pending.clear()
        self.events = []
