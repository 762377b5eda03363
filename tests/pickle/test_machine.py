"""The symbolic machine against CPython: the values it builds, memo and mark semantics, stacked and
broken streams, and that nothing it reads can make it raise instead of reporting."""

from __future__ import annotations

import gc
import pickle
import sys
from collections.abc import Callable

import pytest
from fixtures.pickle_files import (
    APPEND,
    BINGET,
    BINPUT,
    BUILD,
    DUP,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_TUPLE,
    GLOBAL,
    INT,
    MARK,
    MARKER,
    NEWOBJ,
    NONE,
    POP,
    PROTO,
    PUT,
    REDUCE,
    SETITEM,
    STOP,
    STR,
    TUPLE1,
    asm,
    call,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.core.findings import Severity
from airlock.core.limits import Limits
from airlock.core.pickle import Machine, PickleRun, scan_pickle
from airlock.core.pickle.machine import Event
from airlock.core.pickle.values import Call, Global, PDict, PList, PSet, PTuple
from airlock.core.scan import scan_bytes


def to_python(value: object, depth: int = 0) -> object:
    """A symbolic value made only of constants and containers, as the real loader builds it."""
    assert depth < 50
    if isinstance(value, PList):
        return [to_python(v, depth + 1) for v in value.items]
    if isinstance(value, PTuple):
        return tuple(to_python(v, depth + 1) for v in value.items)
    if isinstance(value, PDict):
        return {to_python(k, depth + 1): to_python(v, depth + 1) for k, v in value.items}
    if isinstance(value, PSet):
        items = {to_python(v, depth + 1) for v in value.items}
        return frozenset(items) if value.frozen else items
    if isinstance(value, Call) and value.target is not None:
        items = [to_python(v, depth + 1) for v in value.args.items]
        simple = {"builtins.set": set, "builtins.frozenset": frozenset, "builtins.bytearray": bytearray,
                  "_codecs.encode": lambda s, enc: s.encode(enc), "builtins.bytes": bytes}
        return simple[value.target.dotted](*items)
    assert isinstance(value, int | float | str | bytes | bytearray | bool | type(None)), value
    return value


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                    st.binary(max_size=20))
hashables = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10), st.binary(max_size=10))
data = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.tuples(inner, inner), st.dictionaries(hashables, inner, max_size=6),
    st.frozensets(hashables, max_size=4), st.sets(hashables, max_size=4)), max_leaves=30)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=data, proto=st.integers(0, pickle.HIGHEST_PROTOCOL), shared=st.booleans())
def test_symbolic_values_equal_what_pickle_loads_builds(value: object, proto: int, shared: bool) -> None:
    obj = [value, value] if shared else value  # shared references go through the memo
    raw = pickle.dumps(obj, protocol=proto)
    runs = Machine(raw).run_stream(0, len(raw))
    assert len(runs) == 1 and runs[0].complete and runs[0].error is None
    assert to_python(runs[0].result) == pickle.loads(raw)


def test_memoize_stores_at_the_count_of_filled_slots_like_cpython() -> None:
    # PUT 5 fills one slot, so MEMOIZE stores at 1, not at 6 (and memo 0 stays empty).
    raw = b"(I1\nI2\np5\n0\x94h\x05h\x01l."
    assert pickle.loads(raw) == [1, 2, 1]
    run = Machine(raw).run_one(0, len(raw))
    assert to_python(run.result) == [1, 2, 1]
    broken = raw.replace(b"h\x01", b"h\x00")
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(broken)
    assert "memo key 0 was never stored" in Machine(broken).run_one(0, len(broken)).error.message


def test_pop_on_an_empty_frame_drops_the_mark_like_cpython() -> None:
    raw = asm(PROTO(2), INT(7), MARK, POP, STOP)
    assert pickle.loads(raw) == 7
    assert Machine(raw).run_one(0, len(raw)).result == 7


def test_dup_and_memo_share_one_symbolic_object() -> None:
    raw = asm(PROTO(2), EMPTY_LIST, DUP, BINPUT(0), POP, STR("x"), APPEND, BINGET(0), STOP)
    result = Machine(raw).run_one(0, len(raw)).result
    assert isinstance(result, PList) and result.items == ["x"]
    assert pickle.loads(raw) == ["x"]


def test_public_api_records_calls_globals_and_events() -> None:
    raw = call("os", "system", MARKER)
    runs = Machine(raw).run_stream()
    run = runs[0]
    assert isinstance(run, PickleRun) and run.complete and run.protocol == 2 and run.end == len(raw)
    assert [g.dotted for g in run.globals] == ["os.system"]
    (c,) = run.calls
    assert c.target is not None and c.target.dotted == "os.system" and c.args.items == [MARKER]
    assert all(isinstance(e, Event) for e in run.events)
    assert run.severity == Severity.CRITICAL
    assert len(run.op_offsets) == 7  # PROTO GLOBAL MARK SHORT_BINUNICODE TUPLE REDUCE STOP


