"""The symbolic pickle machine: runs the opcodes over stack and memo without building anything.

It mirrors CPython's `_Unpickler` opcode by opcode, but every import becomes a `Global` and
every call a `Call` record whose real target is resolved (partials, getattr walks, EXT codes
registered by the same pickle, `__setstate__` planted through BUILD). Nothing is imported,
called or evaluated. The machine judges each call with the policy and hands back plain records;
`airlock.core.pickle.analyze` turns them into tree nodes and findings.
"""

from __future__ import annotations

import bisect
import gc
from array import array
from collections.abc import Callable
from typing import Any

from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Severity
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.pickle.judge import (  # re-exported: other modules import these from here
    BUILD_ON_GLOBAL,
    COMPUTED_CALLABLE,
    COMPUTED_KEY,
    DANGEROUS_CALL,
    DANGEROUS_GLOBAL,
    EXTENSION_CODE,
    FRAME_STRADDLE,
    MUTATES_GLOBAL,
    PLANTED_SETSTATE,
    SHARED_MEMO,
    THIRD_PARTY_CLASS,
    UNKNOWN_FUNCTION,
    CallJudge,
    Event,
    _pairs,
    compat_name,
)
from airlock.core.pickle.opcodes import (
    FIXEDARG,
    HIGHEST_PROTOCOL,
    NOARG,
    OPCODE_TABLE,
    OPCODES,
    Op,
    PickleTruncated,
    op_spans,
    read_op,
    read_op_in,
    unpeeked,
)
from airlock.core.pickle.policy import Policy, Verdict, load_policy
from airlock.core.pickle.values import (
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

__all__ = [
    "BUILD_ON_GLOBAL",
    "COMPUTED_CALLABLE",
    "DANGEROUS_CALL",
    "DANGEROUS_GLOBAL",
    "EXTENSION_CODE",
    "FRAME_STRADDLE",
    "MUTATES_GLOBAL",
    "PLANTED_SETSTATE",
    "SHARED_MEMO",
    "THIRD_PARTY_CLASS",
    "UNKNOWN_FUNCTION",
    "BuildHook",
    "Event",
    "Machine",
    "PickleRun",
    "compat_name",
]


class PickleRun:
    """One pickle of a stream (a stream can hold several, each loaded by a separate `load`)."""

    __slots__ = ("calls", "complete", "end", "error", "events", "globals", "op_offsets", "persistent_ids",
                 "protocol", "result", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.end = 0  # offset just past STOP, or where reading stopped
        self.protocol = 0
        self.complete = False  # reached STOP
        self.error: FormatError | None = None
        self.result: Any = None
        self.op_offsets: array[int] = array("Q")
        self.calls: list[Call] = []
        self.globals: list[Global] = []
        self.events: list[Event] = []
        self.persistent_ids = 0

    @property
    def severity(self) -> Severity:
        return max((e.severity for e in self.events), default=Severity.NONE)


class _Mark:
    __slots__ = ()


MARK = _Mark()

# build_hook(machine, call, pos) → position to continue reading at (joblib's inline arrays).
BuildHook = Callable[["Machine", Call, int], int]


# Per machine class: opcode byte → (name, argument category, handler (None for STOP), argument
# size and struct for fixed-size arguments).
_Entry = tuple[str, int, Callable[[Any, Any], int | None] | None, int, Any]
_HANDLERS: dict[type, list[_Entry | None]] = {}


class Machine(CallJudge):
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
        self.follow_frames = True  # check FRAME lengths, and re-read streams whose opcodes cross them
        self.straddle: int | None = None  # offset of the first opcode that crosses a frame's end
        self._buffer_end = 0
        self.end = len(buf)
        self.memo: dict[int, Any] = {}
        self._verdicts: dict[tuple[str, str, tuple[str, str] | None], Verdict] = {}
        handlers = _HANDLERS.get(type(self))
        if handlers is None:  # once per class: building it per machine cost more than a small pickle
            handlers = _HANDLERS[type(self)] = [None] * 256
            for code, (name, _) in OPCODES.items():
                handler = getattr(type(self), "op_" + name) if name != "STOP" else None
                _, _, category, size, fmt = OPCODE_TABLE[code]  # type: ignore[misc]
                handlers[code] = (name, category, handler, size, fmt)
        self._dispatch = handlers

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
            previous_memo = self.memo if runs else None
            run = self.run_one(pos, end)
            if previous_memo and run.error is not None and "never stored" in run.error.message:
                run = self._with_shared_memo(run, pos, end, previous_memo)
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

    def _with_shared_memo(self, run: PickleRun, pos: int, end: int, memo: dict[int, Any]) -> PickleRun:
        """A pickle that reads memo entries it never stored fails in a fresh Unpickler, but one
        Unpickler calling load() twice keeps its memo: read it that way and say so."""
        shared = self.run_one(pos, end, memo=memo)
        if shared.error is not None and "never stored" in shared.error.message:
            return run
        self.run = shared
        self._event(SHARED_MEMO, Severity.HIGH,
                    "this pickle uses memo entries stored by the pickle before it: only a loader that "
                    "calls load() twice on one Unpickler runs it, and then as read here", pos)
        return shared

    def run_one(self, start: int, end: int, *, memo: dict[int, Any] | None = None) -> PickleRun:
        # The machine allocates millions of small acyclic records; the cyclic collector would
        # rescan all of them again and again (it doubled the time of a checkpoint's data.pkl).
        collecting = gc.isenabled()
        gc.disable()
        try:
            run = self._run_one(start, end, memo)
            if self.straddle is not None and self.follow_frames:
                self._read_unpeeked(run, start, end)
            return run
        finally:
            if collecting:
                gc.enable()

    def _read_unpeeked(self, run: PickleRun, start: int, end: int) -> None:
        """Run the stream again as a file without peek() feeds it (torch.load's zip members), and
        add what that reading reaches: it can name other globals than the contiguous one."""
        assert self.straddle is not None
        spans = unpeeked(self.buf, start, end, self.limits.max_opcodes)
        data = b"".join(bytes(self.buf[a:b]) for a, b in spans)
        alt = Machine(data, limits=self.limits, policy=self.policy)
        alt.follow_frames = False  # the joined stream no longer matches its FRAME lengths
        alt.extensions, alt.extension_objects = dict(self.extensions), dict(self.extension_objects)
        alt_run = alt._run_one(0, len(data))
        starts = [0]
        for a, b in spans:
            starts.append(starts[-1] + b - a)

        def original(offset: int) -> int:
            i = max(bisect.bisect_right(starts, offset) - 1, 0)
            return spans[i][0] + offset - starts[i] if i < len(spans) else end

        self.run = run
        self._event(FRAME_STRADDLE, Severity.HIGH,
                    f"malformed: an opcode at offset {self.straddle} crosses the end of a FRAME; torch.load "
                    "(a zip member read without peek) skips the rest of the frame and reads other bytes "
                    "there, which pickle.loads never sees", self.straddle)
        for event in alt_run.events:
            run.events.append(Event(event.rule, event.severity,
                                    f"as torch.load reads it (FRAME skipped): {event.message}",
                                    original(event.offset), event.call, event.glob))
        run.globals.extend(alt_run.globals)

    def _run_one(self, start: int, end: int, memo: dict[int, Any] | None = None) -> PickleRun:
        run = PickleRun(start=start)
        self.run = run
        self.end = end
        self.straddle = None
        self._buffer_end = 0  # where the C unpickler's buffer ends after a FRAME (0: no buffer)
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo = dict(memo) if memo else {}
        max_ops = self.limits.max_opcodes
        max_stack = self.limits.max_stack_depth
        dispatch = self._dispatch
        tick = self.tick
        pos = start
        buf = self.buf
        # Bytes in memory are read directly; a source read through pread (a PagedView) is read a
        # window at a time: `win` holds its bytes from offset `base` up to `wend`.
        window = getattr(buf, "window", None)
        win, base, wend = buf, 0, 0
        offsets = run.op_offsets
        count = 0
        try:
            while True:
                if pos + 9 > wend:  # the longest fixed-size opcode (FRAME) needs 9 bytes
                    if window is None:
                        wend = end
                    elif pos < end:
                        win, base = window(pos, 9)
                        wend = min(base + len(win), end)
                entry = dispatch[win[pos - base]] if pos < wend else None
                if entry is None:
                    read_op(buf, pos, end)  # raises: truncated, or an unknown opcode
                    raise FormatError(f"malformed: unreadable opcode at offset {pos}", pos)
                # Most opcodes take no argument or a fixed-size one: those skip the decoder.
                category = entry[1]
                if category == NOARG:
                    op = Op(entry[0], None, pos, 1)
                elif category == FIXEDARG and pos + entry[3] < wend:
                    op = Op(entry[0], entry[4].unpack_from(win, pos + 1 - base)[0], pos, 1 + entry[3])
                else:
                    op = read_op_in(buf, win, base, wend, pos, end)
                offsets.append(pos)
                pos += op.length
                count += 1
                if self._buffer_end and pos >= self._buffer_end:
                    self._leave_buffer(op)
                handler = entry[2]
                if handler is None:  # STOP
                    run.result = self._pop(op.offset)
                    run.complete = True
                    break
                new_pos = handler(self, op)
                if new_pos is not None:  # a build hook skipped inline data
                    pos = new_pos
                    self._buffer_end = 0
                    wend = 0  # look the window up again
                # Limits and the clock every 256 opcodes, not every one: a limit is passed by at most
                # 255 opcodes (or stack entries), and the loop runs ~10% faster.
                if not count & 255:
                    if count >= max_ops:
                        raise LimitExceeded(f"more than {max_ops:,} opcodes in one pickle", pos)
                    if len(self.stack) > max_stack:
                        raise LimitExceeded(f"stack deeper than {max_stack:,}", op.offset)
                    if tick is not None and not count & 8191:
                        tick()
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

    def _leave_buffer(self, op: Op) -> None:
        """An opcode reached the end of the frame buffer: a read that starts before that end and
        finishes after it is where a reader without peek() goes elsewhere."""
        limit = self._buffer_end
        self._buffer_end = 0
        if self.straddle is None and self.follow_frames and any(a < limit < b for a, b in op_spans(op)):
            self.straddle = op.offset

    def op_FRAME(self, op: Any) -> None:
        # The C unpickler only checks that the frame's bytes exist; opcodes may cross frames.
        content = op.offset + op.length
        if self._buffer_end and content + op.arg > self._buffer_end:
            if self.straddle is None and self.follow_frames and content < self._buffer_end:
                self.straddle = op.offset  # the new frame is read from after the buffer, not from here
            self._buffer_end = 0
        if not self._buffer_end:
            self._buffer_end = content + op.arg
        if not self.follow_frames:
            return
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
            # The C unpickler prefers extend; pickle's pure-Python one (dill's base) calls append
            # for a single APPEND: both are followed.
            planted = target.planted or {}
            method = planted.get("extend", planted.get(COMPUTED_KEY))
            if method is not None:
                self._planted_call(method, PTuple([PList(items)]), "extend", "append", offset)
            if "append" in planted:
                for item in items:
                    self._planted_call(planted["append"], PTuple([item]), "append", "append", offset)
            if method is None and "append" not in planted:
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
        memo = self.memo
        filled = len(memo)
        if filled >= self.limits.max_memo_entries:
            raise LimitExceeded(f"more than {self.limits.max_memo_entries:,} memo entries", op.offset)
        memo[filled] = self.stack[-1] if self.stack else self._top(op.offset)

    def op_PERSID(self, op: Any) -> None:
        self.run.persistent_ids += 1
        self._push(PersistentRef(op.arg, op.offset))

    def op_BINPERSID(self, op: Any) -> None:
        self.run.persistent_ids += 1
        self._push(PersistentRef(self._pop(op.offset), op.offset))

    # Globals

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
