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
    stack: list[Any] = []
    meta: list[list[Any]] = []
    memo: dict[int, Any] = {}
    table, supported = OPCODE_TABLE, policy.opcodes
    arg: Any
    # As the machine does: bytes in memory directly, a source read through pread a window at a time.
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
        if entry is not None and entry[2] == NOARG:  # most opcodes: skip the decoder
            name, arg = entry[0], None
            pos += 1
        elif entry is not None and entry[2] == FIXEDARG and pos + entry[3] < wend:
            name, arg = entry[0], entry[4].unpack_from(win, pos + 1 - base)[0]
            pos += 1 + entry[3]
        else:
            op = read_op_in(buf, win, base, wend, pos, end)
            name, arg = op.name, op.arg
            pos += op.length
        if name not in supported:
            return f"opcode {name} is not supported by the weights_only unpickler"
        # The most frequent opcodes of a checkpoint first.
        if name not in _STRUCTURAL:  # NONE, NEWTRUE/NEWFALSE, BININT*, BINFLOAT, BINUNICODE, LONG1…
            stack.append(("const", arg))
        elif name == "BINPUT" or name == "LONG_BINPUT":
            memo[arg] = stack[-1]
        elif name == "BINGET" or name == "LONG_BINGET":
            if arg not in memo:
                return f"memo key {arg} was never stored"
            stack.append(memo[arg])
        elif name == "MARK":
            meta.append(stack)
            stack = []
        elif name == "STOP":
            return None
        elif name == "GLOBAL":
            module, attr = arg
            if (module, attr) in policy.name_mapping:
                module, attr = policy.name_mapping[(module, attr)]
            elif module in policy.import_mapping:
                module = policy.import_mapping[module]
            full = f"{module}.{attr}"
            if module in policy.blocked or full not in policy.allowed:
                return f"global {full} is not in torch's weights_only allowlist"
            stack.append(("global", full))
        elif name == "NEWOBJ":
            stack.pop()
            cls = stack.pop()
            if cls[0] != "global":
                return "NEWOBJ on something that is not an allowed class"
            stack.append((_RESULT_TAGS.get(cls[1], "obj"), cls[1]))
        elif name == "REDUCE":
            stack.pop()
            func = stack[-1]
            if func[0] != "global":
                return "REDUCE calls something that is not an allowed global"
            tag = _RESULT_TAGS.get(func[1])
            if tag is None:
                tag = "tensor" if func[1].startswith(("torch._utils._rebuild", "torch._tensor.")) else "obj"
            stack[-1] = (tag, func[1])
        elif name == "BUILD":
            stack.pop()
            if stack[-1][0] not in ("tensor", "param", "odict", "counter", "obj"):
                return f"BUILD on a {stack[-1][0]}, which the weights_only unpickler refuses"
        elif name in ("APPEND", "APPENDS"):
            if name == "APPEND":
                stack.pop()
            else:
                stack = meta.pop()
            if stack[-1][0] != "list":
                return f"{name} to a {stack[-1][0]}"
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                del stack[-2:]
            else:
                stack = meta.pop()
            if stack[-1][0] not in _DICT_TAGS:
                return f"{name} on a {stack[-1][0]}"
        elif name == "TUPLE":
            items = stack
            stack = meta.pop()
            stack.append(("tuple", items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = stack[-n:]
            if len(items) != n:
                return "stack underflow"
            del stack[-n:]
            stack.append(("tuple", items))
        elif name == "EMPTY_TUPLE":
            stack.append(("tuple", []))
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
            stack.append((name[6:].lower(), None))
        elif name == "BINPERSID":
            pid = stack.pop()
            if pid[0] == "tuple":
                first = pid[1][0] if pid[1] else None
                if first is None or first[0] != "const" or first[1] not in ("storage", b"storage"):
                    return "a persistent id that is not a storage"
            elif not (pid[0] == "const" and type(pid[1]) is int):
                return "a persistent id that is neither a tuple nor an int"
            stack.append(("storage", None))
        # PROTO: nothing to do
