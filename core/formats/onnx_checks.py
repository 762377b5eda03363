"""ONNX judgement (operator domains, external data locations) and the child-side model description.

`describe_model` runs in the isolated child on a parsed ModelProto and returns plain data;
`Checker` runs in the scanning process on that data. Neither imports onnx: the child's caller
already has the message object, and enum values are protobuf integers fixed by the ONNX spec.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airlock.core import dtypes
from airlock.core.context import ScanContext
from airlock.core.findings import Rule
from airlock.core.formats.onnx_rules import (
    CustomOperatorDomain,
    ExternalDataMissing,
    ExternalDataOutside,
    ExternalDataUnchecked,
    PythonOperator,
)
from airlock.core.formats.onnx_triggers import small_values
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import Node

if TYPE_CHECKING:
    from pathlib import Path

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"})
PYOP_DOMAIN = "ai.onnx.contrib"
# onnxruntime reads the offset of this location as a pointer into its own memory.
ORT_MEMORY_TAG = "*/_ORT_MEM_ADDR_/*"

# TensorProto.DataType -> (name, bits per element)
DTYPES: dict[int, tuple[str, int]] = dtypes.onnx_names()
_ABSOLUTE = re.compile(r"^(?:[/\\~]|[A-Za-z]:)")
_MAX_TEXT = 4096
_MAX_LIST = 64


def dtype_name(code: int) -> str:
    return DTYPES.get(code, (f"type {code}", 0))[0]


def tensor_attrs(tensor: dict[str, Any]) -> dict[str, Any]:
    dims = tensor["dims"]
    attrs: dict[str, Any] = {"dtype": dtype_name(tensor["dtype"]), "shape": tuple(dims),
                             "location": tensor["location"]}
    size = tensor_size(tensor)
    if size is not None:
        attrs["size"] = size
    if tensor.get("sparse"):
        attrs["sparse"] = True
    if tensor["location"] == "external":
        for key, value in tensor["external"][:8]:
            attrs[f"external.{safe_text(key, 40)}"] = safe_text(value, 200)
    return attrs


def tensor_size(tensor: dict[str, Any]) -> int | None:
    if tensor["raw"]:
        return int(tensor["raw"])
    bits = DTYPES.get(tensor["dtype"], ("", 0))[1]
    if not bits or any(not isinstance(d, int) or d < 0 for d in tensor["dims"]):
        return None
    count = 1
    for d in tensor["dims"]:
        count *= d
    return (count * bits + 7) // 8


class _Seen:
    __slots__ = ("count", "names", "span", "target")

    def __init__(self, count: int = 0, target: Node | None = None, names: list[str] | None = None) -> None:
        self.count = count
        self.target = target
        self.span: tuple[int, int] | None = None  # the first node's bytes, when its tree node is paged
        self.names: list[str] = [] if names is None else names


class Checker:
    """Collects operator domains and external data references while the tree is built."""

    def __init__(self, source: Source, ctx: ScanContext, local_functions: set[tuple[str, str]]) -> None:
        self.source = source
        self.ctx = ctx
        self.local_functions = local_functions
        self.local_domains = {domain for domain, _ in local_functions}
        self.custom: dict[tuple[str, str], _Seen] = {}
        self.pyops: dict[str, _Seen] = {}
        self.locations: dict[str, str | None] = {}  # location -> problem reported (None = fine)
        self.container_noted = False
        self._span: tuple[int, int] | None = None  # of the tensor being checked
        from pathlib import Path  # here: importing it costs every scan's start-up ~3 ms

        in_container = source.member is not None or source.path is None
        self.base: Path | None = None if in_container or source.path is None else Path(source.path).parent

    # Operators

    def operator(self, op: dict[str, Any], target: Node, span: tuple[int, int] | None = None) -> None:
        domain, op_type = op["domain"], op["op_type"]
        if domain in STANDARD_DOMAINS or (domain, op_type) in self.local_functions:
            return
        if domain == PYOP_DOMAIN and op_type.startswith("Py"):
            seen = self.pyops.setdefault(op_type, _Seen())
        else:
            seen = self.custom.setdefault((domain, op_type), _Seen())
        seen.count += 1
        if seen.target is None:
            seen.target, seen.span = target, span
        if len(seen.names) < 3 and op["name"]:
            seen.names.append(op["name"])

    def finish(self, root: Node) -> None:
        for op_type, seen in self.pyops.items():
            self.ctx.report(PythonOperator, f"{seen.count} node(s) of {PYOP_DOMAIN}.{safe_text(op_type, 80)}"
                            f"{_names(seen)}: an onnxruntime-extensions Python operator runs Python code "
                            "registered by the loading process", node=seen.target or root,
                            **self._at(seen.span))
        for (domain, op_type), seen in self.custom.items():
            local = " (the domain also has local functions, but not this operator)" \
                if domain in self.local_domains else ""
            self.ctx.report(CustomOperatorDomain, f"{seen.count} node(s) of custom operator "
                            f"{safe_text(domain, 80)}.{safe_text(op_type, 80)}{_names(seen)}: loading needs "
                            f"a native library for domain {safe_text(domain, 80)!r}{local}",
                            node=seen.target or root, **self._at(seen.span))

    # External data

    def tensor(self, tensor: dict[str, Any], target: Node, span: tuple[int, int] | None = None) -> None:
        """`span`: the bytes of the initializer or operator the tensor belongs to, given when
        `target` is a group standing for a paged list (a node of its own carries its offset)."""
        self._span = span
        if "indices" in tensor:  # a sparse tensor: its indices may be stored externally too
            self.tensor(tensor["indices"], target, span)
        if tensor["location"] != "external":
            return
        name = safe_text(tensor["name"], 120)
        pairs = tensor["external"]
        locations = [value for key, value in pairs if key == "location"]
        if not locations:
            self._report(ExternalDataMissing, f"tensor {name!r} is stored externally but names no "
                        "location: loaders fail on it (malformed)", node=target)
            return
        numbers: dict[str, int] = {}
        for key, value in pairs:
            if key in ("offset", "length"):
                try:
                    numbers[key] = int(value)
                except ValueError:
                    numbers[key] = -1
                if numbers[key] < 0:
                    self._report(ExternalDataMissing, f"tensor {name!r}: external data {key} "
                                f"{safe_text(value, 40)!r} is not a non-negative integer (malformed)",
                                node=target)
                    return
        for location in dict.fromkeys(locations):  # a duplicate key: check every value loaders may use
            problem = self._location(location, target, name)
            if problem is None and self.base is not None:
                self._bounds(location, numbers, tensor, target, name)
        if self.base is None and not self.container_noted:
            self.container_noted = True
            where = "is read remotely" if self.source.member is None else "sits inside a container"
            self._report(ExternalDataUnchecked, f"the model uses external data but {where}: its data files "
                         "were not looked up", node=target)

    def _at(self, span: tuple[int, int] | None) -> dict[str, Any]:
        if span is None:
            return {}
        return {"offset": span[0], "length": span[1], "member": self.source.member}

    def _report(self, rule: type[Rule], message: str, *, node: Node) -> None:
        self.ctx.report(rule, message, node=node, **self._at(self._span))

    def _location(self, location: str, target: Node, name: str) -> str | None:
        if location in self.locations:
            return self.locations[location]
        shown = safe_text(location, 200)
        problem = outside_reason(location)
        if problem is not None:
            self._report(ExternalDataOutside, f"tensor {name!r} reads external data from {shown!r}: "
                        f"{problem}", node=target)
        elif "\x00" in location:
            problem = "contains a NUL byte"
            self._report(ExternalDataMissing, f"tensor {name!r}: external data location {shown!r} "
                        "contains a NUL byte; loaders cut the path there (malformed)", node=target)
        elif self.base is not None:
            problem = self._on_disk(location, target, name, shown)
        self.locations[location] = problem
        return problem

    def _on_disk(self, location: str, target: Node, name: str, shown: str) -> str | None:
        from pathlib import Path

        assert self.base is not None and self.source.path is not None
        candidate = self.base.joinpath(*_parts(location))
        if not os.path.lexists(candidate):
            # A loader fails on this model (onnx's checker and onnxruntime refuse a missing file):
            # DESIGN rates what a loader cannot read as malformed/high, and if the file appears
            # later its bytes were never inspected.
            self._report(ExternalDataMissing, f"tensor {name!r}: external data file {shown!r} does "
                        "not exist next to the model", node=target)
            return "missing"
        resolved = candidate.resolve()
        # The model's own folder, and the folder its file resolves into: the Hugging Face cache
        # links both the model and its data into blobs/, which is not an escape.
        roots = {self.base.resolve(), Path(self.source.path).resolve().parent}
        if not any(resolved == r or r in resolved.parents for r in roots):
            self._report(ExternalDataOutside, f"tensor {name!r}: external data {shown!r} is a link "
                        f"that resolves outside the model's folder, to {safe_text(str(resolved), 200)!r}",
                        node=target)
            return "outside"
        if not resolved.is_file():
            self._report(ExternalDataMissing, f"tensor {name!r}: external data {shown!r} is not a "
                        "regular file", node=target)
            return "not a file"
        return None

    def _bounds(self, location: str, numbers: dict[str, int], tensor: dict[str, Any], target: Node,
                name: str) -> None:
        assert self.base is not None
        size = self.base.joinpath(*_parts(location)).stat().st_size
        offset = numbers.get("offset", 0)
        length = numbers.get("length")
        if length is None:
            length = tensor_size(tensor)
        if length is None:
            return
        if offset + length > size:
            self._report(ExternalDataMissing, f"tensor {name!r}: external data {offset:,}+{length:,} "
                        f"runs past the end of {safe_text(location, 200)!r} ({size:,} bytes): loaders "
                        "fail on it (truncated)", node=target)


def outside_reason(location: str) -> str | None:
    """Why a location leaves the model's folder whatever the disk holds, or None."""
    if location == ORT_MEMORY_TAG or location.startswith(ORT_MEMORY_TAG):
        return "onnxruntime reads this tag's offset as an address in its own memory"
    if not location:
        return None
    if _ABSOLUTE.match(location):
        return "an absolute path; loaders read it as is"
    depth = 0
    for part in re.split(r"[\\/]+", location):
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            return "its '..' components climb out of the model's folder"
    return None


