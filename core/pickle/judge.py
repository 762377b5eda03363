"""How the pickle machine judges what it meets: names against the policy, and each call by the
callable it really reaches (partials, getattr and operator walks, planted methods, EXT codes).

`CallJudge` is the half of `Machine` that decides; `airlock.core.pickle.machine` is the half that
runs the opcodes. Nothing here imports, calls or evaluates anything from the file.
"""

from __future__ import annotations

import _compat_pickle
from typing import TYPE_CHECKING, Any

from airlock.core.findings import Severity
from airlock.core.pickle.policy import DENIED, SAFE, Policy, Verdict
from airlock.core.pickle.values import (
    CONSTANT_TYPES,
    Call,
    Ext,
    Global,
    PDict,
    PList,
    PSet,
    PTuple,
    Unknown,
    preview,
)

if TYPE_CHECKING:
    from airlock.core.pickle.machine import PickleRun

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
FRAME_STRADDLE = "PKL010"
SHARED_MEMO = "PKL011"

# Library helpers whose only job is to rebuild an instance while unpickling (pandas, Cython).
_REBUILDER_PREFIXES = ("__pyx_unpickle_", "_unpickle", "_reconstruct", "_rebuild", "_new_", "__newobj")


class Event:
    """Something the machine judged: a call or a global reference, with its rule and severity."""

    __slots__ = ("call", "glob", "message", "offset", "rule", "severity")

    def __init__(self, rule: str, severity: Severity, message: str, offset: int, call: Call | None = None,
                 glob: Global | None = None) -> None:
        self.rule = rule
        self.severity = severity
        self.message = message
        self.offset = offset
        self.call = call
        self.glob = glob



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
        elif isinstance(item, (Unknown, Ext)):
            return True
        elif isinstance(item, (PTuple, PList, PSet)):
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
# Safe rebuilders whose first argument is the class to instantiate (judged as a class rebuild).
_CLASS_FIRST = frozenset({"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
                          "torch._utils._rebuild_wrapper_subclass"})
_REBUILD_FROM_TYPE = frozenset({"torch._tensor._rebuild_from_type", "torch._tensor._rebuild_from_type_v2"})
_MARECONSTRUCT = "numpy.ma.core._mareconstruct"
# numpy's RNG pickling helpers call what they are given: a class given as the bit generator is
# instantiated, and __generator_ctor / __randomstate_ctor call their bit_generator_ctor(name).
_BIT_GENERATOR_CTOR = "numpy.random._pickle.__bit_generator_ctor"
_RNG_CTORS = frozenset({_BIT_GENERATOR_CTOR, "numpy.random._pickle.__generator_ctor",
                        "numpy.random._pickle.__randomstate_ctor"})
_TEXT_CODECS = frozenset({"utf-8", "utf8", "ascii", "latin-1", "latin1", "iso-8859-1"})


def _creates_class(args: Any) -> bool:
    """Arguments shaped like type(name, bases, namespace): classes for bases, and a namespace
    that holds a dunder or something callable (plain (str, tuple, dict) data does not count)."""
    items = args.items if isinstance(args, PTuple) else []
    if len(items) != 3 or type(items[0]) is not str or not isinstance(items[1], PTuple):
        return False
    if not all(isinstance(base, Global) for base in items[1].items):
        return False
    return any((type(k) is str and k.startswith("__")) or not isinstance(v, CONSTANT_TYPES)
               for k, v in _pairs(items[2]))


def _pairs(value: Any) -> list[tuple[Any, Any]]:
    """Key/value pairs of a dict-like symbolic value (a dict literal or a dict being built)."""
    if isinstance(value, PDict):
        return value.items
    if isinstance(value, Call) and value.target is not None and value.target.dotted in _DICT_BUILDERS:
        pairs = list(value.map_items)
        items = value.args.items if isinstance(value.args, PTuple) else []
        if items and isinstance(items[0], PDict):
            pairs += items[0].items
        elif items and isinstance(items[0], (PList, PTuple)):
            pairs += [(p.items[0], p.items[1]) for p in items[0].items
                      if isinstance(p, (PTuple, PList)) and len(p.items) == 2]
        return pairs
    return []


class CallJudge:
    """Judging state and methods shared with `Machine` (which sets these attributes)."""

    run: PickleRun
    policy: Policy
    extensions: dict[int, tuple[str, str]]
    extension_objects: dict[int, Any]
    _verdicts: dict[tuple[str, str, tuple[str, str] | None], Verdict]

    def _event(self, rule: str, severity: Severity, message: str, offset: int, *,
               call: Call | None = None, glob: Global | None = None) -> None:
        self.run.events.append(Event(rule, severity, message, offset, call, glob))
        if call is not None and severity > call.severity:
            call.severity = severity

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

    def _register_extensions(self, registry: str, pairs: list[tuple[Any, Any]]) -> None:
        """The loader's EXT lookup reads copyreg._extension_cache, then copyreg._inverted_registry."""
        for key, value in pairs:
            if not isinstance(key, int):
                continue
            if registry == "copyreg._extension_cache":
                self.extension_objects[key] = value
            elif registry == "copyreg._inverted_registry" and isinstance(value, (PTuple, PList)) \
                    and len(value.items) == 2 and all(isinstance(v, str) for v in value.items):
                self.extensions[key] = (value.items[0], value.items[1])

    def _mutates_global(self, target: Global, how: str, offset: int) -> None:
        self._event(MUTATES_GLOBAL, Severity.HIGH,
                    f"{how}: the pickle changes {target.dotted} for the whole loading process", offset,
                    glob=target)

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
        if _creates_class(call.args):
            # (name, bases, namespace): a metaclass building a new class at load time, whose
            # namespace can hold any callable as __init__, __del__ or __getattr__.
            self._event(UNKNOWN_FUNCTION, Severity.HIGH,
                        f"creates a class at load time: {preview(call, 100)}", call.offset, call=call)
        elif rebuilds or (class_like and call.kind in ("reduce", "inst", "obj") and constant_args):
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
        elif dotted in _CLASS_FIRST and items:
            self._judge_class_arg(call, items[0], dotted)
        elif dotted == _MARECONSTRUCT and len(items) >= 2:
            # _mareconstruct(subtype, baseclass, ...) runs ndarray.__new__(baseclass) and subtype.__new__.
            self._judge_class_arg(call, items[0], dotted)
            self._judge_class_arg(call, items[1], dotted)
        elif dotted in _REBUILD_FROM_TYPE and len(items) >= 3:
            # _rebuild_from_type(_v2)(func, new_type, args, state) calls func(*args).
            inner = Call(items[0], items[2], "reduce", call.offset)
            inner.target = self._resolve(items[0])
            self._judge(inner)
            if inner.severity > call.severity:
                call.severity = inner.severity
            self._judge_class_arg(call, items[1], dotted)
        elif dotted in _RNG_CTORS and items:
            if isinstance(items[0], (Global, Unknown, Ext)):  # a name string is the usual argument
                self._judge_class_arg(call, items[0], dotted)
            if dotted != _BIT_GENERATOR_CTOR and len(items) >= 2:
                inner = Call(items[1], PTuple([items[0]]), "reduce", call.offset)
                inner.target = self._resolve(items[1])
                self._judge(inner)
                if inner.severity > call.severity:
                    call.severity = inner.severity
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
    if 2 <= len(items) <= 3 and isinstance(items[0], (bytes, bytearray)) and type(items[1]) is str \
            and items[1].lower() in _TEXT_CODECS:
        try:
            return bytes(items[0]).decode(items[1])
        except UnicodeDecodeError:
            return None
    return None
