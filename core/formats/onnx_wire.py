"""Where each ONNX operator and initializer sits in the file: a protobuf wire walk, no protobuf.

The child process parses the model with `onnx` and describes it as plain data, without byte
offsets. This module walks the same bytes in the scanning process, tag by tag, and records the
span of every repeated entry the description lists: GraphProto `node` (1), `initializer` (5) and
`sparse_initializer` (15), FunctionProto `node` (7), If/Loop/Scan bodies in AttributeProto `g` (6)
and `graphs` (11), in graphs, functions (ModelProto 25) and training info (ModelProto 20). Repeated
fields keep wire order in protobuf, so the n-th span belongs to the n-th described entry.

Convention: a span is (offset, length) of the embedded message's *payload*, after its field tag
and length varint: exactly the bytes `NodeProto.SerializeToString()` gives for that entry.

Hostile input: every length is checked against the end of its enclosing message before use,
nothing is allocated from a declared length, tensors are never entered (their raw_data is
skipped by length, never sliced), the walk stops after MAX_FIELDS fields and MAX_DEPTH nested
graphs. Anything unexpected means "no offsets" (None), never an exception: the child's parse
already reports malformed models. Only `check` (the scan's clock and cancel) may raise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from airlock.core.formats.protowire import read_varint

Field = tuple[int, int, int, int]  # a top-level ModelProto field: (number, offset, value or length, payload)
Span = tuple[int, int]
Range = tuple[int, int]  # (start, end) of a message's payload

MAX_FIELDS = 8_000_000  # ~2.5 s of walking; a model with more structure is shown without offsets
MAX_DEPTH = 32  # nested subgraphs; protobuf's own recursion limit (100 messages) stops at ~33

_GRAPH, _TRAINING, _FUNCTIONS = 7, 20, 25  # ModelProto
_ENTERED = (_GRAPH, _TRAINING, _FUNCTIONS)
_G_NODE, _G_INIT, _G_SPARSE = 1, 5, 15  # GraphProto
_F_NODE = 7  # FunctionProto
_N_ATTRIBUTE = 5  # NodeProto
_A_GRAPH, _A_GRAPHS = 6, 11  # AttributeProto
_T_INITIALIZATION, _T_ALGORITHM = 1, 2  # TrainingInfoProto


class GraphSpans:
    """Spans of one graph's (or function's) entries in wire order, as flat [offset, length, …] ints."""

    __slots__ = ("initializers", "nodes", "sparse", "subgraphs")

    def __init__(self) -> None:
        self.nodes: list[int] = []
        self.initializers: list[int] = []
        self.sparse: list[int] = []
        # (node index, attribute index) -> spans of that attribute's graphs: `g`, then `graphs`.
        self.subgraphs: dict[tuple[int, int], list[GraphSpans | None]] = {}

    def fits(self, graph: dict[str, Any]) -> bool:
        """True when the counts agree with the child's description of the same graph."""
        return (len(self.nodes) == 2 * len(graph.get("nodes", ()))
                and len(self.initializers) == 2 * len(graph.get("initializers", ()))
                and len(self.sparse) == 2 * len(graph.get("sparse_initializers", ())))

    def node(self, i: int) -> Span:
        return self.nodes[2 * i], self.nodes[2 * i + 1]

    def initializer(self, i: int) -> Span:
        """The i-th of initializers followed by sparse initializers (the tree's order)."""
        dense = len(self.initializers) // 2
        if i < dense:
            return self.initializers[2 * i], self.initializers[2 * i + 1]
        i -= dense
        return self.sparse[2 * i], self.sparse[2 * i + 1]

    def graphs(self, node: int, attribute: int, count: int) -> list[GraphSpans | None]:
        found = self.subgraphs.get((node, attribute), [])
        return found if len(found) == count else [None] * count


class ModelSpans:
    __slots__ = ("functions", "graph", "training")

    def __init__(self) -> None:
        self.graph: GraphSpans | None = None
        self.functions: list[GraphSpans] = []
        self.training: list[tuple[GraphSpans | None, GraphSpans | None]] = []

    def function(self, i: int, count: int) -> GraphSpans | None:
        return self.functions[i] if count == len(self.functions) else None

    def training_graph(self, i: int, count: int, key: str) -> GraphSpans | None:
        if count != len(self.training):
            return None
        return self.training[i][0 if key == "initialization" else 1]


def model_spans(data: bytes | Any, size: int, fields: list[Field],
                check: Callable[[], None]) -> ModelSpans | None:
    """Spans of a whole model of `size` bytes from its top-level fields (`onnx.top_fields`), or
    None if the wire structure is not what the walk expects."""
    walk = _Walk(data, check)
    spans = ModelSpans()
    if any(not 0 <= p <= p + n <= size for number, _start, n, p in fields if number in _ENTERED):
        return None  # top_fields stopped at a field cut short: parse() reports it, nothing to walk
    try:
        graphs = [(p, p + n) for number, _start, n, p in fields if number == _GRAPH]
        if graphs:  # a singular message field repeated on the wire: protobuf merges them
            spans.graph = walk.graph(graphs, 0, _G_NODE)
        for number, _start, n, p in fields:
            if number == _FUNCTIONS:
                spans.functions.append(walk.graph([(p, p + n)], 0, _F_NODE))
            elif number == _TRAINING:
                spans.training.append(walk.training(p, p + n))
    except _GiveUp:
        return None
    return spans