def _parts(location: str) -> list[str]:
    return [p for p in re.split(r"[\\/]+", location) if p not in ("", ".")]


def _names(seen: _Seen) -> str:
    if not seen.names:
        return ""
    return " (" + ", ".join(repr(safe_text(n, 60)) for n in seen.names) + ")"


# The child side. Runs on protobuf message objects in core/isolate.py's child.


def _text(value: Any) -> str:
    # upb hands back bytes for a string field that is not valid UTF-8.
    if isinstance(value, bytes):
        return value[: _MAX_TEXT * 4].decode("utf-8", "backslashreplace")[:_MAX_TEXT]
    return str(value)[:_MAX_TEXT]


class OutOfTime(Exception):
    """The child's walk passed its deadline after describing `done` operators and initializers."""

    def __init__(self, done: int) -> None:
        super().__init__(done)
        self.done = done


class _Clock:
    """Counts what the walk describes and looks at the time every 1,024 entries."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = 0

    def each(self, items: Any) -> Iterator[Any]:
        import time

        for item in items:
            self.done += 1
            if not self.done & 1023 and time.monotonic() > self.deadline:
                raise OutOfTime(self.done)
            yield item


_clock = _Clock(float("inf"))


def describe_model(model: Any, deadline: float = float("inf")) -> dict[str, Any]:
    """Plain data for the parent. Past `deadline` (time.monotonic()), raises OutOfTime: a graph of
    millions of operators is not described past the file's time budget."""
    global _clock  # one walk per child process at a time
    _clock = _Clock(deadline)
    return {
        "ir_version": int(model.ir_version),
        "producer_name": _text(model.producer_name),
        "producer_version": _text(model.producer_version),
        "domain": _text(model.domain),
        "model_version": int(model.model_version),
        "doc_string": _text(model.doc_string)[:400],
        "opset_import": [[_text(o.domain), int(o.version)] for o in model.opset_import],
        "metadata_props": [[_text(p.key), _text(p.value)] for p in model.metadata_props],
        "graph": _graph(model.graph) if model.HasField("graph") else None,
        "functions": [_function(f) for f in model.functions],
        "training_info": [
            {"initialization": _graph(t.initialization) if t.HasField("initialization") else None,
             "algorithm": _graph(t.algorithm) if t.HasField("algorithm") else None}
            for t in model.training_info
        ],
    }


