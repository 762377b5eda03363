"""What the walker knows about a name or an expression, learnt from the code and never by running it.

- `Ref("torch.load")`: a module, function or class reached through imports, aliases and attributes;
- `Const((False,))`: the literal value(s) a name can hold (several after assignments in branches);
- `Param`: a function's parameter (its default, if any, is what it holds unless a caller says
  otherwise; `**kwargs` parameters are what a function forwards);
- `Obj`: anything else (a call's result...), with `flags` saying where its content came from;
- `DictValue`: a dict literal or `dict(...)` call with string keys, for `**kwargs` at a call;
- `Local`: a function or class this file defines (it shadows an imported name of the same spelling).
"""

from __future__ import annotations

import ast

# Obj flags. TAINT: text read from a file or the network; DOWNLOADED: a path to downloaded content;
# PRODUCED: bytes this code just serialised itself (pickle.dumps, a fresh BytesIO).
FROM_FILE = 1
FROM_NET = 2
DOWNLOADED = 4
PRODUCED = 8
TAINT = FROM_FILE | FROM_NET


class Value:
    __slots__ = ()
    flags = 0


class Ref(Value):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Ref({self.name!r})"


class Const(Value):
    __slots__ = ("values",)

    def __init__(self, values: tuple[object, ...]) -> None:
        self.values = values

    def __repr__(self) -> str:
        return f"Const({self.values!r})"


class Param(Value):
    __slots__ = ("default", "kind", "name")

    def __init__(self, name: str, default: Value | None, kind: str = "arg") -> None:
        self.name = name
        self.default = default  # None: no default, a caller must pass it
        self.kind = kind  # "arg", "vararg" (*args) or "kwarg" (**kwargs)

    def __repr__(self) -> str:
        return f"Param({self.name!r}, {self.default!r}, {self.kind!r})"


class Obj(Value):
    __slots__ = ("flags", "origin")

    def __init__(self, origin: str | None, flags: int = 0) -> None:
        self.origin = origin  # the call that made it ("requests.get"), or None when unknown
        self.flags = flags

    def __repr__(self) -> str:
        return f"Obj({self.origin!r}, {self.flags})"


class DictValue(Value):
    __slots__ = ("items", "maybe", "unknown")

    def __init__(self, items: dict[str, ast.expr], unknown: list[ast.expr | Value],
                 maybe: frozenset[str] = frozenset()) -> None:
        self.items = items  # string key → the expression of its value
        self.unknown = unknown  # `**other` spread into it (or the dict it extends), keys not known
        self.maybe = maybe  # keys that one branch sets and another does not, or sets differently

    def with_item(self, key: str, expr: ast.expr) -> DictValue:
        """After `d[key] = expr`."""
        return DictValue({**self.items, key: expr}, self.unknown, self.maybe - {key})

    def __repr__(self) -> str:
        return f"DictValue({sorted(self.items)!r})"


class Local(Value):
    __slots__ = ("bases", "body", "name")

    def __init__(self, name: str, bases: list[Value] | None = None) -> None:
        self.name = name
        self.bases = bases or []  # a class's base classes, as far as they are known
        self.body: object = None  # a function whose calls are judged at its callers (walker.Wrapper)


UNKNOWN = Obj(None)


def merge(old: Value, new: Value) -> Value:
    """What a name holds after an assignment that may not run (inside a branch or a loop)."""
    if isinstance(old, Const) and isinstance(new, Const):
        return Const(old.values + tuple(v for v in new.values if not _contains(old.values, v)))
    if isinstance(old, Ref) and isinstance(new, Ref) and old.name == new.name:
        return old
    if isinstance(old, Param) and isinstance(old.default, Const) and isinstance(new, Const):
        return merge(old.default, new)  # `if x is None: x = False`: the default or the new value
    if isinstance(old, DictValue) and isinstance(new, Param):
        new = DictValue({}, [new])  # the caller's **kwargs, with or without the keys set in a branch
    if isinstance(old, Param) and isinstance(new, DictValue):
        old = DictValue({}, [old])
    if isinstance(old, DictValue) and isinstance(new, DictValue):
        same = {k: v for k, v in old.items.items()
                if k in new.items and ast.dump(v) == ast.dump(new.items[k])}
        maybe = (old.maybe | new.maybe | old.items.keys() | new.items.keys()) - same.keys()
        unknown = old.unknown + [u for u in new.unknown if not any(u is o for o in old.unknown)]
        return DictValue(same, unknown, frozenset(maybe))
    taint = (old.flags | new.flags) & ~PRODUCED
    return Obj(None, taint | (old.flags & new.flags & PRODUCED))


def _contains(values: tuple[object, ...], value: object) -> bool:
    return any(type(v) is type(value) and v == value for v in values)


class Scope:
    """Names bound in a module, function, class or comprehension, in the order the code binds them."""

    __slots__ = ("enclosing", "globals_", "kind", "module", "names", "star_modules")

    def __init__(self, kind: str, enclosing: Scope | None) -> None:
        self.kind = kind  # "module", "function" or "class"
        self.names: dict[str, Value] = {}
        # Functions see enclosing functions and the module, never a class body around them.
        while enclosing is not None and enclosing.kind == "class" and kind == "function":
            enclosing = enclosing.enclosing
        self.enclosing: Scope | None = enclosing
        self.module: Scope = enclosing.module if enclosing is not None else self
        self.globals_: set[str] = set()
        self.star_modules: list[str] = []  # `from X import *` (module scope only)

    def lookup(self, name: str) -> Value | None:
        scope: Scope | None = self.module if name in self.globals_ else self
        while scope is not None:
            value = scope.names.get(name)
            if value is not None:
                return value
            scope = scope.enclosing
        return None

    def bind(self, name: str, value: Value, conditional: bool) -> None:
        target = self.module if name in self.globals_ else self
        old = target.names.get(name)
        target.names[name] = merge(old, value) if conditional and old is not None else value

    def function_kwargs(self) -> str | None:
        """The name of the `**kwargs` parameter of the innermost function, if it has one."""
        scope: Scope | None = self
        while scope is not None and scope.kind != "function":
            scope = scope.enclosing
        if scope is None:
            return None
        for name, value in scope.names.items():
            if isinstance(value, Param) and value.kind == "kwarg":
                return name
        return None
