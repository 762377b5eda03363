"""The walk of an ORT flatbuffer (onnxruntime's ort.fbs) into plain data shaped like the description
the ONNX reader's parser child returns (airlock.core.formats.onnx_checks.describe_model), so the ONNX
checks and the graph view take it unchanged. Slot numbers are the schema's field order (a union takes
two slots; deprecated fields keep theirs). Every offset is checked by the bounded walk
(airlock.core.formats.flatbuf); structural errors onnxruntime's loader refuses are reported as
malformed with their offset, and the walk goes on where it can.
"""

from __future__ import annotations

import struct
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import LimitExceeded as LimitExceeded_
from airlock.core.findings import LimitExceeded, Malformed
from airlock.core.formats import onnx_checks, onnx_triggers, ort_extras
from airlock.core.formats.flatbuf import FlatBuffer, Table
from airlock.core.text import safe_text
from airlock.core.tree import Node

MAX_DEPTH = 16  # If/Loop/Scan bodies nested deeper are not read (and say so)
MAX_LIST = 64  # dims and attribute values kept per entry
# Names (node inputs/outputs, graph inputs/outputs) read per file: vectors of string offsets can all
# point at one string, so a small file could ask for billions of them. Real models stay far below.
MAX_NAMES = 2_000_000
_ATTR_TYPES = {1: "float", 2: "int", 3: "string", 4: "tensor", 5: "graph", 6: "floats", 7: "ints",
               8: "strings", 9: "tensors", 10: "graphs", 11: "sparse_tensor", 12: "sparse_tensors"}
_STRING = 8  # TensorDataType.STRING: its values are in string_data, not raw_data
_SMALL = {1: "f", 2: "B", 3: "b", 4: "H", 5: "h", 6: "i", 7: "q", 9: "?", 10: "e", 11: "d", 12: "I", 13: "Q"}


