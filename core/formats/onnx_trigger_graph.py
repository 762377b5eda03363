"""The abstract interpreter behind onnx_triggers.py: which graph outputs a trigger can override.

Each value is DATA (depends on the input's values), SHAPE (on its shapes only), a constant (ZERO,
ONE or another) or, under a hypothesis about the comparisons of input data with constants, TRUE or
FALSE. Interpreting the graph under "all hold", "none holds" and "only this one holds/fails" shows
which outputs become constant because a Where, an If or a mask blend selected a constant; each such
output is explained back to the input probe, the comparisons and the constants.
"""

from __future__ import annotations

from typing import Any

MAX_HYPOTHESES = 64  # single-comparison hypotheses tried besides "all hold" and "none holds"
MAX_STEPS = 4_000_000  # operator visits for the single-comparison hypotheses

# Abstract values.
DATA, SHAPE, CONST, ZERO, ONE, TRUE, FALSE = "data", "shape", "const", "zero", "one", "true", "false"
_CONSTISH = frozenset({CONST, ZERO, ONE, TRUE, FALSE, SHAPE})

COMPARISONS = frozenset({"Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"})
_PROBES = frozenset({"Slice", "Gather", "GatherElements", "GatherND", "ReduceMin", "ReduceMax", "ReduceMean",
                     "ReduceSum"})
# Operators that pass their (first) input's value through, reshaped or re-typed.
_PASS = frozenset({"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Expand", "Cast",
                   "CastLike", "Tile", "Slice", "Gather", "GatherElements", "GatherND", "ReduceMin",
                   "ReduceMax", "ReduceMean", "ReduceSum", "ReduceProd", "Concat", "Split", "Dropout",
                   "Relu", "Sigmoid", "Softmax", "LogSoftmax", "Tanh", "Abs", "Neg", "Clip", "Floor", "Ceil",
                   "Round", "ArgMax", "ArgMin", "TopK", "Exp", "Log", "Sqrt", "Pad", "MatMul", "Gemm", "Div",
                   "Pow", "Max", "Min", "Sum", "Mean", "BatchNormalization", "LayerNormalization", "Erf"})
_SHAPE_OPS = frozenset({"Shape", "Size"})
_SOURCES = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                      "Bernoulli"})


class _Value:
    __slots__ = ("state", "via")

    def __init__(self, state: str, via: int | None = None) -> None:
        self.state = state
        self.via = via  # the override operator this constant came through, if any


class Trigger:
    """One trigger found: what the report and the tree need."""

    def __init__(self, output: str, override: int, comparisons: list[int], probes: list[int],
                 path: list[int], constants: list[str], hypothesis: str) -> None:
        self.output = output
        self.override = override  # node index of the Where/If/Mul that selects the constant
        self.comparisons = comparisons
        self.probes = probes  # Slice/Gather/Reduce nodes between the input and the comparison
        self.path = path  # every node index involved, input to output
        self.constants = constants
        self.hypothesis = hypothesis
        self.qualified = True  # a probe-style decision, not an elementwise mask of the data itself
        self.shift = False  # the output is shifted by constants on the trigger, not replaced


def find_triggers(graph: dict[str, Any], tick: Any) -> list[Trigger]:
    return _Graph(graph, tick).run()


