"""Trigger logic in ONNX graphs (ShadowLogic, ONNX-BACKDOOR): an output that a comparison of the
input with constants can override with input-independent values.

The attack adds a few operators: a probe of the input (a Slice or Gather of a pixel patch or a
token span, often reduced with ReduceMin/Max/Sum/Mean), a comparison with constants (Equal,
Greater, Less…), and an override: a Where or If that picks constant values when the comparison
holds, or an arithmetic blend `out * (1 - t) + target * t` with the 0/1 mask `t`. It runs no code
and survives conversion and fine-tuning.

The analysis reads the graph the isolated parser described (operators, initializers, and the
values of small constants) and interprets it abstractly under a hypothesis: "these comparisons
of input data with constants all hold" (all, none, or one at a time). Each value is DATA (depends
on input values), SHAPE (on input shapes only: dynamic-shape logic), a constant (ZERO, ONE or
another constant) or, under the hypothesis, TRUE/FALSE. A graph output that is DATA normally but
constant under a hypothesis, *because a Where/If/mask blend selected a constant*, is overridden by
a trigger. Attention and padding masks do not qualify: the masked scores still meet the input's
data (softmax times values), so no output becomes constant. A comparison that is itself the
output (a thresholded score) selects nothing.

The interpreter is onnx_trigger_graph.py; this module holds the rule, the report and the tree marks.
`small_values` runs in the isolated child, on protobuf tensors: it decodes tensors of at most 64
elements so the parent can tell ZERO and ONE from other constants and name the constants compared.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any

from airlock.core.findings import LimitExceeded, Rule, Severity
from airlock.core.formats.onnx_trigger_graph import Trigger, find_triggers
from airlock.core.text import safe_text

if TYPE_CHECKING:
    from airlock.core.context import ScanContext
    from airlock.core.tree import Node


class GraphTrigger(Rule):
    id = "ONX006"
    severity = Severity.HIGH
    title = "ONNX graph overrides its output on a trigger in the input"
    help = ("A Where/If/mask blend replaces a graph output with input-independent values when a slice of "
            "the input compares equal/greater/less to constants: the ShadowLogic backdoor pattern. The "
            "finding names the input probe, the constants, the operators and the output.")


MAX_VALUES = 64
MAX_TRIGGER_NODES = 1_000_000  # bigger graphs are not analysed (and say so)

_DTYPE_STRUCT = {1: "f", 2: "B", 3: "b", 4: "H", 5: "h", 6: "i", 7: "q", 9: "?", 10: "e", 11: "d", 12: "I",
                 13: "Q"}


# Child side: decode small tensors (no numpy: struct over the raw bytes or the typed fields).


def small_values(t: Any) -> list[Any] | None:
    fmt = _DTYPE_STRUCT.get(int(t.data_type))
    count = 1
    for d in t.dims:
        count *= int(d)
    if fmt is None or not 0 <= count <= MAX_VALUES or t.data_location == 1:
        return None
    if len(t.raw_data):
        raw = bytes(t.raw_data)
        if len(raw) != count * struct.calcsize(fmt):
            return None
        values = list(struct.unpack(f"<{count}{fmt}", raw))
    else:
        field = {1: t.float_data, 11: t.double_data, 7: t.int64_data, 12: t.uint64_data,
                 13: t.uint64_data}.get(int(t.data_type), t.int32_data)
        values = list(field)[:count]
        if int(t.data_type) == 10:  # float16 travels as its bits in int32_data
            values = [struct.unpack("<e", struct.pack("<H", int(v) & 0xFFFF))[0] for v in values]
        if len(values) != count:
            return None
    return [v if not isinstance(v, float) or math.isfinite(v) else str(v) for v in values]


def describe(trigger: Trigger, graph: dict[str, Any]) -> str:
    """The finding's message: output, override, comparisons, constants, probes, operators."""
    nodes = graph["nodes"]

    def name(i: int) -> str:
        op = nodes[i]
        return f"{op['op_type']} {op['name']!r}" if op["name"] else f"{op['op_type']} #{i}"

    inputs = sorted({x for i in trigger.path for x in nodes[i]["inputs"]
                     if x in {vi["name"] for vi in graph["inputs"]}})
    effect = "shifted by constant values" if trigger.shift else "replaced by input-independent values"
    parts = [f"output {trigger.output!r} is {effect} by {name(trigger.override)} "
             f"when {', '.join(name(i) for i in trigger.comparisons[:4])} take the values of the hypothesis "
             f"\"{trigger.hypothesis}\""]
    if inputs:
        parts.append(f"input {', '.join(repr(x) for x in inputs[:4])}")
    if trigger.probes:
        parts.append(f"probed by {', '.join(name(i) for i in trigger.probes[:6])}")
    if trigger.constants:
        parts.append(f"compared with {'; '.join(trigger.constants[:4])}")
    parts.append(f"path: {' → '.join(name(i) for i in trigger.path[:16])}"
                 + (" …" if len(trigger.path) > 16 else ""))
    return "; ".join(parts)


def roles(triggers: list[Trigger]) -> dict[int, str]:
    """Node index → its part in a trigger, for the tree (and a later graph view) to highlight."""
    out: dict[int, str] = {}
    for t in triggers:
        for i in t.path:
            out.setdefault(i, "trigger path")
        for i in t.probes:
            out[i] = "input probe"
        for i in t.comparisons:
            out[i] = "comparison with constants"
        out[t.override] = "output override"
    return out


class Marks:
    """What the tree builder needs: each operator's role, and the findings to attach to the
    operators that override an output."""

    def __init__(self, roles: dict[int, str], messages: dict[int, list[str]]) -> None:
        self.roles = roles
        self.messages = messages

    def report(self, i: int, ctx: ScanContext, node: Node, span: tuple[int, int] | None,
               member: str | None) -> None:
        where: dict[str, Any] = {"offset": span[0], "length": span[1], "member": member} if span else {}
        for message in self.messages.pop(i, ()):
            ctx.report(GraphTrigger, message, node=node, **where)


def analyse(graph: dict[str, Any], ctx: ScanContext, root: Node) -> Marks | None:
    """Find trigger logic in the model's main graph (If branches included)."""
    if len(graph["nodes"]) > MAX_TRIGGER_NODES:
        ctx.report(LimitExceeded, f"trigger analysis skipped: {len(graph['nodes']):,} operators is over the "
                   f"{MAX_TRIGGER_NODES:,} this analysis follows; the graph was not checked for trigger "
                   "logic", node=root)
        return None
    triggers = find_triggers(graph, lambda: ctx.tick(256))
    if not triggers:
        return None
    messages: dict[int, list[str]] = {}
    for t in triggers:
        messages.setdefault(t.override, []).append(safe_text(describe(t, graph), 1500))
    return Marks(roles(triggers), messages)