def test_partial_calls_reach_their_target_and_a_build_can_swap_it() -> None:
    raw = asm(PROTO(2), GLOBAL("functools", "partial"), GLOBAL("builtins", "str"), TUPLE1, REDUCE,
              MARK, GLOBAL("os", "system"), EMPTY_TUPLE, NONE, NONE, b"t", BUILD,
              STR(MARKER), TUPLE1, REDUCE, STOP)
    run = Machine(raw).run_one(0, len(raw))
    final = run.calls[-1]
    assert final.target is not None and final.target.dotted == "os.system"


def test_stacked_pickles_are_all_read_and_quiet_ones_past_the_limit_are_dropped() -> None:
    raw = b"N." * 50 + call("os", "system", MARKER) + b"N." * 50
    machine = Machine(raw, limits=Limits(max_pickles_per_stream=10))
    runs = machine.run_stream()
    assert any(r.calls for r in runs)
    assert runs[-1].end == len(raw)  # the last pickle is kept so trailing bytes are measured right
    assert machine.skipped_runs == 101 - len(runs)


def test_truncated_stream_keeps_the_partial_tree_and_says_truncated() -> None:
    raw = asm(PROTO(2), GLOBAL("os", "system"), STR(MARKER), TUPLE1, REDUCE, EMPTY_DICT)
    result = scan_bytes(raw, "x.pkl")
    pickle_node = result.root.children()[0]
    assert pickle_node.attrs["complete"] is False and pickle_node.attrs["calls"] == 1
    opcodes = next(n for n in pickle_node.children() if n.label.startswith("opcodes"))
    assert opcodes.child_count == 6
    malformed = [f for f in result.findings if f.rule == "AIR002"]
    assert malformed and "truncated" in malformed[0].message and malformed[0].offset == len(raw)
    assert result.severity == Severity.CRITICAL
    result.close()


def test_build_hook_is_called_after_each_build_on_a_call() -> None:
    seen: list[tuple[str, int]] = []

    def hook(machine: Machine, inst: Call, pos: int) -> int:
        seen.append((inst.target.dotted if inst.target else "?", pos))
        return pos

    raw = asm(PROTO(2), GLOBAL("argparse", "Namespace"), EMPTY_TUPLE, NEWOBJ, EMPTY_DICT, BUILD, STOP)
    Machine(raw, build_hook=hook).run_one(0, len(raw))
    assert seen == [("argparse.Namespace", len(raw) - 1)]


def _python_calls(work: Callable[[], object]) -> int:
    """How many Python functions `work()` calls: a count of the work done, whatever the machine's load."""
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


def test_self_referencing_arguments_do_not_explode() -> None:
    # A list holding itself n times, passed to a class: a naive recursive walk is n^depth. The work
    # must grow like the input: 1,000 more repeats cost about twice what 500 more did, not 4 times.
    def scan_self_list(n: int) -> None:
        body = [EMPTY_LIST, BINPUT(0)] + [BINGET(0), APPEND] * n
        result = scan_bytes(asm(PROTO(2), GLOBAL("somepkg", "Thing"), *body, TUPLE1, REDUCE, STOP), "x.pkl")
        assert result.severity == Severity.MEDIUM
        result.close()

    scan_self_list(1)  # imports and caches are not the work being measured
    calls = {n: _python_calls(lambda n=n: scan_self_list(n)) for n in (500, 1000, 2000)}
    assert calls[2000] - calls[1000] < 3 * (calls[1000] - calls[500]), calls


@pytest.mark.parametrize("proto", [4, 5])
def test_real_framed_pickles_never_straddle(proto: int) -> None:
    """pickle's own framer ends frames at opcode boundaries and writes big bytes outside them."""
    import numpy as np

    obj = {"a": b"x" * 200_000, "l": list(range(100_000)), "s": ["é" * 70_000, "t" * 100],
           "arr": np.ones((300, 300)), "nested": [{"k": i} for i in range(20_000)]}
    raw = pickle.dumps(obj, protocol=proto)
    machine = Machine(raw)
    (run,) = machine.run_stream()
    assert machine.straddle is None and not run.events and run.complete


def test_cyclic_collector_is_back_on_after_a_run() -> None:
    assert gc.isenabled()
    raw = call("os", "system", MARKER)
    Machine(raw).run_stream()
    assert gc.isenabled()
    Machine(b"\xff").run_stream()
    assert gc.isenabled()


def test_many_calls_build_no_node_until_expanded() -> None:
    raw = pickle.dumps([{1, i} for i in range(20_000)], protocol=2)  # one builtins.set call each
    result = scan_bytes(raw, "x.pkl")
    assert sum(1 for _ in result.root.walk()) < 20
    calls = next(n for n in result.root.children()[0].children() if n.label.startswith("calls"))
    assert calls.child_count == 20_000 and calls.child_at(19_999).attrs["callable"] == "builtins.set"
    result.close()


