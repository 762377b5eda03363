"""The symbolic pickle machine: runs the opcodes over stack and memo without building anything.

It mirrors CPython's `_Unpickler` opcode by opcode, but every import becomes a `Global` and
every call a `Call` record whose real target is resolved (partials, getattr walks, EXT codes
registered by the same pickle, `__setstate__` planted through BUILD). Nothing is imported,
called or evaluated. The machine judges each call with the policy and hands back plain records;
`airlock.core.pickle.analyze` turns them into tree nodes and findings.
"""

from __future__ import annotations

import _compat_pickle
import gc
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Severity
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.pickle.opcodes import (
    HIGHEST_PROTOCOL,
    NOARG,
    OPCODE_TABLE,
    OPCODES,
    Op,
    PickleTruncated,
    read_op,
)
from airlock.core.pickle.policy import DENIED, SAFE, Policy, Verdict, load_policy
from airlock.core.pickle.values import (
    CONSTANT_TYPES,
    Buffer,
    Call,
    Ext,
    Global,
    PDict,
    PersistentRef,
    PList,
    PSet,
    PTuple,
    Unknown,
    preview,
)

# Rule ids of the pickle machine (registered in airlock.core.pickle.rules).
DANGEROUS_GLOBAL = "PKL001"
COMPUTED_CALLABLE = "PKL002"
EXTENSION_CODE = "PKL003"
UNKNOWN_FUNCTION = "PKL004"
THIRD_PARTY_CLASS = "PKL005"
DANGEROUS_CALL = "PKL006"
PLANTED_SETSTATE = "PKL007"
BUILD_ON_GLOBAL = "PKL008"
MUTATES_GLOBAL = "PKL009"

# Library helpers whose only job is to rebuild an instance while unpickling (pandas, Cython).
_REBUILDER_PREFIXES = ("__pyx_unpickle_", "_unpickle", "_reconstruct", "_rebuild", "_new_", "__newobj")


@dataclass
class Event:
    """Something the machine judged: a call or a global reference, with its rule and severity."""

    rule: str
    severity: Severity
    message: str
    offset: int
    call: Call | None = None
    glob: Global | None = None


@dataclass
class PickleRun:
    """One pickle of a stream (a stream can hold several, each loaded by a separate `load`)."""

    start: int
    end: int = 0  # offset just past STOP, or where reading stopped
    protocol: int = 0
    complete: bool = False  # reached STOP
    error: FormatError | None = None
    result: Any = None
    op_offsets: array[int] = field(default_factory=lambda: array("Q"))
    calls: list[Call] = field(default_factory=list)
    globals: list[Global] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    persistent_ids: int = 0

    @property
    def severity(self) -> Severity:
        return max((e.severity for e in self.events), default=Severity.NONE)


class _Mark:
    __slots__ = ()


MARK = _Mark()

# build_hook(machine, call, pos) → position to continue reading at (joblib's inline arrays).
BuildHook = Callable[["Machine", Call, int], int]