def _graph(graph: Any) -> dict[str, Any]:
    return {
        "name": _text(graph.name),
        "inputs": [_value_info(v) for v in graph.input],
        "outputs": [_value_info(v) for v in graph.output],
        "nodes": [_node(n) for n in _clock.each(graph.node)],
        "initializers": [_tensor(t) for t in _clock.each(graph.initializer)],
        "sparse_initializers": [_sparse(s) for s in graph.sparse_initializer],
    }


def _function(fn: Any) -> dict[str, Any]:
    return {"name": _text(fn.name), "domain": _text(fn.domain), "inputs": [_text(x) for x in fn.input],
            "outputs": [_text(x) for x in fn.output], "nodes": [_node(n) for n in _clock.each(fn.node)]}


def _node(node: Any) -> dict[str, Any]:
    return {"name": _text(node.name), "op_type": _text(node.op_type), "domain": _text(node.domain),
            "inputs": [_text(x) for x in node.input], "outputs": [_text(x) for x in node.output],
            "attributes": [_attribute(a) for a in node.attribute]}


def _value_info(vi: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _text(vi.name), "kind": vi.type.WhichOneof("value") or "", "dtype": None,
                           "shape": None}
    if out["kind"] in ("tensor_type", "sparse_tensor_type"):
        tt = getattr(vi.type, out["kind"])
        out["dtype"] = int(tt.elem_type)
        if tt.HasField("shape"):
            out["shape"] = [int(d.dim_value) if d.HasField("dim_value") else _text(d.dim_param)[:80]
                            for d in tt.shape.dim[:_MAX_LIST]]
    return out


