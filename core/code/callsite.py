"""One call the walker met, as the checks see it: the callee's name and what is passed for a parameter.

A parameter is *given* (by keyword, by position, or through a `**dict` the code spells out),
*absent*, *spread* (a `**dict`/`*args` whose content Airlock cannot see could pass it), or
*forwarded* (the enclosing function's own `**kwargs`: its caller decides, and Airlock judges that
caller at its own call site).
"""

from __future__ import annotations

import ast

from airlock.core.code.evaluate import value_of
from airlock.core.code.values import Const, DictValue, Obj, Param, Ref, Scope, Value

GIVEN, ABSENT, SPREAD, FORWARDED = "given", "absent", "spread", "forwarded"


class Arg:
    __slots__ = ("expr", "how", "value")

    def __init__(self, how: str, expr: ast.expr | None = None, value: Value | None = None) -> None:
        self.how = how
        self.expr = expr
        self.value = value


class CallSite:
    __slots__ = ("method", "name", "node", "reference", "scope", "unit")

    def __init__(
        self,
        node: ast.expr,
        name: str | None,
        method: str | None,
        scope: Scope,
        unit: int,
        reference: bool = False,
    ) -> None:
        self.node = node  # the ast.Call, or the Name/Attribute of a function passed as a callable
        self.name = name  # canonical dotted name of the callee, when it resolves to one
        self.method = method  # the last attribute of the callee expression (`x.from_pretrained` → ...)
        self.scope = scope
        self.unit = unit  # which parsed unit (a notebook cell) the call is in
        self.reference = reference  # passed as a callable (`map(pickle.loads, xs)`), called elsewhere

    @property
    def call(self) -> ast.Call | None:
        return self.node if isinstance(self.node, ast.Call) else None

    def value(self, expr: ast.expr) -> Value:
        return value_of(expr, self.scope)

    def positional(self, index: int) -> ast.expr | None:
        call = self.call
        if call is None:
            return None
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):
                return None
            if i == index:
                return arg
        return None

    def arg(self, keyword: str, position: int | None = None) -> Arg:
        call = self.call
        if call is None:
            return Arg(ABSENT)
        for kw in call.keywords:
            if kw.arg == keyword:
                return Arg(GIVEN, kw.value, self.value(kw.value))
        how = ABSENT
        if position is not None:
            for i, arg in enumerate(call.args):
                if isinstance(arg, ast.Starred):
                    how = SPREAD
                    break
                if i == position:
                    return Arg(GIVEN, arg, self.value(arg))
        forwarded = self.scope.function_kwargs()
        for kw in call.keywords:
            if kw.arg is not None:
                continue
            found = self._from_spread(kw.value, keyword, forwarded)
            if found.how == GIVEN:
                return found
            if found.how == SPREAD or (found.how == FORWARDED and how == ABSENT):
                how = found.how
        return Arg(how)

    def _from_spread(self, expr: ast.expr | Value, keyword: str, forwarded: str | None,
                     depth: int = 0) -> Arg:
        if isinstance(expr, Value):
            value = expr
        elif (isinstance(expr, ast.Name) and expr.id == forwarded) or _configured(expr):
            return Arg(FORWARDED)
        else:
            value = self.value(expr)
        if isinstance(value, Param):
            return Arg(FORWARDED)  # a dict the caller passes in: its caller's call is judged
        if isinstance(value, DictValue):
            if keyword in value.items:
                item = value.items[keyword]
                return Arg(GIVEN, item, self.value(item))
            if keyword in value.maybe:
                return Arg(SPREAD)
            for inner in value.unknown:
                if depth > 8:  # `kw = {**kw, ...}` refers to itself
                    return Arg(SPREAD)
                found = self._from_spread(inner, keyword, forwarded, depth + 1)
                if found.how != ABSENT:
                    return found
            return Arg(ABSENT)
        return Arg(SPREAD)

    def spreads(self) -> bool:
        """Whether `**something` is passed at all."""
        call = self.call
        return call is not None and any(kw.arg is None for kw in call.keywords)


def _configured(expr: ast.expr) -> bool:
    """`self.model_kwargs`: what the object was configured with, judged where it is configured."""
    while isinstance(expr, ast.Attribute | ast.Subscript):
        expr = expr.value
    return isinstance(expr, ast.Name) and expr.id in ("self", "cls")


def truths(value: Value | None) -> tuple[frozenset[bool] | None, str]:
    """The truth values a value can have (None: cannot tell) and a few words saying what it is."""
    if isinstance(value, Const):
        return frozenset(bool(v) for v in value.values), " or ".join(_short(v) for v in value.values)
    if isinstance(value, Param):
        if value.default is None:
            return None, f"the parameter `{value.name}` (no default)"
        known, what = truths(value.default)
        return known, f"the parameter `{value.name}` (default {what})"
    if isinstance(value, Ref):
        return frozenset({True}), value.name
    return None, "a value computed at run time"


def literal_values(value: Value | None) -> tuple[object, ...] | None:
    """The literal values a value can hold (a parameter: its default's), or None when unknown."""
    if isinstance(value, Param):
        value = value.default
    return value.values if isinstance(value, Const) else None


def strings(value: Value | None) -> tuple[list[str] | None, str]:
    """The strings a value can be (None: cannot tell) and a few words saying what it is."""
    if isinstance(value, Const):
        if all(isinstance(v, str) for v in value.values):
            return [str(v) for v in value.values], " or ".join(_short(v) for v in value.values)
        return None, " or ".join(_short(v) for v in value.values)
    if isinstance(value, Param):
        if value.default is None:
            return None, f"the parameter `{value.name}` (no default)"
        found, what = strings(value.default)
        return found, f"the parameter `{value.name}` (default {what})"
    return None, "a value computed at run time" if isinstance(value, Obj) else "a value Airlock cannot see"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
