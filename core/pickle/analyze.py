"""Runs the machine over a pickle stream and turns its records into tree nodes and findings."""

from __future__ import annotations

from typing import Any

from airlock.core.context import ScanContext
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.pickle import rules
from airlock.core.pickle.machine import DANGEROUS_CALL, DANGEROUS_GLOBAL, BuildHook, Machine, PickleRun
from airlock.core.pickle.opcodes import read_op
from airlock.core.pickle.policy import SAFE, Policy, load_policy
from airlock.core.pickle.values import Call, Global, preview
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CALL, GLOBAL, GROUP, OPCODE, PICKLE, Node

_RULES: dict[str, type[Rule]] = {
    cls.id: cls for cls in (rules.DangerousGlobal, rules.ComputedCallable, rules.ExtensionCode,
                            rules.UnknownFunction, rules.ThirdPartyClass, rules.DangerousCall,
                            rules.PlantedSetstate, rules.BuildOnGlobal, rules.MutatesGlobal,
                            rules.FrameStraddle, rules.SharedMemo)
}

def scan_pickle(
    source: Source,
    ctx: ScanContext,
    parent: Node,
    *,
    start: int = 0,
    end: int | None = None,
    build_hook: BuildHook | None = None,
    label: str = "pickle",
    policy: Policy | None = None,
) -> list[PickleRun]:
    """Read every pickle in source[start:end] into nodes under `parent`. Returns the runs.

    `policy` replaces the default one for a container whose loader resolves some names itself
    (TorchScript's `__torch__` classes come from the archive's own code, not from Python).
    """
    machine = Machine(source.view(), limits=ctx.limits, policy=policy, build_hook=build_hook, tick=ctx.check)
    runs = machine.run_stream(start, source.size if end is None else end)
    for i, run in enumerate(runs):
        name = label if len(runs) == 1 else f"{label} #{i + 1}"
        add_run(run, source, ctx, parent, name, policy)
    return runs


def add_run(run: PickleRun, source: Source, ctx: ScanContext, parent: Node, label: str,
            policy: Policy | None = None) -> Node:
    member = source.member
    node = parent.child(
        PICKLE, f"{label} (protocol {run.protocol})", offset=run.start, length=run.end - run.start,
        member=member,
        attrs={"protocol": run.protocol, "opcodes": len(run.op_offsets), "calls": len(run.calls),
               "complete": run.complete, "result": safe_text(preview(run.result, 200), 400)},
    )
    call_nodes = _add_calls(run, node, member)
    glob_nodes = _add_globals(run, node, member, policy)
    _add_opcodes(run, source, node)

    called_dangerous = {id(e.call.func) for e in run.events if e.rule == DANGEROUS_CALL and e.call}
    for event in run.events:
        if event.rule == DANGEROUS_GLOBAL and event.glob is not None and id(event.glob) in called_dangerous:
            continue  # the call finding already names it
        target = None
        if event.call is not None:
            target = call_nodes.get(id(event.call))
        elif event.glob is not None:
            target = glob_nodes.get(event.glob.dotted)
        ctx.report(_RULES[event.rule], safe_text(event.message, 300), node=target or node,
                   offset=event.offset, member=member, severity=event.severity)
    if run.error is not None:
        ctx.report(Malformed, f"pickle {run.error.message} at offset {run.error.offset}; the loader "
                   "runs everything before this point", node=node, offset=run.error.offset, member=member)
    return node


def _add_calls(run: PickleRun, node: Node, member: str | None) -> dict[int, Node]:
    """Calls as lazy children: a checkpoint makes one call per tensor, and building a labelled
    node for each would cost more than running the machine. Calls that carry a finding get their
    node now (findings point at it) and the page factory hands back that same node later."""
    calls = run.calls
    group = node.child(GROUP, f"calls ({len(calls):,})", offset=run.start, member=member)
    nodes: dict[int, Node] = {}
    by_index: dict[int, Node] = {}

    def build(call: Call) -> Node:
        return Node(CALL, safe_text(preview(call, 100), 240), offset=call.offset, length=1, member=member,
                    attrs=_call_attrs(call))

    for i, call in enumerate(calls):
        if call.severity > Severity.NONE:
            built = build(call)
            built.parent, built.index = group, i  # placed now so findings raise the severity above it
            nodes[id(call)] = by_index[i] = call.node = built

    def page(start: int, stop: int) -> list[Node]:
        return [by_index.get(i) or build(calls[i]) for i in range(start, stop)]

    group.set_lazy_children(len(calls), page)
    return nodes


def _call_attrs(call: Call) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "callable": safe_text(call.target.dotted if call.target else preview(call.func, 80)),
        "opcode": {"reduce": "REDUCE", "newobj": "NEWOBJ", "newobj_ex": "NEWOBJ_EX", "inst": "INST",
                   "obj": "OBJ", "setstate": "BUILD", "append": "APPEND", "additems": "ADDITEMS",
                   }.get(call.kind, call.kind.upper()),
        "arguments": safe_text(preview(call.args, 200), 400),
    }
    # Where the call's bytes begin: the GLOBAL / STACK_GLOBAL naming the callable (the node's offset is
    # the opcode that calls it), so a view can show the whole call, from the name through the arguments.
    glob = call.func if isinstance(call.func, Global) else call.target
    if glob is not None and 0 <= glob.offset < call.offset:
        attrs["call_start"] = glob.offset
    return attrs


def _add_globals(run: PickleRun, node: Node, member: str | None, policy: Policy | None = None
                 ) -> dict[str, Node]:
    policy = policy or load_policy()
    seen: dict[str, Node] = {}
    group = node.child(GROUP, "globals", offset=run.start, member=member)
    for glob in run.globals:
        if glob.dotted in seen:
            seen[glob.dotted].attrs["references"] += 1
            continue
        verdict = policy.classify(glob.module, glob.name)
        seen[glob.dotted] = group.child(
            GLOBAL, safe_text(glob.dotted), offset=glob.offset, member=member,
            attrs={"references": 1, "policy": verdict.kind, "reason": verdict.reason,
                   **({"written": safe_text(".".join(glob.original))} if glob.original else {})})
    group.label = f"globals ({len(seen):,})"
    return seen


def _add_opcodes(run: PickleRun, source: Source, node: Node) -> None:
    offsets = run.op_offsets
    group = node.child(GROUP, f"opcodes ({len(offsets):,})", offset=run.start, member=source.member)
    buf, end, member = source.view(), run.end, source.member

    def page(start: int, stop: int) -> list[Node]:
        out = []
        for i in range(start, stop):
            op = read_op(buf, offsets[i], max(end, offsets[i] + 1))
            arg = "" if op.arg is None else " " + safe_text(preview(op.arg, 80), 120)
            out.append(Node(OPCODE, f"{op.name}{arg}", offset=op.offset, length=op.length, member=member,
                            attrs={"opcode": op.name}))
        return out

    group.set_lazy_children(len(offsets), page)


def is_data_only(runs: list[PickleRun]) -> bool:
    """Every pickle complete, nothing judged, every global in the safe set."""
    policy = load_policy()
    return bool(runs) and all(
        run.complete and not run.events
        and all(policy.classify(g.module, g.name).kind == SAFE for g in run.globals)
        for run in runs)
