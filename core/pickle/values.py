"""Symbolic values on the pickle machine's stack. Nothing here is a real Python object from the file.

Constants (int, float, str, bytes, bool, None, bytearray) are kept as plain Python values:
they are inert. Everything that would need code to build is one of the classes below.
"""

from __future__ import annotations

from typing import Any


class Global:
    """A name the unpickler would import (`find_class(module, name)`), after `_compat_pickle`."""

    __slots__ = ("module", "name", "offset", "original")

    def __init__(self, module: str, name: str, offset: int, original: tuple[str, str] | None = None):
        self.module = module
        self.name = name
        self.offset = offset
        self.original = original  # the (module, name) written in the file, when mapping changed it

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"Global({self.dotted})"


class Call:
    """The result of REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX, or BUILD calling `__setstate__`.

    `target` is what the call actually reaches (a partial's function, a getattr chain's end),
    or None when it cannot be known without running the pickle. Items appended or set on the
    result (APPENDS / SETITEMS on an OrderedDict, say) and a BUILD state are kept for readers
    such as the torch container parser.
    """

    __slots__ = ("args", "func", "kind", "kwargs", "list_items", "map_items", "node", "offset",
                 "planted", "planted_setstate", "severity", "state", "target")

    def __init__(self, func: Any, args: Any, kind: str, offset: int, kwargs: Any = None) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.kind = kind  # reduce | inst | obj | newobj | newobj_ex | setstate | append | additems
        self.offset = offset
        self.target: Global | None = None
        self.state: Any = None
        self.list_items: list[Any] = []
        self.map_items: list[tuple[Any, Any]] = []
        self.planted_setstate: Any = None  # a `__setstate__` put in the instance dict by BUILD
        # Attributes the loader itself looks up on the instance (__setstate__, extend, append, add)
        # that BUILD or the constructor put into its dict; "<computed>" when the key is only known
        # at load time.
        self.planted: dict[str, Any] | None = None
        self.node: Any = None  # the tree node recording this call
        self.severity = 0

    def __repr__(self) -> str:
        return f"Call({self.target or self.func!r}, {self.args!r})"


class Unknown:
    """A value that only exists when the pickle runs (e.g. a name computed by a call)."""

    __slots__ = ("offset", "reason")

    def __init__(self, reason: str, offset: int) -> None:
        self.reason = reason
        self.offset = offset

    def __repr__(self) -> str:
        return f"Unknown({self.reason})"


class PersistentRef:
    """PERSID / BINPERSID: an object the loader's `persistent_load` provides (torch storages)."""

    __slots__ = ("offset", "pid")

    def __init__(self, pid: Any, offset: int) -> None:
        self.pid = pid
        self.offset = offset

    def __repr__(self) -> str:
        return f"PersistentRef({self.pid!r})"


class Ext:
    """EXT1/2/4: a global taken from the copyreg extension registry by code."""

    __slots__ = ("code", "offset")

    def __init__(self, code: int, offset: int) -> None:
        self.code = code
        self.offset = offset


class PTuple:
    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __repr__(self) -> str:
        return f"PTuple({self.items!r})"


class PList:
    __slots__ = ("items",)

    def __init__(self, items: list[Any] | None = None) -> None:
        self.items = items if items is not None else []

    def __repr__(self) -> str:
        return f"PList({self.items!r})"


class PDict:
    """Keys are kept in order with duplicates (the last one wins in a real load)."""

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[Any, Any]] | None = None) -> None:
        self.items = items if items is not None else []

    def get(self, key: Any) -> Any:
        for k, v in reversed(self.items):
            if type(k) is type(key) and k == key:
                return v
        return None

    def __repr__(self) -> str:
        return f"PDict({self.items!r})"


class PSet:
    __slots__ = ("frozen", "items")

    def __init__(self, items: list[Any] | None = None, frozen: bool = False) -> None:
        self.items = items if items is not None else []
        self.frozen = frozen


class Buffer:
    """NEXT_BUFFER / READONLY_BUFFER: out-of-band data supplied by the caller (protocol 5)."""

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset


class LargeData:
    """A string, bytes or long argument too long to keep (opcodes.LARGE_ARG_BYTES): the opcode that
    carries it, where its bytes are and how many. A constant like any other, never a name."""

    __slots__ = ("length", "offset", "opcode")

    def __init__(self, opcode: str, offset: int, length: int) -> None:
        self.opcode = opcode
        self.offset = offset
        self.length = length

    def __repr__(self) -> str:
        return f"<{self.length:,} bytes of {self.opcode} data at offset {self.offset:,}>"


CONSTANT_TYPES = (int, float, str, bytes, bytearray, bool, type(None), LargeData)


def preview(value: Any, limit: int = 120, _depth: int = 0) -> str:
    """A short, Python-like rendering of a symbolic value, for labels and messages.

    Strings come out as repr() (so control characters are escaped); callers pass the result
    through `safe_text` as well because reprs of non-ASCII text keep bidi characters.
    """
    if _depth > 4:
        return "…"
    # Tuples, not `A | B`, in the hot isinstance checks here and in the machine: `A | B` builds a
    # new union object on every call (~60 ns each, measured).
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[:limit]) + ("…" if len(value) > limit else "")
    elif isinstance(value, CONSTANT_TYPES):
        text = repr(value)
        if len(text) > limit:
            text = text[:limit] + "…"
    elif isinstance(value, Global):
        text = value.dotted
    elif isinstance(value, Call):
        callee = value.target.dotted if value.target else preview(value.func, limit, _depth + 1)
        text = f"{callee}{_args_preview(value.args, limit, _depth)}"
    elif isinstance(value, PTuple):
        inner = ", ".join(preview(v, limit, _depth + 1) for v in value.items[:8])
        more = ", …" if len(value.items) > 8 else ""
        text = f"({inner}{',' if len(value.items) == 1 else ''}{more})"
    elif isinstance(value, PList):
        inner = ", ".join(preview(v, limit, _depth + 1) for v in value.items[:8])
        text = f"[{inner}{', …' if len(value.items) > 8 else ''}]"
    elif isinstance(value, PDict):
        inner = ", ".join(f"{preview(k, 40, _depth + 1)}: {preview(v, 40, _depth + 1)}"
                          for k, v in value.items[:6])
        text = "{" + inner + (", …" if len(value.items) > 6 else "") + "}"
    elif isinstance(value, PSet):
        inner = ", ".join(preview(v, limit, _depth + 1) for v in value.items[:8])
        text = ("frozenset" if value.frozen else "set") + "({" + inner + "})"
    elif isinstance(value, PersistentRef):
        text = f"persistent_load({preview(value.pid, limit, _depth + 1)})"
    elif isinstance(value, Unknown):
        text = f"<{value.reason}>"
    elif isinstance(value, Ext):
        text = f"<extension {value.code}>"
    elif isinstance(value, Buffer):
        text = "<out-of-band buffer>"
    else:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit * 2 else text[: limit * 2] + "…"


def _args_preview(args: Any, limit: int, depth: int) -> str:
    if isinstance(args, PTuple):
        return "(" + ", ".join(preview(a, limit, depth + 1) for a in args.items[:8]) + (
            ", …" if len(args.items) > 8 else "") + ")"
    return f"(*{preview(args, limit, depth + 1)})"
