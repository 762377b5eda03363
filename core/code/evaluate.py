"""An expression's `Value`, worked out from the syntax tree alone (see values.py).

Bounded: an expression nested deeper than MAX_DEPTH is simply unknown, so a pathological file
cannot make this recurse without end.
"""

from __future__ import annotations

import ast

from airlock.core.code.names import BUILTINS, PASS_THROUGH, canonical, flags_of_call
from airlock.core.code.values import (
    FROM_FILE,
    PRODUCED,
    UNKNOWN,
    Const,
    DictValue,
    Local,
    Obj,
    Param,
    Ref,
    Scope,
    Value,
    merge,
)

MAX_DEPTH = 24
COPIES = frozenset({"builtins.dict", "copy.copy", "copy.deepcopy"})
_IMPORTERS = frozenset({"builtins.__import__", "importlib.import_module", "importlib.__import__"})
# Methods whose result carries the receiver's content (a file's text, a response's body...).
_PATH_READERS = frozenset({"read_text", "read_bytes", "open"})


def value_of(expr: ast.expr, scope: Scope, depth: int = 0) -> Value:
    if depth > MAX_DEPTH:
        return UNKNOWN
    depth += 1
    if isinstance(expr, ast.Constant):
        return Const((expr.value,))
    if isinstance(expr, ast.Name):
        return name_value(expr.id, scope)
    if isinstance(expr, ast.Attribute):
        return attribute(value_of(expr.value, scope, depth), expr.attr)
    if isinstance(expr, ast.Call):
        return call_value(expr, scope, depth)
    if isinstance(expr, ast.BinOp):
        return _binop(expr, scope, depth)
    if isinstance(expr, ast.JoinedStr):
        return _fstring(expr, scope, depth)
    if isinstance(expr, ast.Dict):
        items: dict[str, ast.expr] = {}
        spread: list[ast.expr | Value] = []
        for key, val in zip(expr.keys, expr.values, strict=True):
            if key is None:
                spread.append(val)
            elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                items[key.value] = val
        return DictValue(items, spread)
    if isinstance(expr, ast.IfExp):
        return merge(value_of(expr.body, scope, depth), value_of(expr.orelse, scope, depth))
    if isinstance(expr, ast.Subscript):
        base = value_of(expr.value, scope, depth)
        key = expr.slice
        if isinstance(base, DictValue) and isinstance(key, ast.Constant) and key.value in base.items:
            return value_of(base.items[key.value], scope, depth)
        return Obj(None, base.flags)
    if isinstance(expr, ast.Tuple | ast.List | ast.Set):
        flags = 0
        for element in expr.elts[:8]:
            flags |= value_of(element, scope, depth).flags
        return Obj(None, flags)
    if isinstance(expr, ast.NamedExpr | ast.Await):
        return value_of(expr.value, scope, depth)
    if isinstance(expr, ast.Lambda):
        return Local("<lambda>")
    if isinstance(expr, ast.DictComp):
        # {k: v for k, v in kwargs.items() if ...}: a part of what the caller passed
        source = expr.generators[0].iter
        if isinstance(source, ast.Call) and isinstance(source.func, ast.Attribute):
            holder = value_of(source.func.value, scope, depth)
            if isinstance(holder, Param):
                return holder
    return UNKNOWN


def name_value(name: str, scope: Scope) -> Value:
    value = scope.lookup(name)
    if value is not None:
        return value
    if name in BUILTINS:
        return Ref(f"builtins.{name}")
    stars = scope.module.star_modules
    if stars:
        return Ref(canonical(f"{stars[-1]}.{name}"))
    return UNKNOWN


def attribute(base: Value, attr: str) -> Value:
    if isinstance(base, Ref):
        return Ref(canonical(f"{base.name}.{attr}"))
    if isinstance(base, Obj):
        return Obj(f"{base.origin}.{attr}" if base.origin else None, base.flags)
    return UNKNOWN


def call_value(call: ast.Call, scope: Scope, depth: int) -> Value:
    if isinstance(call.func, ast.Attribute) and call.func.attr == "copy" and not call.args:
        receiver = value_of(call.func.value, scope, depth)
        if isinstance(receiver, Param | DictValue):
            return receiver  # kwargs.copy() holds what kwargs holds
    func = value_of(call.func, scope, depth)
    if isinstance(func, Ref):
        name = func.name
        if name == "builtins.getattr" and len(call.args) >= 2:
            attr = call.args[1]
            if isinstance(attr, ast.Constant) and isinstance(attr.value, str):
                return attribute(value_of(call.args[0], scope, depth), attr.value)
            return UNKNOWN
        if name in _IMPORTERS and call.args:
            module = call.args[0]
            if isinstance(module, ast.Constant) and isinstance(module.value, str):
                return Ref(canonical(module.value))
            return UNKNOWN
        if name in COPIES and len(call.args) == 1 and not call.keywords:
            inner = value_of(call.args[0], scope, depth)
            if isinstance(inner, Param | DictValue):
                return inner  # dict(kwargs), copy.deepcopy(kwargs)
        if name == "builtins.dict" and not call.args:
            items = {k.arg: k.value for k in call.keywords if k.arg is not None}
            spread: list[ast.expr | Value] = [k.value for k in call.keywords if k.arg is None]
            return DictValue(items, spread)
        flags = flags_of_call(name)
        if name in PASS_THROUGH:
            for arg in call.args[:3]:
                flags |= value_of(arg, scope, depth).flags
            if name == "io.BytesIO" and not call.args and not call.keywords:
                flags |= PRODUCED  # an empty buffer: whatever it will hold, this code writes it
        return Obj(f"{name}()", flags)
    if isinstance(func, Obj):
        flags = func.flags
        origin = func.origin or ""
        method = origin.rsplit(".", 1)[-1]
        if origin.startswith("pathlib.") and method in _PATH_READERS:
            flags |= FROM_FILE
        return Obj(f"{origin}()" if origin else None, flags)
    return UNKNOWN


def _binop(expr: ast.BinOp, scope: Scope, depth: int) -> Value:
    left = value_of(expr.left, scope, depth)
    right = value_of(expr.right, scope, depth)
    if (
        isinstance(expr.op, ast.Add)
        and isinstance(left, Const)
        and isinstance(right, Const)
        and len(left.values) == 1
        and len(right.values) == 1
    ):
        a, b = left.values[0], right.values[0]
        if isinstance(a, str) and isinstance(b, str) and len(a) + len(b) <= 4096:
            return Const((a + b,))
    return Obj(None, (left.flags | right.flags) & ~PRODUCED)


def _fstring(expr: ast.JoinedStr, scope: Scope, depth: int) -> Value:
    parts, flags, constant = [], 0, True
    for part in expr.values:
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            parts.append(part.value)
        elif isinstance(part, ast.FormattedValue):
            constant = False
            flags |= value_of(part.value, scope, depth).flags
    return Const(("".join(parts),)) if constant else Obj(None, flags & ~PRODUCED)


def literal_prefix(expr: ast.expr, scope: Scope) -> str | None:
    """The text a string expression starts with, when the code spells it out (URLs: http://...)."""
    for _ in range(MAX_DEPTH):
        if isinstance(expr, ast.JoinedStr):
            first = expr.values[0] if expr.values else None
            return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add | ast.Mod):
            expr = expr.left
            continue
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "format":
            expr = expr.func.value
            continue
        value = value_of(expr, scope)
        if isinstance(value, Const) and len(value.values) == 1 and isinstance(value.values[0], str):
            return value.values[0]
        return None
    return None