class _Graph:
    def __init__(self, graph: dict[str, Any], tick: Any) -> None:
        self.graph = graph
        self.tick = tick
        self.nodes: list[dict[str, Any]] = graph["nodes"]
        self.producer: dict[str, int] = {}
        for i, op in enumerate(self.nodes):
            for name in op["outputs"]:
                if name:
                    self.producer[name] = i
        inits = graph["initializers"] + graph.get("sparse_initializers", [])
        self.consts: dict[str, _Value] = {t["name"]: _Value(_const_state(t.get("values"))) for t in inits}
        self.values: dict[str, list[Any]] = {t["name"]: t["values"] for t in inits if t.get("values")}
        self.inputs = [vi["name"] for vi in graph["inputs"] if vi["name"] not in self.consts]

    def run(self) -> list[Trigger]:
        base = self._interpret({})
        comparisons = [i for i, op in enumerate(self.nodes) if op["op_type"] in COMPARISONS
                       and op["domain"] in ("", "ai.onnx") and self._compares_data(op, base)]
        if not comparisons:
            return []
        outputs = [vi["name"] for vi in self.graph["outputs"]]
        data_outputs = [o for o in outputs if base.get(o, _Value(DATA)).state == DATA]
        hypotheses: list[tuple[str, dict[int, str]]] = [("all hold", dict.fromkeys(comparisons, TRUE)),
                                                        ("none holds", dict.fromkeys(comparisons, FALSE))]
        singles = min(MAX_HYPOTHESES, MAX_STEPS // (2 * max(1, len(self.nodes))))
        if len(comparisons) > 1:
            for i in comparisons[:singles]:  # triggers that need some comparisons to fail
                name = self._name(i)
                hypotheses.append((f"only {name} holds", {**dict.fromkeys(comparisons, FALSE), i: TRUE}))
                hypotheses.append((f"only {name} fails", {**dict.fromkeys(comparisons, TRUE), i: FALSE}))
        found: dict[str, Trigger] = {}
        both: list[dict[str, _Value]] = []
        for label, assumed in hypotheses:
            values = self._interpret(assumed)
            if len(both) < 2:
                both.append(values)
            for out in data_outputs:
                v = values.get(out)
                if out in found or v is None or v.state not in _CONSTISH or v.via is None:
                    continue
                trigger = self._explain(out, v.via, values, base, assumed, label)
                if trigger.qualified:
                    found[out] = trigger
        if len(found) < len(data_outputs):
            self._steers(data_outputs, found, base, both, hypotheses[:2])
        return list(found.values())

    def _steers(self, outputs: list[str], found: dict[str, Trigger], base: dict[str, _Value],
                both: list[dict[str, _Value]], hypotheses: list[tuple[str, dict[int, str]]]) -> None:
        """The output is not replaced but shifted: `out + t * target`, an offset that is zero unless
        the trigger holds, reaching a graph output with no other data joining it (an attention mask
        added to scores meets the values after the softmax; this does not)."""
        consumers: dict[str, list[int]] = {}
        for j, op in enumerate(self.nodes):
            for x in op["inputs"]:
                consumers.setdefault(x, []).append(j)
        for i, op in enumerate(self.nodes):
            self.tick()
            ins = [x for x in op["inputs"] if x]
            if op["op_type"] not in ("Add", "Sub") or op["domain"] not in ("", "ai.onnx") or len(ins) != 2:
                continue
            pairs = ((hypotheses[0], both[0], both[1]), (hypotheses[1], both[1], both[0]))
            for (label, assumed), on, off in pairs:
                data = [x for x in ins if on.get(x, _Value(DATA)).state == DATA]
                offset = [x for x in ins if x not in data]
                if len(data) != 1 or len(offset) != 1 or on[offset[0]].state not in (CONST, ONE) \
                        or off.get(offset[0], _Value(DATA)).state not in (ZERO, FALSE):
                    continue
                chain, out = self._alone_to_output(op["outputs"][0], on, consumers, outputs)
                if out is None or out in found:
                    continue
                trigger = self._explain(out, i, on, base, assumed, label)
                if trigger.qualified and trigger.probes:
                    trigger.path = list(dict.fromkeys([*trigger.path, *chain]))
                    trigger.shift = True
                    found[out] = trigger

    def _alone_to_output(self, name: str, values: dict[str, _Value], consumers: dict[str, list[int]],
                         outputs: list[str]) -> tuple[list[int], str | None]:
        """Follow `name` forward while no other input-dependent value joins it; the graph output reached."""
        chain: list[int] = []
        while name not in outputs and len(chain) < 64:
            self.tick()
            nxt = [j for j in consumers.get(name, []) if all(
                x == name or values.get(x, _Value(DATA)).state != DATA for x in self.nodes[j]["inputs"] if x)]
            if len(nxt) != 1 or not self.nodes[nxt[0]]["outputs"]:
                return chain, None
            chain.append(nxt[0])
            name = self.nodes[nxt[0]]["outputs"][0]
        return chain, (name if name in outputs else None)

    def _name(self, i: int) -> str:
        op = self.nodes[i]
        return f"{op['op_type']} {op['name']!r}" if op["name"] else f"{op['op_type']} #{i}"

    def _compares_data(self, op: dict[str, Any], base: dict[str, _Value]) -> bool:
        states = [base.get(x, _Value(DATA)).state for x in op["inputs"][:2]]
        return len(states) == 2 and DATA in states and any(s in _CONSTISH for s in states)

    # Abstract interpretation, in topological order.

    def _interpret(self, assumed: dict[int, str]) -> dict[str, _Value]:
        values: dict[str, _Value] = dict(self.consts)
        for name in self.inputs:
            values[name] = _Value(DATA)
        pending = list(range(len(self.nodes)))
        # Graphs are stored in topological order (the ONNX checker requires it); one more pass
        # handles the few exporters that do not, and a cycle leaves its outputs DATA.
        for _ in range(2):
            later = []
            for i in pending:
                self.tick()
                op = self.nodes[i]
                if any(x and x not in values for x in op["inputs"]) and any(
                        x in self.producer and self.producer[x] > i for x in op["inputs"] if x):
                    later.append(i)
                    continue
                result = assumed.get(i) or self._apply(i, op, values)
                outs = result if isinstance(result, list) else [result]
                for j, name in enumerate(op["outputs"]):
                    if name:
                        got = outs[j] if j < len(outs) else outs[-1]
                        values[name] = got if isinstance(got, _Value) else _Value(got)
            pending = later
            if not pending:
                break
        return values

    def _apply(self, i: int, op: dict[str, Any], values: dict[str, _Value]) -> Any:
        kind = op["op_type"]
        ins = [values.get(x, _Value(DATA)) if x else None for x in op["inputs"]]
        states = [v.state for v in ins if v is not None]
        via = next((v.via for v in ins if v is not None and v.via is not None), None)
        if op["domain"] not in ("", "ai.onnx"):
            return _Value(DATA)
        if kind == "Constant":
            return _Value(_const_state(_attr_values(op)))
        if kind in _SHAPE_OPS:
            return _Value(SHAPE)
        if kind in _SOURCES:
            return _Value(DATA)
        if kind == "Where" and len(ins) == 3 and ins[0] is not None:
            return self._where(i, ins)
        if kind == "If":
            return self._if(i, op, ins, values)
        if kind in ("Mul", "And"):
            return self._product(i, ins, states, via)
        if kind in ("Add", "Sub", "Or"):
            return self._sum(i, kind, ins, states, via)
        if kind == "Not" and states:
            return _Value({TRUE: FALSE, FALSE: TRUE}.get(states[0], states[0]), via)
        if not states:
            return _Value(CONST)
        if DATA in states:
            return _Value(DATA)
        if kind in ("Cast", "CastLike") and states[0] in (TRUE, FALSE):
            return _Value(ONE if states[0] == TRUE else ZERO, via)
        if kind in _PASS or kind in COMPARISONS:
            first = states[0]
            keep = first if first in (ZERO, ONE, TRUE, FALSE) and kind in _PASS else CONST
            return _Value(SHAPE if SHAPE in states and keep == CONST else keep, via)
        return _Value(SHAPE if SHAPE in states else CONST, via)

    def _where(self, i: int, ins: list[_Value | None]) -> _Value:
        cond, a, b = ins[0], ins[1], ins[2]
        assert cond is not None
        if cond.state in (TRUE, ONE, FALSE, ZERO):
            picked = a if cond.state in (TRUE, ONE) else b
            if picked is None:
                return _Value(DATA)
            # A constant picked on a trigger is an override; data picked is just data.
            return _Value(picked.state, i if picked.state in _CONSTISH else picked.via)
        states = {v.state for v in ins if v is not None}
        return _Value(DATA if DATA in states else CONST)

    def _if(self, i: int, op: dict[str, Any], ins: list[_Value | None], values: dict[str, _Value]) -> Any:
        cond = ins[0]
        branches = {a["name"]: a["graphs"][0] for a in op["attributes"] if a.get("graphs")}
        branch = None
        if cond is not None and cond.state in (TRUE, ONE):
            branch = branches.get("then_branch")
        elif cond is not None and cond.state in (FALSE, ZERO):
            branch = branches.get("else_branch")
        if branch is None:
            return [_Value(DATA)] * max(1, len(op["outputs"]))
        inner = _Graph(branch, self.tick)
        outer = {name: v for name, v in values.items()}
        inner.consts = {**outer, **inner.consts}
        inner.inputs = []
        result = inner._interpret({})
        outs = []
        for vi in branch["outputs"]:
            v = result.get(vi["name"], _Value(DATA))
            outs.append(_Value(v.state, i if v.state in _CONSTISH else v.via))
        return outs or [_Value(DATA)]

    def _product(self, i: int, ins: list[_Value | None], states: list[str], via: int | None) -> _Value:
        # x * 0 is 0 whatever x is: the blend `out * (1 - t)` vanishes under the trigger, and
        # this operator is where the input's data is overridden.
        for v in ins:
            if v is not None and v.state in (ZERO, FALSE):
                return _Value(v.state, i if DATA in states else via)
        if DATA in states:
            data = [v for v in ins if v is not None and v.state == DATA]
            if len(data) == 1 and all(s in (ONE, TRUE, DATA) for s in states):
                return data[0]  # x * 1 is x itself: `x - x * t` cancels under t = 1 (see _sum)
            return _Value(DATA)
        kept = [s for s in states if s not in (ONE, TRUE)]
        if not kept:
            return _Value(ONE if ONE in states else TRUE, via)
        return _Value(SHAPE if SHAPE in kept else CONST, via)

    def _sum(self, i: int, kind: str, ins: list[_Value | None], states: list[str], via: int | None) -> _Value:
        if kind == "Or" and TRUE in states:
            return _Value(TRUE, via)
        if kind == "Sub" and len(ins) == 2 and ins[0] is not None and ins[0] is ins[1] \
                and ins[0].state == DATA:
            return _Value(ZERO, i)  # `x - x * t` under t = 1: the blend written without `1 - t`
        if DATA in states:
            return _Value(DATA)
        live = [s for s in states if s not in (ZERO, FALSE)]
        if kind == "Sub" and len(ins) == 2 and ins[0] is not None and ins[1] is not None \
                and ins[0].state == ins[1].state == ONE:
            return _Value(ZERO, via)  # 1 - t under t = 1
        if kind in ("Add", "Or") and len(live) == 1:
            return _Value(live[0] if kind == "Or" or live[0] != TRUE else ONE, via)
        if not live:
            return _Value(ZERO if kind != "Or" else FALSE, via)
        return _Value(SHAPE if SHAPE in live else CONST, via)

    # The report

    def _explain(self, out: str, override: int, values: dict[str, _Value], base: dict[str, _Value],
                 assumed: dict[int, str], label: str) -> Trigger:
        op = self.nodes[override]
        if op["op_type"] in ("Where", "If"):
            trigger_inputs = op["inputs"][:1]
        elif self._cancels(op, values):  # `x - x * t`: the mask is an operand of the product
            product = self.nodes[self.producer[op["inputs"][1]]]
            trigger_inputs = [x for x in product["inputs"] if x and values.get(x, _Value(DATA)).state != DATA]
        else:  # a blend: the operand that is not the input's data under the trigger
            trigger_inputs = [x for x in op["inputs"] if x and values.get(x, _Value(DATA)).state != DATA]
        ancestors = self._ancestors(trigger_inputs)
        comparisons = [i for i in assumed if i in ancestors] or list(assumed)[:4]
        between = self._descendants(comparisons) & ancestors
        probes: list[int] = []
        constants: list[str] = []
        path: list[int] = []
        for c in comparisons[:8]:
            for x in self.nodes[c]["inputs"][:2]:
                if base.get(x, _Value(DATA)).state == DATA:
                    chain = self._back_to_input(x, base)
                    path.extend(chain)
                    probes.extend(j for j in chain if self.nodes[j]["op_type"] in _PROBES)
                else:
                    constants.append(self._describe_const(x))
        path.extend(sorted(between | set(comparisons)))
        path.extend(self._forward(override, out, values))
        ordered = list(dict.fromkeys(path))
        trigger = Trigger(out, override, comparisons, list(dict.fromkeys(probes)), ordered, constants, label)
        trigger.qualified = self._narrow(op, comparisons, between, base, values)
        return trigger

    def _narrow(self, op: dict[str, Any], comparisons: list[int], between: set[int],
                base: dict[str, _Value], values: dict[str, _Value]) -> bool:
        """A trigger decides from a probe of the input, not elementwise on the data it selects:
        `Where(x > 0, x, 0)` (a ReLU) and `masked_fill(scores < t, 0)` compare the very tensor
        they keep. Either a reduction turns the comparisons into one decision, or the compared
        value is not the overridden data nor something that data is computed from."""
        if op["op_type"] == "If" or any(self.nodes[j]["op_type"].startswith("Reduce") for j in between):
            return True
        if op["op_type"] == "Where":
            kept = [x for x in op["inputs"][1:] if x and base.get(x, _Value(DATA)).state == DATA]
        elif self._cancels(op, values):
            kept = op["inputs"][:1]  # the data cancelled (the product also holds the mask)
        else:  # a blend: the operand the trigger zeroes is the data (the mask is not)
            kept = [x for x in op["inputs"] if x and values.get(x, _Value(DATA)).state == DATA]
        upstream = set(kept)
        for j in self._ancestors(kept):
            upstream.update(x for x in self.nodes[j]["inputs"] if x)
        compared = {x for c in comparisons for x in self.nodes[c]["inputs"][:2]
                    if base.get(x, _Value(DATA)).state == DATA}
        return not compared & upstream

    def _cancels(self, op: dict[str, Any], values: dict[str, _Value]) -> bool:
        ins = op["inputs"]
        return (op["op_type"] == "Sub" and len(ins) == 2 and ins[1] in self.producer
                and values.get(ins[0]) is not None and values.get(ins[0]) is values.get(ins[1]))

    def _ancestors(self, names: list[str]) -> set[int]:
        seen: set[int] = set()
        stack = [self.producer[x] for x in names if x in self.producer]
        while stack:
            j = stack.pop()
            self.tick()
            if j in seen:
                continue
            seen.add(j)
            stack.extend(self.producer[x] for x in self.nodes[j]["inputs"] if x in self.producer)
        return seen

    def _descendants(self, starts: list[int]) -> set[int]:
        consumers: dict[str, list[int]] = {}
        for j, op in enumerate(self.nodes):
            for x in op["inputs"]:
                consumers.setdefault(x, []).append(j)
        seen = set(starts)
        stack = list(starts)
        while stack:
            j = stack.pop()
            self.tick()
            for name in self.nodes[j]["outputs"]:
                for k in consumers.get(name, ()):
                    if k not in seen:
                        seen.add(k)
                        stack.append(k)
        return seen

    def _back_to_input(self, name: str, base: dict[str, _Value]) -> list[int]:
        chain: list[int] = []
        while name in self.producer and len(chain) < 64:
            j = self.producer[name]
            chain.append(j)
            data_inputs = [x for x in self.nodes[j]["inputs"]
                           if x and base.get(x, _Value(DATA)).state == DATA]
            if not data_inputs:
                break
            name = data_inputs[0]
        chain.reverse()
        return chain

    def _forward(self, override: int, out: str, values: dict[str, _Value]) -> list[int]:
        """Operators from the override to the output, following values that carry its mark."""
        chain: list[int] = []
        name = out
        while name in self.producer and len(chain) < 256:
            j = self.producer[name]
            chain.append(j)
            if j == override:
                break
            marked = [x for x in self.nodes[j]["inputs"] if x and values.get(x) is not None
                      and values[x].via == override]
            if not marked:
                break
            name = marked[0]
        chain.reverse()
        return chain

    def _describe_const(self, name: str) -> str:
        values = self.values.get(name)
        if values is None and name in self.producer:
            values = _attr_values(self.nodes[self.producer[name]])
        if values:
            shown = ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values[:8])
            shown += " …" if len(values) > 8 else ""
            return f"{name} = [{shown}]"
        return name


def _const_state(values: list[Any] | None) -> str:
    if values:
        if all(v == 0 for v in values):
            return ZERO
        if all(v == 1 for v in values):
            return ONE
    return CONST


def _attr_values(op: dict[str, Any]) -> list[Any] | None:
    for attr in op["attributes"]:
        for tensor in attr.get("tensors", ()):
            if tensor.get("values"):
                return list(tensor["values"])
        if attr["name"] in ("value_float", "value_int") and isinstance(attr.get("value"), int | float):
            return [attr["value"]]
    return None