def compat_name(module: str, name: str) -> tuple[str, str]:
    """Python 2 names the unpickler maps to Python 3 (`_compat_pickle`), as the real loader does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    if module in _compat_pickle.IMPORT_MAPPING:
        return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def _is_class_name(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last[:1].isupper()


def _contains_risk(value: Any) -> bool:
    """Whether arguments hold anything worse than data (a risky call or an unknown value).

    Iterative with a visited set: the memo lets a pickle build containers that hold themselves
    many times over, which a plain recursion would walk exponentially.
    """
    todo = [value]
    seen: set[int] = set()
    budget = 10_000
    while todo and budget > 0:
        budget -= 1
        item = todo.pop()
        if isinstance(item, CONSTANT_TYPES) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Call):
            if item.severity >= Severity.HIGH:
                return True
        elif isinstance(item, Unknown | Ext):
            return True
        elif isinstance(item, PTuple | PList | PSet):
            todo.extend(item.items)
        elif isinstance(item, PDict):
            for k, v in item.items:
                todo.append(k)
                todo.append(v)
    return False


_PLANTABLE = frozenset({"__setstate__", "extend", "append", "add"})
COMPUTED_KEY = "<computed>"
_NAMESPACES = frozenset({"argparse.Namespace", "types.SimpleNamespace"})
_DICT_BUILDERS = frozenset({"builtins.dict", "collections.OrderedDict"})
_ATTRGETTERS = frozenset({"operator.attrgetter", "_operator.attrgetter"})
_METHODCALLERS = frozenset({"operator.methodcaller", "_operator.methodcaller"})
_GETITEMS = frozenset({"operator.getitem", "_operator.getitem"})
_NUMPY_RECONSTRUCT = frozenset({"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"})
_TEXT_CODECS = frozenset({"utf-8", "utf8", "ascii", "latin-1", "latin1", "iso-8859-1"})


def _pairs(value: Any) -> list[tuple[Any, Any]]:
    """Key/value pairs of a dict-like symbolic value (a dict literal or a dict being built)."""
    if isinstance(value, PDict):
        return value.items
    if isinstance(value, Call) and value.target is not None and value.target.dotted in _DICT_BUILDERS:
        pairs = list(value.map_items)
        items = value.args.items if isinstance(value.args, PTuple) else []
        if items and isinstance(items[0], PDict):
            pairs += items[0].items
        elif items and isinstance(items[0], PList | PTuple):
            pairs += [(p.items[0], p.items[1]) for p in items[0].items
                      if isinstance(p, PTuple | PList) and len(p.items) == 2]
        return pairs
    return []


class Machine:
    def __init__(
        self,
        buf: Any,
        *,
        limits: Limits = DEFAULT_LIMITS,
        policy: Policy | None = None,
        build_hook: BuildHook | None = None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.buf = buf
        self.limits = limits
        self.policy = policy or load_policy()
        self.build_hook = build_hook
        self.tick = tick
        # The copyreg extension registry as this pickle leaves it: codes registered through
        # copyreg.add_extension or a SETITEM into copyreg._inverted_registry, and objects put
        # straight into copyreg._extension_cache (which the loader consults first).
        self.extensions: dict[int, tuple[str, str]] = {}
        self.extension_objects: dict[int, Any] = {}
        self.skipped_runs = 0  # quiet pickles past max_pickles_per_stream, read but not kept
        self.end = len(buf)
        self._verdicts: dict[tuple[str, str, tuple[str, str] | None], Verdict] = {}
        self._dispatch: dict[str, Callable[[Any], int | None]] = {
            name: getattr(self, "op_" + name) for name, _ in OPCODES.values() if name != "STOP"}

    # Streams

    def run_stream(self, start: int = 0, end: int | None = None) -> list[PickleRun]:
        """Every pickle in buf[start:end]: after a STOP, whatever follows is read as the next pickle
        (a loader calling `load` again reads it, whatever it looks like) until bytes that do not
        run as one. Past `max_pickles_per_stream`, only pickles that import or call something are
        kept (plus the last), so a thousand `N.` cannot hide the one that matters."""
        end = len(self.buf) if end is None else end
        runs: list[PickleRun] = []
        pos = start
        last_skipped: PickleRun | None = None
        while pos < end:
            run = self.run_one(pos, end)
            quiet = not (run.calls or run.globals or run.events)
            if runs and not run.complete and quiet:
                break  # trailing bytes that are not a pickle: the caller reports them
            if len(runs) < self.limits.max_pickles_per_stream or not quiet or not run.complete:
                runs.append(run)
                last_skipped = None
            else:
                self.skipped_runs += 1
                last_skipped = run
            if not run.complete:
                break
            pos = run.end
        if last_skipped is not None:
            runs.append(last_skipped)
            self.skipped_runs -= 1
        return runs

    def run_one(self, start: int, end: int) -> PickleRun:
        # The machine allocates millions of small acyclic records; the cyclic collector would
        # rescan all of them again and again (it doubled the time of a checkpoint's data.pkl).
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run_one(start, end)
        finally:
            if collecting:
                gc.enable()

    def _run_one(self, start: int, end: int) -> PickleRun:
        run = PickleRun(start=start)
        self.run = run
        self.end = end
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        max_ops = self.limits.max_opcodes
        max_stack = self.limits.max_stack_depth
        dispatch = self._dispatch
        table = OPCODE_TABLE
        tick = self.tick
        pos = start
        buf = self.buf
        offsets = run.op_offsets
        count = 0
        try:
            while True:
                if count >= max_ops:
                    raise LimitExceeded(f"more than {max_ops:,} opcodes in one pickle", pos)
                entry = table[buf[pos]] if pos < end else None
                if entry is not None and entry[2] == NOARG:
                    op = Op(entry[0], None, pos, 1)  # half of all opcodes: skip the decoder
                else:
                    op = read_op(buf, pos, end)
                offsets.append(pos)
                pos += op.length
                count += 1
                if tick is not None and not count & 8191:
                    tick()
                if op.name == "STOP":
                    run.result = self._pop(op.offset)
                    run.complete = True
                    break
                new_pos = dispatch[op.name](op)
                if new_pos is not None:  # a build hook skipped inline data
                    pos = new_pos
                if len(self.stack) > max_stack:
                    raise LimitExceeded(f"stack deeper than {max_stack:,}", op.offset)
        except FormatError as exc:
            run.error = exc
        except LimitExceeded as exc:
            run.error = FormatError(exc.message, exc.offset)
        run.end = pos
        return run

    # Stack helpers

    def _pop(self, offset: int) -> Any:
        if not self.stack:
            raise FormatError("malformed: stack underflow (the loader fails here)", offset)
        return self.stack.pop()

    def _top(self, offset: int) -> Any:
        if not self.stack:
            raise FormatError("malformed: stack underflow (the loader fails here)", offset)
        return self.stack[-1]

    def _pop_mark(self, offset: int) -> list[Any]:
        if not self.metastack:
            raise FormatError("malformed: no MARK on the stack (the loader fails here)", offset)
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _push(self, value: Any) -> None:
        self.stack.append(value)

    def _event(self, rule: str, severity: Severity, message: str, offset: int, *,
               call: Call | None = None, glob: Global | None = None) -> None:
        self.run.events.append(Event(rule, severity, message, offset, call, glob))
        if call is not None and severity > call.severity:
            call.severity = severity

    # Constants

    def _const(self, op: Any) -> None:
        self.stack.append(op.arg)

    op_INT = op_BININT = op_BININT1 = op_BININT2 = op_LONG = op_LONG1 = op_LONG4 = _const
    op_STRING = op_BINSTRING = op_SHORT_BINSTRING = _const
    op_BINBYTES = op_SHORT_BINBYTES = op_BINBYTES8 = op_BYTEARRAY8 = _const
    op_UNICODE = op_SHORT_BINUNICODE = op_BINUNICODE = op_BINUNICODE8 = _const
    op_FLOAT = op_BINFLOAT = _const

    def op_NONE(self, op: Any) -> None:
        self.stack.append(None)

    def op_NEWTRUE(self, op: Any) -> None:
        self.stack.append(True)

    def op_NEWFALSE(self, op: Any) -> None:
        self.stack.append(False)

    def op_NEXT_BUFFER(self, op: Any) -> None:
        self._push(Buffer(op.offset))

    def op_READONLY_BUFFER(self, op: Any) -> None:
        self._top(op.offset)

    def op_PROTO(self, op: Any) -> None:
        if op.arg > HIGHEST_PROTOCOL:
            raise FormatError(f"malformed: unsupported pickle protocol {op.arg}", op.offset)
        self.run.protocol = op.arg

    def op_FRAME(self, op: Any) -> None:
        # The C unpickler only checks that the frame's bytes exist; opcodes may cross frames.
        remaining = self.end - (op.offset + op.length)
        if op.arg > remaining:
            raise PickleTruncated(
                f"truncated: FRAME announces {op.arg:,} bytes, but only {remaining:,} remain", op.offset)

    # Containers

    def op_EMPTY_LIST(self, op: Any) -> None:
        self.stack.append(PList())

    def op_EMPTY_TUPLE(self, op: Any) -> None:
        self.stack.append(PTuple([]))

    def op_EMPTY_DICT(self, op: Any) -> None:
        self.stack.append(PDict())

    def op_EMPTY_SET(self, op: Any) -> None:
        self.stack.append(PSet())

    def op_TUPLE1(self, op: Any) -> None:
        self._push(PTuple([self._pop(op.offset)]))

    def op_TUPLE2(self, op: Any) -> None:
        b = self._pop(op.offset)
        a = self._pop(op.offset)
        self._push(PTuple([a, b]))

    def op_TUPLE3(self, op: Any) -> None:
        c = self._pop(op.offset)
        b = self._pop(op.offset)
        a = self._pop(op.offset)
        self._push(PTuple([a, b, c]))

    def op_TUPLE(self, op: Any) -> None:
        self._push(PTuple(self._pop_mark(op.offset)))

    def op_LIST(self, op: Any) -> None:
        self._push(PList(self._pop_mark(op.offset)))

    def op_DICT(self, op: Any) -> None:
        items = self._pop_mark(op.offset)
        self._push(PDict(list(zip(items[::2], items[1::2], strict=False))))

    def op_FROZENSET(self, op: Any) -> None:
        self._push(PSet(self._pop_mark(op.offset), frozen=True))

    def op_APPEND(self, op: Any) -> None:
        value = self._pop(op.offset)
        self._append_to(self._top(op.offset), [value], op.offset)

    def op_APPENDS(self, op: Any) -> None:
        items = self._pop_mark(op.offset)
        self._append_to(self._top(op.offset), items, op.offset)

    def _append_to(self, target: Any, items: list[Any], offset: int) -> None:
        if isinstance(target, PList):
            target.items.extend(items)
        elif isinstance(target, Call):
            # Not a list: the loader calls target.extend(items), or target.append(item) for each.
            planted = target.planted or {}
            method = planted.get("extend", planted.get(COMPUTED_KEY))
            if method is not None:
                self._planted_call(method, PTuple([PList(items)]), "extend", "append", offset)
            elif "append" in planted:
                for item in items:
                    self._planted_call(planted["append"], PTuple([item]), "append", "append", offset)
            else:
                target.list_items.extend(items)
        elif isinstance(target, Global):
            self._mutates_global(target, "APPEND calls its extend/append", offset)

    def op_SETITEM(self, op: Any) -> None:
        value = self._pop(op.offset)
        key = self._pop(op.offset)
        self._set_items(self._top(op.offset), [(key, value)], op.offset)

    def op_SETITEMS(self, op: Any) -> None:
        items = self._pop_mark(op.offset)
        self._set_items(self._top(op.offset), list(zip(items[::2], items[1::2], strict=False)), op.offset)

    def _set_items(self, target: Any, pairs: list[tuple[Any, Any]], offset: int) -> None:
        if isinstance(target, PDict):
            target.items.extend(pairs)
        elif isinstance(target, Call):
            target.map_items.extend(pairs)
        elif isinstance(target, Global):
            self._mutates_global(target, "SETITEM stores into it", offset)
            self._register_extensions(target.dotted, pairs)

    def _register_extensions(self, registry: str, pairs: list[tuple[Any, Any]]) -> None:
        """The loader's EXT lookup reads copyreg._extension_cache, then copyreg._inverted_registry."""
        for key, value in pairs:
            if not isinstance(key, int):
                continue
            if registry == "copyreg._extension_cache":
                self.extension_objects[key] = value
            elif registry == "copyreg._inverted_registry" and isinstance(value, PTuple | PList) \
                    and len(value.items) == 2 and all(isinstance(v, str) for v in value.items):
                self.extensions[key] = (value.items[0], value.items[1])

    def _mutates_global(self, target: Global, how: str, offset: int) -> None:
        self._event(MUTATES_GLOBAL, Severity.HIGH,
                    f"{how}: the pickle changes {target.dotted} for the whole loading process", offset,
                    glob=target)

    def op_ADDITEMS(self, op: Any) -> None:
        items = self._pop_mark(op.offset)
        target = self._top(op.offset)
        if isinstance(target, PSet):
            target.items.extend(items)
        elif isinstance(target, Call):
            planted = target.planted or {}
            method = planted.get("add", planted.get(COMPUTED_KEY))
            for item in items if method is not None else []:
                self._planted_call(method, PTuple([item]), "add", "additems", op.offset)
        elif isinstance(target, Global):
            self._mutates_global(target, "ADDITEMS calls its add", op.offset)

    # Stack and memo

    def op_POP(self, op: Any) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark(op.offset)

    def op_POP_MARK(self, op: Any) -> None:
        self._pop_mark(op.offset)

    def op_DUP(self, op: Any) -> None:
        self._push(self._top(op.offset))

    def op_MARK(self, op: Any) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def _get(self, op: Any) -> None:
        try:
            self.stack.append(self.memo[op.arg])
        except KeyError:
            raise FormatError(f"malformed: memo key {op.arg} was never stored (the loader fails here)",
                              op.offset) from None

    op_GET = op_BINGET = op_LONG_BINGET = _get

    def _put(self, op: Any) -> None:
        if len(self.memo) >= self.limits.max_memo_entries and op.arg not in self.memo:
            raise LimitExceeded(f"more than {self.limits.max_memo_entries:,} memo entries", op.offset)
        self.memo[op.arg] = self._top(op.offset)

    op_PUT = op_BINPUT = op_LONG_BINPUT = _put

    def op_MEMOIZE(self, op: Any) -> None:
        # Both unpicklers store at "number of filled memo slots", not at the highest index + 1.
        if len(self.memo) >= self.limits.max_memo_entries:
            raise LimitExceeded(f"more than {self.limits.max_memo_entries:,} memo entries", op.offset)
        self.memo[len(self.memo)] = self._top(op.offset)

    def op_PERSID(self, op: Any) -> None:
        self.run.persistent_ids += 1
        self._push(PersistentRef(op.arg, op.offset))

    def op_BINPERSID(self, op: Any) -> None:
        self.run.persistent_ids += 1
        self._push(PersistentRef(self._pop(op.offset), op.offset))

    # Globals

    def _verdict(self, glob: Global) -> Verdict:
        """The policy's verdict on a global, judged under both its mapped and its written name."""
        key = (glob.module, glob.name, glob.original)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self.policy.classify(glob.module, glob.name)
            if glob.original is not None and verdict.kind != DENIED:
                original = self.policy.classify(*glob.original)
                if original.kind == DENIED:
                    verdict = original
            self._verdicts[key] = verdict
        return verdict

    def _global(self, module: str, name: str, offset: int) -> Global:
        mapped = compat_name(module, name)
        glob = Global(mapped[0], mapped[1], offset, (module, name) if mapped != (module, name) else None)
        self.run.globals.append(glob)
        verdict = self._verdict(glob)
        if verdict.kind == DENIED:
            shown = glob.dotted + (f" (written {'.'.join(glob.original)})" if glob.original else "")
            self._event(DANGEROUS_GLOBAL, verdict.severity, f"references {shown}: {verdict.reason}",
                        offset, glob=glob)
        return glob

    def op_GLOBAL(self, op: Any) -> None:
        module, name = op.arg
        self._push(self._global(module, name, op.offset))

    def op_STACK_GLOBAL(self, op: Any) -> None:
        name = self._pop(op.offset)
        module = self._pop(op.offset)
        if type(module) is str and type(name) is str:
            self._push(self._global(module, name, op.offset))
            return
        shown = f"{preview(module, 60)}.{preview(name, 60)}"
        self._event(COMPUTED_CALLABLE, Severity.HIGH,
                    f"imports a name computed at load time ({shown}): it cannot be known without running "
                    "the pickle", op.offset)
        self._push(Unknown(f"global {shown}", op.offset))

    def _ext(self, op: Any) -> None:
        cached = self.extension_objects.get(op.arg)
        if cached is not None:
            self._push(cached)
            return
        registered = self.extensions.get(op.arg)
        if registered is not None:
            self._push(self._global(registered[0], registered[1], op.offset))
            return
        self._event(EXTENSION_CODE, Severity.HIGH,
                    f"{op.name} imports extension code {op.arg} from the copyreg registry, whose target "
                    "depends on the loading process", op.offset)
        self._push(Ext(op.arg, op.offset))

    op_EXT1 = op_EXT2 = op_EXT4 = _ext

    # Calls

    def op_REDUCE(self, op: Any) -> None:
        args = self._pop(op.offset)
        func = self._pop(op.offset)
        self._push(self._call(func, args, "reduce", op.offset))

    def op_NEWOBJ(self, op: Any) -> None:
        args = self._pop(op.offset)
        cls = self._pop(op.offset)
        self._push(self._call(cls, args, "newobj", op.offset))

    def op_NEWOBJ_EX(self, op: Any) -> None:
        kwargs = self._pop(op.offset)
        args = self._pop(op.offset)
        cls = self._pop(op.offset)
        self._push(self._call(cls, args, "newobj_ex", op.offset, kwargs))

    def op_INST(self, op: Any) -> None:
        module, name = op.arg
        cls = self._global(module, name, op.offset)
        items = self._pop_mark(op.offset)
        self._push(self._call(cls, PTuple(items), "inst", op.offset))

    def op_OBJ(self, op: Any) -> None:
        items = self._pop_mark(op.offset)
        if not items:
            raise FormatError("malformed: OBJ without a class (the loader fails here)", op.offset)
        self._push(self._call(items[0], PTuple(items[1:]), "obj", op.offset))

    def op_BUILD(self, op: Any) -> int | None:
        state = self._pop(op.offset)
        inst = self._top(op.offset)
        if isinstance(inst, Call):
            planted = inst.planted or {}
            setstate = planted.get("__setstate__", planted.get(COMPUTED_KEY))
            if setstate is not None:
                # The real unpickler looks up inst.__setstate__ and finds the planted callable.
                self._planted_call(setstate, PTuple([state]), "__setstate__", "setstate", op.offset)
                return None
            self._plant(inst, _pairs(state) + [p for s in (state.items if isinstance(state, PTuple) else [])
                                               for p in _pairs(s)], op.offset, "BUILD")
            inst.state = state
            if self.build_hook is not None:
                return self.build_hook(self, inst, op.offset + 1)
        elif isinstance(inst, Global):
            self._event(BUILD_ON_GLOBAL, Severity.HIGH,
                        f"BUILD rewrites attributes of {inst.dotted} with {preview(state, 80)}", op.offset)
        return None

    def _plant(self, inst: Call, pairs: list[tuple[Any, Any]], offset: int, how: str) -> None:
        """Record instance attributes that the loader itself would look up and call later."""
        for key, value in pairs:
            if isinstance(value, CONSTANT_TYPES):
                continue  # not callable: the loader would fail, not run anything
            if type(key) is str:
                if key not in _PLANTABLE:
                    continue
            elif isinstance(key, CONSTANT_TYPES):
                continue
            else:
                key = COMPUTED_KEY
            if inst.planted is None:
                inst.planted = {}
            inst.planted[key] = value
            if key == "__setstate__":
                inst.planted_setstate = value
                self._event(PLANTED_SETSTATE, Severity.HIGH,
                            f"{how} puts a __setstate__ ({preview(value, 60)}) into an object's dict; "
                            "the next BUILD on it calls it", offset, call=inst)

    def _planted_call(self, func: Any, args: PTuple, attr: str, kind: str, offset: int) -> None:
        call = self._make_call(func, args, kind, offset)
        opcode = {"setstate": "BUILD", "append": "APPEND", "additems": "ADDITEMS"}[kind]
        self._event(PLANTED_SETSTATE, max(Severity.HIGH, Severity(call.severity)),
                    f"{opcode} calls {attr}, planted in the object's dict: {preview(call, 100)}", offset,
                    call=call)

    def _resolve(self, func: Any, depth: int = 0) -> Global | None:
        """The global a call really reaches, or None when it only exists at load time."""
        if depth > 16:
            return None
        if isinstance(func, Global):
            return func
        if isinstance(func, Call) and func.target is not None and func.target.dotted == "functools.partial":
            # partial.__setstate__ (a BUILD with a 4-tuple) replaces the function it was built with.
            inner = None
            if isinstance(func.state, PTuple) and len(func.state.items) == 4:
                inner = func.state.items[0]
            elif isinstance(func.args, PTuple) and func.args.items:
                inner = func.args.items[0]
            return self._resolve(inner, depth + 1) if inner is not None else None
        return None

    def _call(self, func: Any, args: Any, kind: str, offset: int, kwargs: Any = None) -> Any:
        """Record and judge a call; returns what it pushes on the stack."""
        if isinstance(func, Call) and func.target is not None and func.target.dotted in (
                _ATTRGETTERS | _METHODCALLERS) and isinstance(args, PTuple) and len(args.items) == 1:
            applied = self._apply_operator(func, args.items[0], kind, offset)
            if applied is not None:
                return applied
        return self._result_of(self._make_call(func, args, kind, offset, kwargs))

    def _make_call(self, func: Any, args: Any, kind: str, offset: int, kwargs: Any = None) -> Call:
        call = Call(func, args, kind, offset, kwargs)
        call.target = self._resolve(func)
        self.run.calls.append(call)
        self._judge(call)
        if call.target is not None and call.target.dotted in _NAMESPACES:
            self._plant_namespace(call, func, args)
        return call

    def _plant_namespace(self, call: Call, func: Any, args: Any) -> None:
        """Namespace(**kw) (through a partial's keywords) and SimpleNamespace(mapping) set attributes."""
        pairs: list[tuple[Any, Any]] = []
        if isinstance(func, Call) and isinstance(func.state, PTuple) and len(func.state.items) == 4:
            pairs += _pairs(func.state.items[2])
        if isinstance(args, PTuple) and args.items:
            pairs += _pairs(args.items[0])
        self._plant(call, pairs, call.offset, f"{call.target.dotted if call.target else 'a call'}(...)")

    def _apply_operator(self, getter: Call, obj: Any, kind: str, offset: int) -> Any:
        """attrgetter(name)(obj) is the walk obj.name; methodcaller(name, *a)(obj) calls obj.name(*a)."""
        items = getter.args.items if isinstance(getter.args, PTuple) else []
        if not items or type(items[0]) is not str:
            return None
        record = Call(getter, PTuple([obj]), kind, offset)
        self.run.calls.append(record)
        walked = self._walk(obj, items[0], offset)
        if getter.target is not None and getter.target.dotted in _METHODCALLERS:
            return self._result_of(self._make_call(walked, PTuple(items[1:]), "reduce", offset))
        return walked

    def _walk(self, owner: Any, attr: str, offset: int) -> Any:
        """owner.attr: for a global, the dotted name it reaches (judged as a name); else unknown."""
        if isinstance(owner, Global):
            return self._global(owner.module, f"{owner.name}.{attr}", offset)
        return Unknown(f"{preview(owner, 40)}.{attr}", offset)

    def _judge(self, call: Call) -> None:
        target = call.target
        if target is None:
            what = "the result of a call" if isinstance(call.func, Call) else preview(call.func, 60)
            self._event(COMPUTED_CALLABLE, Severity.HIGH,
                        f"calls {what}, a callable only known at load time: {preview(call, 100)}",
                        call.offset, call=call)
            return
        verdict = self._verdict(target)
        if verdict.kind == DENIED:
            self._event(DANGEROUS_CALL, verdict.severity, f"calls {preview(call, 100)}: {verdict.reason}",
                        call.offset, call=call)
            return
        if verdict.kind == SAFE:
            self._judge_safe(call, target.dotted)
            return
        self._judge_unknown(call, target)

    def _judge_unknown(self, call: Call, target: Global) -> None:
        last = target.name.rsplit(".", 1)[-1]
        class_like = _is_class_name(target.name)
        if target.module == "builtins" and not class_like:
            # Harmless builtins are allowlisted; any other builtin function (type, map, iter...) is
            # a tool for building callables at load time, whatever opcode reaches it.
            rebuilds = False
        else:
            rebuilds = call.kind in ("newobj", "newobj_ex") or last.startswith(_REBUILDER_PREFIXES)
        constant_args = not _contains_risk(call.args)
        if rebuilds or (class_like and call.kind in ("reduce", "inst", "obj") and constant_args):
            self._rebuilds(call, target)
        else:
            self._event(UNKNOWN_FUNCTION, Severity.HIGH,
                        f"calls {preview(call, 100)}: an unknown function, which cannot be proven safe",
                        call.offset, call=call)

    def _judge_safe(self, call: Call, dotted: str) -> None:
        items = call.args.items if isinstance(call.args, PTuple) else []
        if dotted in ("copyreg._reconstructor", "copyreg.__newobj__") and items:
            self._judge_class_arg(call, items[0], dotted)
            if dotted == "copyreg._reconstructor" and len(items) >= 2:
                # _reconstructor(cls, base, state) runs base.__new__ and base.__init__ as well.
                self._judge_class_arg(call, items[1], dotted)
        elif dotted in _NUMPY_RECONSTRUCT and items:
            self._judge_class_arg(call, items[0], dotted)
        elif dotted == "torch._tensor._rebuild_from_type_v2" and len(items) >= 3:
            # _rebuild_from_type_v2(func, new_type, args, state) calls func(*args).
            inner = Call(items[0], items[2], "reduce", call.offset)
            inner.target = self._resolve(items[0])
            self._judge(inner)
            if inner.severity > call.severity:
                call.severity = inner.severity
            self._judge_class_arg(call, items[1], dotted)
        elif dotted == "collections.defaultdict" and items and isinstance(items[0], Call) \
                and items[0].target is None:
            self._event(COMPUTED_CALLABLE, Severity.HIGH,
                        f"defaultdict with a computed factory {preview(items[0], 60)}", call.offset,
                        call=call)

    def _judge_class_arg(self, call: Call, cls: Any, via: str) -> None:
        target = self._resolve(cls)
        if target is None:
            self._event(COMPUTED_CALLABLE, Severity.HIGH,
                        f"{via} rebuilds a class only known at load time: {preview(cls, 60)}", call.offset,
                        call=call)
            return
        verdict = self._verdict(target)
        if verdict.kind == DENIED:
            self._event(DANGEROUS_CALL, verdict.severity,
                        f"{via} rebuilds {target.dotted}: {verdict.reason}", call.offset, call=call)
        elif verdict.kind != SAFE:
            self._rebuilds(call, target)

    def _rebuilds(self, call: Call, target: Global) -> None:
        self._event(THIRD_PARTY_CLASS, Severity.MEDIUM,
                    f"rebuilds {target.dotted}: loading needs that package's code", call.offset, call=call)

    def _result_of(self, call: Call) -> Any:
        """What the call pushes. Mostly the call record itself; some calls are followed through."""
        if call.target is None:
            return call
        target = call.target.dotted
        items = call.args.items if isinstance(call.args, PTuple) else []
        if (target == "builtins.getattr" or target in _GETITEMS) and len(items) >= 2 \
                and type(items[1]) is str:
            # getattr(module_attr, "x") is the attribute walk module_attr.x: judge it as a name.
            # getitem on a module-level mapping (a __dict__) reaches the same objects.
            return self._walk(items[0], items[1], call.offset)
        if target == "builtins.str" and items and call.kind == "reduce":
            folded = _fold_str(items)
            if folded is not None:
                return folded
        if target == "copyreg.add_extension" and len(items) >= 3:
            module, name, code = items[:3]
            if isinstance(module, str) and isinstance(name, str) and isinstance(code, int):
                self.extensions[code] = (module, name)
        return call


def _fold_str(items: list[Any]) -> str | None:
    """builtins.str over constants gives a constant (a name may be spelled that way)."""
    if len(items) == 1 and type(items[0]) is str:
        return items[0]
    if 2 <= len(items) <= 3 and isinstance(items[0], bytes | bytearray) and type(items[1]) is str \
            and items[1].lower() in _TEXT_CODECS:
        try:
            return bytes(items[0]).decode(items[1])
        except UnicodeDecodeError:
            return None
    return None
