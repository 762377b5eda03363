"""Rules of the PyTorch containers, and torch's own `weights_only` check replayed without torch.

The "torch weights-only" tier (DESIGN.md) claims that `torch.load(weights_only=True)` accepts a
file. That unpickler accepts far less than "every global is safe": only the opcodes its loop
handles, only GLOBAL (no STACK_GLOBAL), BUILD only on tensors, parameters and OrderedDicts,
SETITEM only on dicts, persistent ids only for storages. `weights_only_refusal` walks the opcodes
with those same rules over a stack of type tags, using the allowlist read from torch's source
(resources/policy/torch_weights_only.json). It claims nothing it is unsure of.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

from airlock.core.errors import FormatError, PolicyMissing
from airlock.core.findings import Rule, Severity
from airlock.core.pickle.opcodes import FIXEDARG, NOARG, OPCODE_TABLE, read_op_in
from airlock.core.pickle.policy import read_policy_text


class WeightsOnly(Rule):
    id = "TZ001"
    severity = Severity.INFO
    title = "torch weights-only"
    help = "Every global and opcode of the checkpoint's pickles is in torch's own weights_only allowlist: "\
        "torch.load(weights_only=True) accepts it."


class LegacyTrailing(Rule):
    id = "TL001"
    severity = Severity.LOW
    title = "Bytes after the last legacy storage"
    help = "torch's legacy loader stops after the last storage; the bytes after it are never read by torch "\
        "but can hide content."


class CustomOperator(Rule):
    id = "TS001"
    severity = Severity.MEDIUM
    title = "Custom TorchScript operator namespace"
    help = "The TorchScript code calls torch.ops.<namespace> outside torch's own namespaces: loading needs "\
        "a native library that registers those operators."


# Operator namespaces registered by torch itself (TS001 rates any other; the graph view flags it).
STANDARD_NAMESPACES = frozenset({
    "aten", "prim", "prims", "quantized", "_quantized", "_caffe2", "profiler", "cuda", "mkldnn",
    "onnx", "sparse", "quantized_decomposed", "rngprims", "higher_order", "c10d", "_c10d_functional",
    "c10d_functional", "_dtensor", "debugprims", "_nested_tensor", "xnnpack", "mkl", "_prims",
    "_higher_order_ops", "inductor", "_inductor", "attr", "_test", "vulkan", "metal", "_quant",
})


class _WeightsOnlyPolicy:
    __slots__ = ("allowed", "blocked", "import_mapping", "name_mapping", "opcodes")

    def __init__(self, allowed: frozenset[str], opcodes: frozenset[str], blocked: frozenset[str],
                 import_mapping: dict[str, str],
                 name_mapping: dict[tuple[str, str], tuple[str, str]]) -> None:
        self.allowed = allowed
        self.opcodes = opcodes
        self.blocked = blocked
        self.import_mapping = import_mapping
        self.name_mapping = name_mapping


@functools.cache
def weights_only_policy() -> _WeightsOnlyPolicy:
    try:
        text = read_policy_text("torch_weights_only.json")
    except (FileNotFoundError, ModuleNotFoundError, OSError) as exc:
        raise PolicyMissing(f"policy data torch_weights_only.json is missing ({exc})") from None
    data = json.loads(text)
    return _WeightsOnlyPolicy(
        frozenset(e["name"] for e in data["entries"]), frozenset(data["opcodes"]),
        frozenset(data["blocked_modules"]), dict(data["import_mapping"]),
        {(a[0], a[1]): (b[0], b[1]) for a, b in data["name_mapping"]})


_DICT_TAGS = ("dict", "odict", "counter")
_RESULT_TAGS = {
    "collections.OrderedDict": "odict",
    "collections.Counter": "counter",
    "builtins.set": "set",
    "torch.nn.parameter.Parameter": "param",
    "torch._utils._rebuild_parameter": "param",
    "torch._utils._rebuild_parameter_with_state": "param",
}


def weights_only_refusal(buf: Any, start: int, end: int) -> str | None:
    """Why torch.load(weights_only=True) would refuse the pickle at buf[start:end]; None if it accepts."""
    try:
        return _replay(buf, start, end, weights_only_policy())
    except FormatError as exc:
        return f"malformed pickle ({exc.message})"
    except (IndexError, KeyError, TypeError, ValueError):
        return "the pickle does not follow what the weights_only unpickler expects"


# Opcodes the replay treats one by one; every other supported opcode pushes a constant.
_STRUCTURAL = frozenset({
    "STOP", "PROTO", "GLOBAL", "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS",
    "MARK", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET",
    "BINPERSID", "BINGET", "LONG_BINGET", "BINPUT", "LONG_BINPUT"})


def _replay(buf: Any, pos: int, end: int, policy: _WeightsOnlyPolicy) -> str | None:
    """Run the pickle at buf[pos:end] the way the weights_only unpickler would: the refusal, or None."""
    replay = _Replay(policy)
    supported, handlers = policy.opcodes, _HANDLERS
    for name, arg in _decoded(buf, pos, end):
        if name not in supported:
            return f"opcode {name} is not supported by the weights_only unpickler"
        if name not in _STRUCTURAL:  # the most frequent: NONE, NEWTRUE/NEWFALSE, BININT*, BINUNICODE, LONG1…
            replay.stack.append(("const", arg))
        elif name == "STOP":
            return None
        elif (refusal := handlers[name](replay, arg)) is not None:
            return refusal
    return None  # not reached: the decoder raises at the end of the bytes


def _decoded(buf: Any, pos: int, end: int) -> Iterator[tuple[str, Any]]:
    """(opcode name, argument) from pos on. As the machine does: bytes in memory directly, a source
    read through pread a window at a time; argument-less and fixed-size opcodes skip the decoder."""
    table = OPCODE_TABLE
    window = getattr(buf, "window", None)
    win, base, wend = buf, 0, 0
    while True:
        if pos + 9 > wend:
            if window is None:
                wend = end
            elif pos < end:
                win, base = window(pos, 9)
                wend = min(base + len(win), end)
        entry = table[win[pos - base]] if pos < wend else None
        if entry is not None and entry[2] == NOARG:
            yield entry[0], None
            pos += 1
        elif entry is not None and entry[2] == FIXEDARG and pos + entry[3] < wend:
            yield entry[0], entry[4].unpack_from(win, pos + 1 - base)[0]
            pos += 1 + entry[3]
        else:
            op = read_op_in(buf, win, base, wend, pos, end)
            yield op.name, op.arg
            pos += op.length


class _Replay:
    """The weights_only unpickler's stack, memo and marks over type tags ("const", "global", "tensor",
    "dict"...), one method per structural opcode. A method returns why torch refuses, or None."""

    __slots__ = ("memo", "meta", "policy", "stack")

    def __init__(self, policy: _WeightsOnlyPolicy) -> None:
        self.policy = policy
        self.stack: list[Any] = []
        self.meta: list[list[Any]] = []  # the stacks saved by MARK
        self.memo: dict[int, Any] = {}

    def put(self, key: int) -> str | None:
        self.memo[key] = self.stack[-1]
        return None

    def get(self, key: int) -> str | None:
        if key not in self.memo:
            return f"memo key {key} was never stored"
        self.stack.append(self.memo[key])
        return None

    def mark(self, _: None) -> str | None:
        self.meta.append(self.stack)
        self.stack = []
        return None

    def pop_mark(self) -> list[Any]:
        """The items since the last MARK; the stack before it becomes current again."""
        items = self.stack
        self.stack = self.meta.pop()
        return items

    def global_(self, arg: tuple[str, str]) -> str | None:
        policy = self.policy
        module, attr = arg
        if (module, attr) in policy.name_mapping:
            module, attr = policy.name_mapping[(module, attr)]
        elif module in policy.import_mapping:
            module = policy.import_mapping[module]
        full = f"{module}.{attr}"
        if module in policy.blocked or full not in policy.allowed:
            return f"global {full} is not in torch's weights_only allowlist"
        self.stack.append(("global", full))
        return None

    def newobj(self, _: None) -> str | None:
        self.stack.pop()
        cls = self.stack.pop()
        if cls[0] != "global":
            return "NEWOBJ on something that is not an allowed class"
        self.stack.append((_RESULT_TAGS.get(cls[1], "obj"), cls[1]))
        return None

    def reduce(self, _: None) -> str | None:
        self.stack.pop()
        func = self.stack[-1]
        if func[0] != "global":
            return "REDUCE calls something that is not an allowed global"
        tag = _RESULT_TAGS.get(func[1])
        if tag is None:
            tag = "tensor" if func[1].startswith(("torch._utils._rebuild", "torch._tensor.")) else "obj"
        self.stack[-1] = (tag, func[1])
        return None

    def build(self, _: None) -> str | None:
        self.stack.pop()
        if self.stack[-1][0] not in ("tensor", "param", "odict", "counter", "obj"):
            return f"BUILD on a {self.stack[-1][0]}, which the weights_only unpickler refuses"
        return None

    def append(self, _: None) -> str | None:
        self.stack.pop()
        return self._into("APPEND to", ("list",))

    def appends(self, _: None) -> str | None:
        self.pop_mark()
        return self._into("APPENDS to", ("list",))

    def setitem(self, _: None) -> str | None:
        del self.stack[-2:]
        return self._into("SETITEM on", _DICT_TAGS)

    def setitems(self, _: None) -> str | None:
        self.pop_mark()
        return self._into("SETITEMS on", _DICT_TAGS)

    def _into(self, what: str, tags: tuple[str, ...]) -> str | None:
        """The container the items went into must be one the unpickler fills that way."""
        if self.stack[-1][0] not in tags:
            return f"{what} a {self.stack[-1][0]}"
        return None

    def tuple_(self, _: None) -> str | None:
        items = self.pop_mark()
        self.stack.append(("tuple", items))
        return None

    def small_tuple(self, n: int) -> str | None:
        items = self.stack[-n:]
        if len(items) != n:
            return "stack underflow"
        del self.stack[-n:]
        self.stack.append(("tuple", items))
        return None

    def empty(self, tag: str) -> str | None:
        self.stack.append((tag, [] if tag == "tuple" else None))
        return None

    def persistent_id(self, _: None) -> str | None:
        pid = self.stack.pop()
        if pid[0] == "tuple":
            first = pid[1][0] if pid[1] else None
            if first is None or first[0] != "const" or first[1] not in ("storage", b"storage"):
                return "a persistent id that is not a storage"
        elif not (pid[0] == "const" and type(pid[1]) is int):
            return "a persistent id that is neither a tuple nor an int"
        self.stack.append(("storage", None))
        return None

    def nothing(self, _: Any) -> str | None:  # PROTO
        return None


_Handler = Callable[[_Replay, Any], "str | None"]
_HANDLERS: dict[str, _Handler] = {
    "BINPUT": _Replay.put, "LONG_BINPUT": _Replay.put, "BINGET": _Replay.get, "LONG_BINGET": _Replay.get,
    "MARK": _Replay.mark, "GLOBAL": _Replay.global_, "NEWOBJ": _Replay.newobj, "REDUCE": _Replay.reduce,
    "BUILD": _Replay.build, "APPEND": _Replay.append, "APPENDS": _Replay.appends,
    "SETITEM": _Replay.setitem, "SETITEMS": _Replay.setitems, "TUPLE": _Replay.tuple_,
    "TUPLE1": lambda r, _: r.small_tuple(1), "TUPLE2": lambda r, _: r.small_tuple(2),
    "TUPLE3": lambda r, _: r.small_tuple(3), "EMPTY_TUPLE": lambda r, _: r.empty("tuple"),
    "EMPTY_LIST": lambda r, _: r.empty("list"), "EMPTY_DICT": lambda r, _: r.empty("dict"),
    "EMPTY_SET": lambda r, _: r.empty("set"), "BINPERSID": _Replay.persistent_id, "PROTO": _Replay.nothing,
}
assert set(_HANDLERS) == _STRUCTURAL - {"STOP"}