class Reader:
    """Walks the flatbuffer into plain data shaped like the ONNX parser child's description."""

    def __init__(self, buf: FlatBuffer, ctx: ScanContext, root: Node) -> None:
        self.buf = buf
        self.ctx = ctx
        self.root = root
        self.all_nodes: list[dict[str, Any]] = []  # every graph's, subgraphs included
        self.names_read = 0

    def names(self, table: Table, slot: int, what: str) -> list[str]:
        start, count = table.vector(slot, 4, what)
        self.names_read += count
        if self.names_read > MAX_NAMES:
            raise LimitExceeded_(f"{what}: more than the {MAX_NAMES:,} names Airlock reads per ORT file; the "
                                 "rest of the file was not inspected", start)
        if count > 256:
            self.ctx.check()
        return table.strings(slot, what, count)

    def malformed(self, message: str, offset: int) -> None:
        self.ctx.report(Malformed, f"malformed ORT file: {message}; onnxruntime refuses it",
                        node=self.root, offset=offset)

    def model(self, m: Table) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "ir_version": m.scalar(0, "q"), "producer_name": m.string(2, "producer_name") or "",
            "producer_version": m.string(3, "producer_version") or "", "domain": m.string(4, "domain") or "",
            "model_version": m.scalar(5, "q"), "doc_string": (m.string(6, "doc_string") or "")[:400],
        }
        start, count = m.tables(1, "opset imports")
        opsets = []
        for i in range(min(count, 1024)):
            entry = m.element(start, i, "opset import")
            opsets.append([entry.string(0, "opset domain") or "", entry.scalar(1, "q")])
        desc["opset_import"] = opsets
        start, count = m.tables(9, "metadata props")
        props = []
        for i in range(count):
            self.ctx.tick(256)
            entry = m.element(start, i, "metadata entry")
            props.append([entry.string(0, "metadata key") or "", entry.string(1, "metadata value") or ""])
        desc["metadata_props"] = props
        graph = m.table(7, "graph")
        if graph is None:
            desc["graph"] = None
        else:
            desc["graph"] = self.graph(graph, 0)
            desc["optimizations"] = desc["graph"].pop("optimizations")
        return desc

    def graph(self, g: Table, depth: int) -> dict[str, Any]:
        types = self.node_args(g)
        inputs = [types.get(n, {"name": n, "kind": "", "dtype": None, "shape": None})
                  for n in self.names(g, 5, "graph inputs")]
        outputs = [types.get(n, {"name": n, "kind": "", "dtype": None, "shape": None})
                   for n in self.names(g, 6, "graph outputs")]
        inits = [self.tensor(t) for t in self.each(g, 0, "initializers")]
        sparse = []
        for s in self.each(g, 7, "sparse initializers"):
            values = s.table(0, "sparse values")
            if values is None:
                self.malformed("a sparse initializer has no values tensor", s.pos)
                continue
            tensor = self.tensor(values)
            tensor.update(sparse=True, dims=s.longs(2, "sparse dims", MAX_LIST))
            indices = s.table(1, "sparse indices")
            if indices is not None:
                tensor["indices"] = self.tensor(indices)
            sparse.append(tensor)
        nodes = [self.node(n, depth) for n in self.each(g, 2, "nodes")]
        self.check_indices(g, nodes)
        optimizations = []
        opt = g.table(8, "runtime optimizations")
        if opt is not None:
            optimizations = ort_extras.read_optimizations(self, opt, {op["index"] for op in nodes})
        return {"name": "", "inputs": inputs, "outputs": outputs, "nodes": nodes, "initializers": inits,
                "sparse_initializers": sparse, "optimizations": optimizations}

    def each(self, table: Table, slot: int, what: str) -> Any:
        start, count = table.tables(slot, what)
        for i in range(count):
            self.ctx.tick(256)
            yield table.element(start, i, what)

    def node_args(self, g: Table) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for arg in self.each(g, 1, "node args"):
            name = arg.string(0, "node arg name") or ""
            info: dict[str, Any] = {"name": name, "kind": "", "dtype": None, "shape": None}
            type_info = arg.table(2, "type info")
            # TypeInfoValue union: slot 1 its type (1 tensor, 2 sequence, 3 map), slot 2 the value.
            kind = type_info.scalar(1, "B") if type_info is not None else 0
            if type_info is not None and kind == 1:
                info["kind"] = "tensor_type"
                tt = type_info.table(2, "tensor type")
                if tt is not None:
                    info["dtype"] = tt.scalar(0, "i")
                    info["shape"] = self.shape(tt.table(1, "shape"))
            elif kind:
                info["kind"] = {2: "sequence_type", 3: "map_type"}.get(kind, f"type {kind}")
            out[name] = info
        return out

    def shape(self, shape: Table | None) -> list[Any] | None:
        if shape is None:
            return None
        dims: list[Any] = []
        start, count = shape.tables(0, "shape dims")
        for i in range(min(count, MAX_LIST)):
            value = shape.element(start, i, "dimension").table(0, "dimension value")
            if value is None or value.scalar(0, "b") != 1:
                dims.append((value.string(2, "dim param") or "?")[:80] if value is not None else "?")
            else:
                dims.append(value.scalar(1, "q"))
        return dims

    def tensor(self, t: Table) -> dict[str, Any]:
        dtype = t.scalar(3, "i")
        dims = t.longs(2, "tensor dims", MAX_LIST)
        data, raw = t.vector(4, 1, "raw_data")
        strings = t.vector(5, 4, "string_data")[1]
        external = t.scalar(6, "q", -1)
        desc: dict[str, Any] = {"name": t.string(0, "tensor name") or "", "dtype": dtype, "dims": dims,
                                "location": "default", "external": [], "raw": raw, "typed": strings,
                                "values": None, "offset": data if raw else t.pos, "pos": t.pos}
        if external >= 0:
            desc["external_offset"] = external
        bits = onnx_checks.DTYPES.get(dtype, ("", 0))[1]
        if any(d < 0 for d in dims):
            self.malformed(f"tensor {safe_text(desc['name'], 80)!r} has a negative dimension {dims}", t.pos)
        elif dtype != _STRING and bits and external < 0 and t.vector(2, 8, "tensor dims")[1] <= MAX_LIST:
            count = 1
            for d in dims:
                count *= d
            expected = (count * bits + 7) // 8
            if raw != expected:
                self.malformed(f"tensor {safe_text(desc['name'], 80)!r}: dims {dims} of "
                               f"{onnx_checks.dtype_name(dtype)} need {expected:,} bytes, raw_data holds "
                               f"{raw:,}", data or t.pos)
            elif count <= onnx_triggers.MAX_VALUES and dtype in _SMALL:
                desc["values"] = _small_values(self.buf.view[data:data + raw], _SMALL[dtype], count)
        return desc

    def node(self, n: Table, depth: int) -> dict[str, Any]:
        op: dict[str, Any] = {
            "name": n.string(0, "node name") or "", "domain": n.string(2, "node domain") or "",
            "since_version": n.scalar(3, "i"), "index": n.scalar(4, "I"),
            "op_type": n.string(5, "op_type") or "", "fused": n.scalar(6, "i") == 1,
            "provider": n.string(7, "execution provider") or "",
            "inputs": self.names(n, 8, "node inputs"), "outputs": self.names(n, 9, "node outputs"),
            "pos": n.pos,
        }
        attrs = []
        for a in self.each(n, 10, "attributes"):
            attrs.append(self.attribute(a, op, depth))
        op["attributes"] = attrs
        self.all_nodes.append(op)
        return op

    def attribute(self, a: Table, op: dict[str, Any], depth: int) -> dict[str, Any]:
        kind = a.scalar(2, "i")
        out: dict[str, Any] = {"name": a.string(0, "attribute name") or "",
                               "type": _ATTR_TYPES.get(kind, "undefined")}
        if kind == 1:
            out["value"] = struct.unpack("<f", struct.pack("<I", a.scalar(3, "I")))[0]
        elif kind == 2:
            out["value"] = a.scalar(4, "q")
        elif kind == 3:
            out["value"] = (a.string(5, "attribute string") or "")[:400]
        elif kind in (6, 7):
            values = a.ints(8, "floats", 16) if kind == 6 else a.longs(9, "ints", 16)
            total = a.vector(8 if kind == 6 else 9, 4 if kind == 6 else 8, "values")[1]
            if kind == 6:
                values = [struct.unpack("<f", struct.pack("<i", v))[0] for v in values]
            out["value"] = f"{values}{' …' if total > 16 else ''} ({total} values)"
        elif kind == 8:
            strings = a.strings(10, "strings", 8)
            out["value"] = f"{[s[:60] for s in strings]} ({a.vector(10, 4, 'strings')[1]} strings)"
        tensors = []
        t = a.table(6, "attribute tensor")
        if t is not None:
            tensors.append(self.tensor(t))
        tensors.extend(self.tensor(x) for x in self.each(a, 11, "attribute tensors"))
        if tensors:
            out["tensors"] = tensors
            out.setdefault("value", f"{len(tensors)} tensor(s)")
        graphs = [a.table(7, "subgraph"), *self.each(a, 12, "subgraphs")]
        subs = [g for g in graphs if g is not None]
        if subs and depth >= MAX_DEPTH:
            self.ctx.report(LimitExceeded, f"subgraphs of {safe_text(op['op_type'], 60)} nested more than "
                            f"{MAX_DEPTH} deep were not read: what they run was not inspected",
                            node=self.root, offset=op["pos"])
        elif subs:
            out["graphs"] = [self.graph(g, depth + 1) for g in subs]
            for sub in out["graphs"]:
                sub.pop("optimizations")
            out.setdefault("value", f"{len(subs)} graph(s)")
        return out

    def check_indices(self, g: Table, nodes: list[dict[str, Any]]) -> None:
        limit = g.scalar(3, "I")
        seen: set[int] = set()
        for op in nodes:
            if op["index"] in seen or (limit and op["index"] >= limit):
                why = ("repeats an earlier node's" if op["index"] in seen
                       else f"is not below max_node_index {limit:,}")
                self.malformed(f"node {safe_text(op['op_type'], 60)} has index {op['index']:,}, which {why}",
                               op["pos"])
                break
            seen.add(op["index"])
        for edge in self.each(g, 4, "node edges"):
            ends = [edge.scalar(0, "I")]
            for slot in (1, 2):
                start, count = edge.vector(slot, 12, "edge ends")
                ends.extend(self.buf.u32(start + 12 * i) for i in range(min(count, 1 << 16)))
            missing = [e for e in ends if e not in seen]
            if missing:
                self.malformed(f"an edge names node {missing[0]:,}, but the graph has no node of that index",
                               edge.pos)
                return


def _small_values(raw: bytes, fmt: str, count: int) -> list[Any] | None:
    import math

    if len(raw) != count * struct.calcsize(fmt):
        return None
    values = list(struct.unpack(f"<{count}{fmt}", raw))
    return [v if not isinstance(v, float) or math.isfinite(v) else str(v) for v in values]