def test_risky_call_nodes_exist_before_expansion_and_are_the_ones_shown_later() -> None:
    raw = pickle.dumps([{1, i} for i in range(600)], protocol=2)[:-2] + asm(
        GLOBAL("os", "system"), STR(MARKER), TUPLE1, REDUCE, APPEND, STOP)
    result = scan_bytes(raw, "x.pkl")
    finding = next(f for f in result.findings if f.rule == "PKL006")
    calls = finding.node.parent
    assert calls.is_lazy and calls.child_at(finding.node.index) is finding.node
    assert calls.severity == Severity.CRITICAL and result.root.severity == Severity.CRITICAL
    result.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    runs = Machine(raw).run_stream()
    for run in runs:
        assert run.complete or run.error is not None
    result = scan_bytes(raw, "x.pkl")
    assert not any(f.rule == "AIR001" for f in result.findings), result.findings
    result.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(1, 200), junk=st.binary(max_size=8))
def test_truncating_or_corrupting_a_hostile_pickle_never_hides_a_call_that_ran(cut: int, junk: bytes) -> None:
    """Wherever the stream breaks, if the REDUCE came before the break the verdict stays critical."""
    full = asm(PROTO(2), EMPTY_DICT, STR("pad" * 10), NONE, SETITEM, POP,
               GLOBAL("os", "system"), STR(MARKER), TUPLE1, REDUCE, PUT(3), POP, NONE, STOP)
    reduce_end = full.index(b"R") + 1
    raw = full[: min(cut, len(full))] + junk
    result = scan_bytes(raw, "x.pkl")
    if cut >= reduce_end:
        assert result.severity == Severity.CRITICAL
    if cut >= full.index(b"cos"):
        assert result.severity >= Severity.HIGH
    result.close()


def test_scan_pickle_kept_its_signature() -> None:
    from airlock.core.context import ScanContext
    from airlock.core.source import Source
    from airlock.core.tree import FILE, Node

    ctx = ScanContext()
    root = Node(FILE, "x")
    raw = b"\x00\x00" + call("os", "system", MARKER)
    runs = scan_pickle(Source.from_bytes(raw, "x"), ctx, root, start=2, label="inner")
    assert len(runs) == 1 and root.children()[0].label == "inner (protocol 2)"
    assert isinstance(runs[0].globals[0], Global)


@pytest.mark.parametrize(("data", "severity", "needle"), [
    # __bit_generator_ctor(cls) instantiates a class it is given.
    (b"\x80\x02cnumpy.random._pickle\n__bit_generator_ctor\ncsomepkg.evil\nThing\n\x85R.", Severity.MEDIUM,
     "rebuilds somepkg.evil.Thing"),
    # __generator_ctor(name, ctor) / __randomstate_ctor(name, ctor) call ctor(name).
    (b"\x80\x02cnumpy.random._pickle\n__generator_ctor\nX\x03\x00\x00\x00cmdcsomepkg.tools\nrun\n\x86R.",
     Severity.HIGH, "calls somepkg.tools.run('cmd')"),
    (b"\x80\x02cnumpy.random._pickle\n__randomstate_ctor\nX\x02\x00\x00\x00idcos\nsystem\n\x86R.",
     Severity.CRITICAL, "os.system('id')"),
    # What numpy itself writes stays clean.
    (b"\x80\x02cnumpy.random._pickle\n__randomstate_ctor\nX\x07\x00\x00\x00MT19937\x85R.", Severity.INFO, "data-only"),
    (b"\x80\x02cnumpy.random._pickle\n__bit_generator_ctor\ncnumpy.random._mt19937\nMT19937\n\x85R.", Severity.INFO,
     "data-only"),
    (b"\x80\x02cnumpy.random\n__RandomState_ctor\n)R.", Severity.INFO, "data-only"),  # numpy < 1.17
])
def test_numpy_rng_helpers_are_judged_by_what_they_call(data: bytes, severity: Severity, needle: str) -> None:
    """Regression: numpy's RNG pickling helpers were allowlisted as a whole, yet they call what they
    are given: __bit_generator_ctor(somepkg.Thing) and __generator_ctor('cmd', somepkg.run) passed
    with no finding. And gensim's models pickled under numpy < 1.17 (__RandomState_ctor) were high."""
    result = scan_bytes(data, "rng.pkl")
    assert result.severity == severity, [(f.rule, f.message) for f in result.findings]
    assert any(needle in f.message for f in result.findings)


def test_masked_arrays_stay_clean_and_their_rebuilder_judges_its_classes() -> None:
    """numpy.ma.core._mareconstruct(subtype, baseclass, ...) runs subtype.__new__ and
    ndarray.__new__(baseclass): a real masked array is data, another class given there is a rebuild."""
    import numpy as np

    for proto in (2, 4, 5):
        real = scan_bytes(pickle.dumps(np.ma.masked_array([1.0, 2.0], mask=[0, 1]), protocol=proto), "m.pkl")
        assert real.severity == Severity.INFO, [(f.rule, f.message) for f in real.findings]
    evil = b"\x80\x02cnumpy.ma.core\n_mareconstruct\ncsomepkg.evil\nThing\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R."
    result = scan_bytes(evil, "m.pkl")
    assert result.severity == Severity.MEDIUM and "somepkg.evil.Thing" in result.findings[0].message
