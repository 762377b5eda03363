"""The symbolic pickle machine: runs the opcodes over stack and memo without building anything.

It mirrors CPython's `_Unpickler` opcode by opcode, but every import becomes a `Global` and
every call a `Call` record whose real target is resolved (partials, getattr walks, EXT codes
registered by the same pickle, `__setstate__` planted through BUILD). Nothing is imported,
called or evaluated. The machine judges each call with the policy and hands back plain records;
`airlock.core.pickle.analyze` turns them into tree nodes and findings.
"""

from __future__ import annotations

import _compat_pickle
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Severity
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.pickle.opcodes import HIGHEST_PROTOCOL, PickleTruncated, read_op
from airlock.core.pickle.policy import DENIED, SAFE, Policy, load_policy
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


def _contains_risk(value: Any, depth: int = 0) -> bool:
    """Whether arguments hold anything worse than data (a risky call or unknown value)."""
    if depth > 20 or isinstance(value, CONSTANT_TYPES):
        return False
    if isinstance(value, Call):
        return value.severity >= Severity.HIGH
    if isinstance(value, Unknown | Ext):
        return True
    if isinstance(value, PTuple | PList | PSet):
        return any(_contains_risk(v, depth + 1) for v in value.items)
    if isinstance(value, PDict):
        return any(_contains_risk(k, depth + 1) or _contains_risk(v, depth + 1) for k, v in value.items)
    return False


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
        self.extensions: dict[int, tuple[str, str]] = {}  # registered by copyreg.add_extension

    # Streams

    def run_stream(self, start: int = 0, end: int | None = None) -> list[PickleRun]:
        """Every pickle in buf[start:end]. A later pickle is read when the bytes after STOP are one."""
        end = len(self.buf) if end is None else end
        runs: list[PickleRun] = []
        pos = start
        while pos < end and len(runs) < self.limits.max_pickles_per_stream:
            if runs and not self._starts_pickle(pos, end):
                break
            run = self.run_one(pos, end)
            if runs and not run.complete and not run.calls and not run.globals:
                break  # trailing bytes that are not a pickle: the caller reports them
            runs.append(run)
            if not run.complete:
                break
            pos = run.end
        return runs

    def _starts_pickle(self, pos: int, end: int) -> bool:
        from airlock.core.pickle.opcodes import looks_like_pickle

        return looks_like_pickle(bytes(self.buf[pos : min(end, pos + 512)])) >= 40

    def run_one(self, start: int, end: int) -> PickleRun:
        run = PickleRun(start=start)
        self.run = run
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        max_ops = self.limits.max_opcodes
        pos = start
        buf = self.buf
        offsets = run.op_offsets
        try:
            while True:
                if len(offsets) >= max_ops:
                    raise LimitExceeded(f"more than {max_ops:,} opcodes in one pickle", pos)
                op = read_op(buf, pos, end)
                offsets.append(pos)
                pos += op.length
                if self.tick is not None and len(offsets) % 8192 == 0:
                    self.tick()
                if op.name == "STOP":
                    run.result = self._pop(op.offset)
                    run.complete = True
                    break
                handler = getattr(self, "op_" + op.name)
                new_pos = handler(op)
                if new_pos is not None:  # a build hook skipped inline data
                    pos = new_pos
                if len(self.stack) > self.limits.max_stack_depth:
                    raise LimitExceeded(f"stack deeper than {self.limits.max_stack_depth:,}", op.offset)
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
        self._push(None)

    def op_NEWTRUE(self, op: Any) -> None:
        self._push(True)

    def op_NEWFALSE(self, op: Any) -> None:
        self._push(False)

    def op_NEXT_BUFFER(self, op: Any) -> None:
        self._push(Buffer(op.offset))

    def op_READONLY_BUFFER(self, op: Any) -> None:
        self._top(op.offset)

    def op_PROTO(self, op: Any) -> None:
        if op.arg > HIGHEST_PROTOCOL:
            raise FormatError(f"malformed: unsupported pickle protocol {op.arg}", op.offset)
        self.run.protocol = op.arg

    def op_FRAME(self, op: Any) -> None:
        remaining = len(self.buf) - (op.offset + op.length)
        if op.arg > remaining:
            raise PickleTruncated(
                f"truncated: FRAME announces {op.arg:,} bytes, but only {remaining:,} remain", op.offset)

    # Containers

    def op_EMPTY_LIST(self, op: Any) -> None:
        self._push(PList())

    def op_EMPTY_TUPLE(self, op: Any) -> None:
        self._push(PTuple([]))

    def op_EMPTY_DICT(self, op: Any) -> None:
        self._push(PDict())

    def op_EMPTY_SET(self, op: Any) -> None:
        self._push(PSet())

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
        self._append_to(self._top(op.offset), [value])

    def op_APPENDS(self, op: Any) -> None:
        items = self._pop_mark(op.offset)
        self._append_to(self._top(op.offset), items)

    def _append_to(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, PList):
            target.items.extend(items)
        elif isinstance(target, Call):
            target.list_items.extend(items)

    def op_SETITEM(self, op: Any) -> None:
        value = self._pop(op.offset)
        key = self._pop(op.offset)
        self._set_items(self._top(op.offset), [(key, value)])

    def op_SETITEMS(self, op: Any) -> None:
        items = self._pop_mark(op.offset)
        self._set_items(self._top(op.offset), list(zip(items[::2], items[1::2], strict=False)))

    def _set_items(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if isinstance(target, PDict):
            target.items.extend(pairs)
        elif isinstance(target, Call):
            target.map_items.extend(pairs)

    def op_ADDITEMS(self, op: Any) -> None:
        items = self._pop_mark(op.offset)
        target = self._top(op.offset)
        if isinstance(target, PSet):
            target.items.extend(items)

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
        if op.arg not in self.memo:
            raise FormatError(f"malformed: memo key {op.arg} was never stored (the loader fails here)",
                              op.offset)
        self._push(self.memo[op.arg])

    op_GET = op_BINGET = op_LONG_BINGET = _get

    def _put(self, op: Any) -> None:
        if len(self.memo) >= self.limits.max_memo_entries:
            raise LimitExceeded(f"more than {self.limits.max_memo_entries:,} memo entries", op.offset)
        self.memo[op.arg] = self._top(op.offset)

    op_PUT = op_BINPUT = op_LONG_BINPUT = _put

    def op_MEMOIZE(self, op: Any) -> None:
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

    def _global(self, module: str, name: str, offset: int) -> Global:
        mapped = compat_name(module, name)
        glob = Global(mapped[0], mapped[1], offset, (module, name) if mapped != (module, name) else None)
        self.run.globals.append(glob)
        verdicts = [self.policy.classify(glob.module, glob.name)]
        if glob.original is not None:
            verdicts.append(self.policy.classify(*glob.original))
        denied = [v for v in verdicts if v.kind == DENIED]
        if denied:
            worst = max(denied, key=lambda v: v.severity)
            shown = glob.dotted + (f" (written {'.'.join(glob.original)})" if glob.original else "")
            self._event(DANGEROUS_GLOBAL, worst.severity, f"references {shown}: {worst.reason}",
                        offset, glob=glob)
        return glob

    def op_GLOBAL(self, op: Any) -> None:
        module, name = op.arg
        self._push(self._global(module, name, op.offset))

    def op_STACK_GLOBAL(self, op: Any) -> None:
        name = self._pop(op.offset)
        module = self._pop(op.offset)
        if isinstance(module, str) and isinstance(name, str):
            self._push(self._global(module, name, op.offset))
            return
        shown = f"{preview(module, 60)}.{preview(name, 60)}"
        self._event(COMPUTED_CALLABLE, Severity.HIGH,
                    f"imports a name computed at load time ({shown}): it cannot be known without running "
                    "the pickle", op.offset)
        self._push(Unknown(f"global {shown}", op.offset))

    def _ext(self, op: Any) -> None:
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
        items = self._pop_mark(op.offset)
        cls = self._global(module, name, op.offset)
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
            if inst.planted_setstate is not None:
                # The real unpickler looks up inst.__setstate__ and finds the planted callable.
                call = self._call(inst.planted_setstate, PTuple([state]), "setstate", op.offset)
                self._event(PLANTED_SETSTATE, max(Severity.HIGH, Severity(call.severity)),
                            f"BUILD calls a __setstate__ planted in the object's dict: {preview(call)}",
                            op.offset, call=call)
                return None
            planted = self._planted_setstate(state)
            if planted is not None:
                inst.planted_setstate = planted
                self._event(PLANTED_SETSTATE, Severity.HIGH,
                            f"BUILD puts a __setstate__ ({preview(planted, 60)}) into an object's dict; "
                            "the next BUILD on it calls it", op.offset, call=inst)
            inst.state = state
            if self.build_hook is not None:
                return self.build_hook(self, inst, op.offset + 1)
        elif isinstance(inst, Global):
            self._event(BUILD_ON_GLOBAL, Severity.HIGH,
                        f"BUILD rewrites attributes of {inst.dotted} with {preview(state, 80)}", op.offset)
        return None

    @staticmethod
    def _planted_setstate(state: Any) -> Any:
        dicts = [state] if isinstance(state, PDict) else []
        if isinstance(state, PTuple):
            dicts = [s for s in state.items if isinstance(s, PDict)]
        for d in dicts:
            for key, value in d.items:
                if key == "__setstate__":
                    return value
        return None

    def _resolve(self, func: Any, depth: int = 0) -> Global | None:
        """The global a call really reaches, or None when it only exists at load time."""
        if depth > 16:
            return None
        if isinstance(func, Global):
            return func
        if isinstance(func, Call) and func.target is not None:
            if func.target.dotted == "functools.partial":
                inner = None
                if isinstance(func.args, PTuple) and func.args.items:
                    inner = func.args.items[0]
                elif isinstance(func.state, PTuple) and func.state.items:
                    inner = func.state.items[0]
                return self._resolve(inner, depth + 1) if inner is not None else None
        return None

    def _call(self, func: Any, args: Any, kind: str, offset: int, kwargs: Any = None) -> Any:
        call = Call(func, args, kind, offset, kwargs)
        call.target = self._resolve(func)
        self.run.calls.append(call)
        self._judge(call)
        return self._result_of(call)

    def _judge(self, call: Call) -> None:
        shown = preview(call, 100)
        target = call.target
        if target is None:
            what = "the result of a call" if isinstance(call.func, Call) else preview(call.func, 60)
            self._event(COMPUTED_CALLABLE, Severity.HIGH,
                        f"calls {what}, a callable only known at load time: {shown}", call.offset, call=call)
            return
        verdict = self.policy.classify(target.module, target.name)
        if target.original is not None and verdict.kind != DENIED:
            original = self.policy.classify(*target.original)
            if original.kind == DENIED:
                verdict = original
        if verdict.kind == DENIED:
            self._event(DANGEROUS_CALL, verdict.severity, f"calls {shown}: {verdict.reason}",
                        call.offset, call=call)
            return
        if verdict.kind == SAFE:
            self._judge_safe(call, target.dotted)
            return
        self._judge_unknown(call, target, shown)

    def _judge_unknown(self, call: Call, target: Global, shown: str) -> None:
        last = target.name.rsplit(".", 1)[-1]
        rebuilds = call.kind in ("newobj", "newobj_ex") or last.startswith(_REBUILDER_PREFIXES)
        class_like = _is_class_name(target.name) and not _contains_risk(call.args)
        if rebuilds or (class_like and call.kind in ("reduce", "inst", "obj")):
            self._event(THIRD_PARTY_CLASS, Severity.MEDIUM,
                        f"rebuilds {target.dotted}: loading needs that package's code", call.offset, call=call)
        else:
            self._event(UNKNOWN_FUNCTION, Severity.HIGH,
                        f"calls {shown}: an unknown function, which cannot be proven safe", call.offset,
                        call=call)

    def _judge_safe(self, call: Call, dotted: str) -> None:
        items = call.args.items if isinstance(call.args, PTuple) else []
        if dotted in ("copyreg._reconstructor", "copyreg.__newobj__") and items:
            self._judge_class_arg(call, items[0], dotted)
        elif dotted == "torch._tensor._rebuild_from_type_v2" and len(items) >= 3:
            # _rebuild_from_type_v2(func, new_type, args, state) calls func(*args).
            inner = Call(items[0], items[2], "reduce", call.offset)
            inner.target = self._resolve(items[0])
            self._judge(inner)
            if inner.severity > call.severity:
                call.severity = inner.severity
            self._judge_class_arg(call, items[1], dotted)
        elif dotted == "copyreg.add_extension":
            pass  # denied with high severity in the policy; kept for completeness
        elif dotted == "collections.defaultdict" and items and not isinstance(items[0], Global | type(None)):
            self._event(COMPUTED_CALLABLE, Severity.HIGH,
                        f"defaultdict with a computed factory {preview(items[0], 60)}", call.offset, call=call)

    def _judge_class_arg(self, call: Call, cls: Any, via: str) -> None:
        target = self._resolve(cls)
        if target is None:
            self._event(COMPUTED_CALLABLE, Severity.HIGH,
                        f"{via} rebuilds a class only known at load time: {preview(cls, 60)}", call.offset,
                        call=call)
            return
        verdict = self.policy.classify(target.module, target.name)
        if verdict.kind == DENIED:
            self._event(DANGEROUS_CALL, verdict.severity,
                        f"{via} rebuilds {target.dotted}: {verdict.reason}", call.offset, call=call)
        elif verdict.kind != SAFE:
            self._event(THIRD_PARTY_CLASS, Severity.MEDIUM,
                        f"rebuilds {target.dotted}: loading needs that package's code", call.offset, call=call)

    def _result_of(self, call: Call) -> Any:
        """What the call pushes. Mostly the call record itself; some calls are followed through."""
        target = call.target.dotted if call.target is not None else ""
        items = call.args.items if isinstance(call.args, PTuple) else []
        if target == "builtins.getattr" and len(items) >= 2 and isinstance(items[1], str):
            owner = items[0]
            if isinstance(owner, Global):
                # getattr(module_attr, "x") is the attribute walk module_attr.x: judge it as a name.
                return self._global(owner.module, f"{owner.name}.{items[1]}", call.offset)
            return Unknown(f"getattr({preview(owner, 40)}, {items[1]!r})", call.offset)
        if target == "copyreg.add_extension" and len(items) >= 3:
            module, name, code = items[:3]
            if isinstance(module, str) and isinstance(name, str) and isinstance(code, int):
                self.extensions[code] = (module, name)
        return call