def _tensor(t: Any) -> dict[str, Any]:
    typed = sum(len(getattr(t, f)) for f in ("float_data", "int32_data", "int64_data", "double_data",
                                            "uint64_data", "string_data"))
    return {"name": _text(t.name), "dtype": int(t.data_type), "dims": [int(d) for d in t.dims[:_MAX_LIST]],
            "location": "external" if t.data_location == 1 else "default",
            "external": [[_text(e.key), _text(e.value)] for e in t.external_data[:_MAX_LIST]],
            "raw": len(t.raw_data), "typed": typed, "values": small_values(t)}


def _sparse(s: Any) -> dict[str, Any]:
    values = _tensor(s.values)
    values["sparse"] = True
    values["dims"] = [int(d) for d in s.dims[:_MAX_LIST]]
    values["indices"] = _tensor(s.indices)
    return values


# AttributeProto.AttributeType values.
_ATTR_TYPES = {1: "float", 2: "int", 3: "string", 4: "tensor", 5: "graph", 6: "floats", 7: "ints",
               8: "strings", 9: "tensors", 10: "graphs", 11: "sparse_tensor", 12: "sparse_tensors",
               13: "type_proto", 14: "type_protos"}


def _attribute(a: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _text(a.name), "type": _ATTR_TYPES.get(int(a.type), "undefined")}
    if a.ref_attr_name:
        out["value"] = f"@{_text(a.ref_attr_name)}"
    elif a.HasField("f"):
        out["value"] = float(a.f)
    elif a.HasField("i"):
        out["value"] = int(a.i)
    elif a.HasField("s"):
        out["value"] = _text(a.s)
    elif len(a.floats) or len(a.ints):
        items = list(a.floats[:16]) if len(a.floats) else list(a.ints[:16])
        total = len(a.floats) or len(a.ints)
        out["value"] = f"{items}{' …' if total > 16 else ''} ({total} values)"
    elif len(a.strings):
        out["value"] = f"{[_text(s)[:60] for s in a.strings[:8]]} ({len(a.strings)} strings)"
    tensors = []
    if a.HasField("t"):
        tensors.append(_tensor(a.t))
    tensors.extend(_tensor(t) for t in a.tensors)
    if a.HasField("sparse_tensor"):
        tensors.append(_sparse(a.sparse_tensor))
    tensors.extend(_sparse(s) for s in a.sparse_tensors)
    if tensors:
        out["tensors"] = tensors
        out.setdefault("value", f"{len(tensors)} tensor(s)")
    graphs = ([_graph(a.g)] if a.HasField("g") else []) + [_graph(g) for g in a.graphs]
    if graphs:
        out["graphs"] = graphs
        out.setdefault("value", f"{len(graphs)} graph(s)")
    return out


def value_attrs(vi: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a graph input or output node (ONNX and ORT alike)."""
    attrs: dict[str, Any] = {"type": vi.get("kind", "")}
    if vi.get("dtype") is not None:
        attrs["dtype"] = dtype_name(vi["dtype"])
    if vi.get("shape") is not None:
        attrs["shape"] = tuple(safe_text(str(d), 40) if isinstance(d, str) else d for d in vi["shape"])
    return attrs