class _GiveUp(Exception):
    """The walk met something it does not follow: no offsets for this model."""


class _Walk:
    __slots__ = ("check", "data", "steps")

    def __init__(self, data: bytes | Any, check: Callable[[], None]) -> None:
        self.data = data
        self.check = check
        self.steps = 0

    def _pace(self) -> None:
        self.check()
        if self.steps > MAX_FIELDS:
            raise _GiveUp

    def _varint(self, pos: int, end: int) -> tuple[int, int]:
        byte = self.data[pos]  # pos < end <= size: callers check
        if byte < 0x80:
            return byte, pos + 1
        found = read_varint(self.data, pos, end)
        if found is None:
            raise _GiveUp
        return found

    def fields(self, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(field number, payload offset, payload length) of each length-delimited field of the
        message in data[pos:end]; fields of other wire types are stepped over."""
        while pos < end:
            self.steps += 1
            if not self.steps & 0xFFF:
                self._pace()
            key, pos = self._varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise _GiveUp  # protobuf rejects field 0
            if wire == 2:
                if pos >= end:
                    raise _GiveUp
                length, pos = self._varint(pos, end)
                if length > end - pos:
                    raise _GiveUp
                yield number, pos, length
                pos += length
            elif wire == 0:
                if pos >= end:
                    raise _GiveUp
                _, pos = self._varint(pos, end)
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            elif wire == 3:
                pos = self._skip_group(number, pos, end)
            else:
                raise _GiveUp  # an end-group without its start, or wire type 6/7
        if pos != end:
            raise _GiveUp  # the last field ran past its message

    def _skip_group(self, number: int, pos: int, end: int) -> int:
        """Step over a (deprecated, but accepted as an unknown field) group up to its end tag."""
        open_groups = [number]
        while pos < end:
            self.steps += 1
            if not self.steps & 0xFFF:
                self._pace()
            key, pos = self._varint(pos, end)
            inner, wire = key >> 3, key & 7
            if wire == 4:
                if inner != open_groups.pop():
                    raise _GiveUp
                if not open_groups:
                    return pos
            elif wire == 3:
                if len(open_groups) >= MAX_DEPTH:
                    raise _GiveUp
                open_groups.append(inner)
            elif wire in (0, 2):
                if pos >= end:
                    raise _GiveUp
                value, pos = self._varint(pos, end)
                pos += value if wire == 2 else 0
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                raise _GiveUp
        raise _GiveUp  # the group never ends inside its message

    def graph(self, ranges: list[Range], depth: int, node_field: int) -> GraphSpans:
        spans = GraphSpans()
        in_graph = node_field == _G_NODE  # a FunctionProto has nodes only (its field 5 is `output`)
        for pos, end in ranges:
            for number, start, length in self.fields(pos, end):
                if number == node_field:
                    spans.nodes += (start, length)
                    self._node(start, start + length, len(spans.nodes) // 2 - 1, spans, depth)
                elif in_graph and number == _G_INIT:
                    spans.initializers += (start, length)  # never entered: raw_data can be gigabytes
                elif in_graph and number == _G_SPARSE:
                    spans.sparse += (start, length)
        return spans

    def _node(self, pos: int, end: int, index: int, owner: GraphSpans, depth: int) -> None:
        attribute = 0
        for number, start, length in self.fields(pos, end):
            if number == _N_ATTRIBUTE:
                graphs = self._attribute(start, start + length, depth)
                if graphs:
                    owner.subgraphs[(index, attribute)] = graphs
                attribute += 1

    def _attribute(self, pos: int, end: int, depth: int) -> list[GraphSpans | None]:
        merged: list[Range] = []  # every `g` on the wire: one graph, merged as protobuf does
        listed: list[Range] = []
        for number, start, length in self.fields(pos, end):
            if number == _A_GRAPH:
                merged.append((start, start + length))
            elif number == _A_GRAPHS:
                listed.append((start, start + length))
        ranges = ([merged] if merged else []) + [[r] for r in listed]
        if depth + 1 > MAX_DEPTH:
            return [None] * len(ranges)
        return [self.graph(r, depth + 1, _G_NODE) for r in ranges]

    def training(self, pos: int, end: int) -> tuple[GraphSpans | None, GraphSpans | None]:
        found: dict[int, list[Range]] = {_T_INITIALIZATION: [], _T_ALGORITHM: []}
        for number, start, length in self.fields(pos, end):
            if number in found:
                found[number].append((start, start + length))
        init, algo = found[_T_INITIALIZATION], found[_T_ALGORITHM]
        return (self.graph(init, 0, _G_NODE) if init else None,
                self.graph(algo, 0, _G_NODE) if algo else None)
