"""ONNX models: the protobuf is parsed by `onnx` in an isolated child process, judged here.

The child (`describe`, run through core/isolate.py) turns the ModelProto into plain data; this
process never imports onnx or protobuf, so a crash in the native parser is a finding and a scan
of other formats pays nothing for them. External data is never loaded: only its locations are
checked against the model's folder, the way onnx's checker and onnxruntime resolve them.
"""

from __future__ import annotations

from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import LimitExceeded, Malformed, ParserCrash, Rule, Severity
from airlock.core.formats import onnx_checks
from airlock.core.isolate import (
    MALFORMED,
    TIMEOUT,
    ChildFormatError,
    IsolationFailure,
    read_input,
    run_isolated,
)
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import FIELD, FILE, GROUP, INITIALIZER, METADATA, OPERATOR, Node

NAME = "onnx"
EXTENSIONS = (".onnx",)  # .ort is onnxruntime's flatbuffer format: see not_inspected

# ModelProto field number -> protobuf wire type (0 varint, 2 length-delimited).
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
_FIELD_NAMES = {1: "ir_version", 2: "producer_name", 3: "producer_version", 4: "domain",
                5: "model_version", 6: "doc_string", 7: "graph", 8: "opset_import",
                14: "metadata_props", 20: "training_info", 25: "functions"}
_TEXT_FIELDS = (2, 3, 4)
EAGER_LIMIT = 1000  # longer lists of operators or initializers are built page by page


class PythonOperator(Rule):
    id = "ONX001"
    severity = Severity.HIGH
    title = "onnxruntime-extensions Python operator"
    help = "PyOp nodes run a Python function registered by the loading process; what runs is not in the file."


class CustomOperatorDomain(Rule):
    id = "ONX002"
    severity = Severity.MEDIUM
    title = "Custom operator domain"
    help = "The model uses operators outside the standard ONNX domains: loading needs a native library."


class ExternalDataOutside(Rule):
    id = "ONX003"
    severity = Severity.CRITICAL
    title = "External data outside the model's folder"
    help = "A tensor's external data location is absolute or escapes the model's folder: loading reads "\
        "any file the loader can reach."


class ExternalDataMissing(Rule):
    id = "ONX004"
    severity = Severity.HIGH
    title = "External data missing or out of bounds"
    help = "A loader fails on this model, or reads bytes that were never inspected."


class ExternalDataUnchecked(Rule):
    id = "ONX005"
    severity = Severity.INFO
    title = "External data not checked"
    help = "The model sits inside a container, so its external data files could not be looked up."


# Sniffing: a few top-level ModelProto fields read from the head, never the whole message.


def read_varint(data: bytes | Any, pos: int, end: int) -> tuple[int, int] | None:
    """A protobuf varint at pos: (value, next position), or None if cut off or over 10 bytes."""
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


Field = tuple[int, int, int, int]


def top_fields(data: bytes | Any, size: int, limit: int) -> tuple[list[Field], str | None]:
    """Top-level ModelProto fields as (field, offset, value or length, payload offset).

    Stops at `limit` bytes of input; the second value says what went wrong, if anything.
    """
    fields: list[Field] = []
    pos = 0
    end = min(size, limit)
    while pos < end:
        start = pos
        tag = read_varint(data, pos, end)
        if tag is None:
            return fields, None if end < size else f"truncated: field tag cut off at offset {start}"
        key, pos = tag
        number, wire = key >> 3, key & 7
        if _MODEL_FIELDS.get(number) != wire:
            return fields, f"field {number} (wire type {wire}) at offset {start} is not part of a ModelProto"
        value = read_varint(data, pos, end)
        if value is None:
            return fields, None if end < size else f"truncated: field {number} cut off at offset {start}"
        amount, pos = value
        fields.append((number, start, amount, pos))
        if wire == 2:
            if pos + amount > size:
                name = _FIELD_NAMES[number]
                return fields, (f"truncated: field {number} ({name}) at offset {start} declares {amount:,} "
                                f"bytes but only {size - pos:,} remain")
            pos += amount
    return fields, None


def _is_text(raw: bytes) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable()


def sniff(head: bytes, size: int) -> int:
    fields, problem = top_fields(head, size, len(head))
    if not fields or fields[0][0] != 1 or not 1 <= fields[0][2] <= 64:
        return 0  # serialisers write ir_version first; IR versions are small
    if problem is not None and not problem.startswith("truncated"):
        return 0
    numbers = {f[0] for f in fields}
    for number, _start, length, payload in fields:
        # producer and domain are text; TF SavedModel and Core ML put a sub-message at field 2.
        if number in _TEXT_FIELDS and not _is_text(head[payload : payload + min(length, 256)]):
            return 0
    if numbers & {7, 8}:
        return 90
    if problem is not None:
        return 60  # a model cut short before its graph: ours to report as truncated
    return 40 if numbers & {2, 3} else 20


# Parsing


def parse(source: Source, ctx: ScanContext) -> Node:
    root = ctx.current or Node(FILE, source.name, offset=0, length=source.size, member=source.member)
    fields, problem = top_fields(source.buffer, source.size, source.size)
    if problem is not None:
        offset = fields[-1][1] if fields and problem.startswith("truncated: field ") else None
        raise FormatError(problem, offset)
    try:
        desc = run_isolated("onnx", source, ctx)
    except IsolationFailure as failure:
        if failure.kind == MALFORMED:
            raise FormatError(f"the protobuf does not parse ({failure.message})", 0) from None
        rule: type[Rule] = LimitExceeded if failure.kind == TIMEOUT else ParserCrash
        ctx.report(rule, f"onnx: {failure.message}", node=root, offset=0)
        return root
    if not isinstance(desc, dict):
        raise FormatError("the parser returned no model description", 0)
    _build(desc, source, ctx, root)
    return root


def _build(desc: dict[str, Any], source: Source, ctx: ScanContext, root: Node) -> None:
    root.attrs.update({
        "ir_version": desc.get("ir_version"),
        "producer": safe_text(f"{desc.get('producer_name', '')} {desc.get('producer_version', '')}".strip()),
    })
    header = root.child(GROUP, "model")
    for key in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        value = desc.get(key)
        if value not in (None, "", 0):
            text = str(value)
            header.child(FIELD, f"{key}: {safe_text(text, 120)}", attrs={"value": safe_text(text)})
    opsets = desc.get("opset_import") or []
    group = root.child(GROUP, f"opset imports ({len(opsets)})")
    for domain, version in opsets:
        shown = safe_text(domain) or "ai.onnx"
        group.child(FIELD, f"{shown} v{version}", attrs={"domain": shown})
    props = desc.get("metadata_props") or []
    if props:
        meta = root.child(GROUP, f"metadata ({len(props)})")
        for key, value in props[:EAGER_LIMIT]:
            meta.child(METADATA, f"{safe_text(key, 80)} = {safe_text(value, 120)}",
                       attrs={"key": safe_text(key), "value": safe_text(value, 400)})
    functions = desc.get("functions") or []
    checker = onnx_checks.Checker(source, ctx, {(f["domain"], f["name"]) for f in functions})
    graph = desc.get("graph")
    if graph is None:
        ctx.report(Malformed, "malformed onnx: the model has no graph; loaders refuse it",
                   node=root, offset=0)
    else:
        _add_graph(graph, root, checker, "graph")
    if functions:
        fgroup = root.child(GROUP, f"functions ({len(functions)})")
        for fn in functions:
            label = f"{safe_text(fn['domain'])}.{safe_text(fn['name'])}"
            fnode = fgroup.child(GROUP, f"function {label}", attrs={"inputs": len(fn["inputs"]),
                                                                   "outputs": len(fn["outputs"])})
            _add_nodes(fn["nodes"], fnode, checker)
    for i, info in enumerate(desc.get("training_info") or []):
        tnode = root.child(GROUP, f"training info #{i + 1}")
        for key in ("initialization", "algorithm"):
            if info.get(key) is not None:
                _add_graph(info[key], tnode, checker, key)
    checker.finish(root)


def _add_graph(graph: dict[str, Any], parent: Node, checker: onnx_checks.Checker, what: str) -> Node:
    node = parent.child(GROUP, f"{what} {safe_text(graph['name'], 80)}".strip(),
                        attrs={"nodes": len(graph["nodes"]), "initializers": len(graph["initializers"])})
    for key in ("inputs", "outputs"):
        items = graph[key]
        group = node.child(GROUP, f"{key} ({len(items)})")
        for vi in items[:EAGER_LIMIT]:
            group.child(FIELD, safe_text(vi["name"], 120), attrs=_value_attrs(vi))
    _add_nodes(graph["nodes"], node, checker)
    inits = graph["initializers"] + graph["sparse_initializers"]
    group = node.child(GROUP, f"initializers ({len(inits)})")
    if len(inits) <= EAGER_LIMIT:
        for tensor in inits:
            checker.tensor(tensor, group.add(_tensor_node(tensor)))
    else:
        for tensor in inits:
            checker.ctx.tick(256)
            checker.tensor(tensor, group)
        group.set_lazy_children(len(inits), lambda a, b: [_tensor_node(t) for t in inits[a:b]])
    return node


def _add_nodes(nodes: list[dict[str, Any]], parent: Node, checker: onnx_checks.Checker) -> None:
    group = parent.child(GROUP, f"nodes ({len(nodes)})")
    eager = len(nodes) <= EAGER_LIMIT
    subgraphs: Node | None = None
    for op in nodes:
        checker.ctx.tick(256)
        node = group.add(_op_node(op)) if eager else None
        checker.operator(op, node or group)
        for attr in op["attributes"]:
            for tensor in attr.get("tensors", ()):
                checker.tensor(tensor, node or group)
            for sub in attr.get("graphs", ()):
                # If/Loop/Scan bodies sit under their operator; a paged operator list cannot hold
                # eager children, so there they go to a sibling group.
                if node is None and subgraphs is None:
                    subgraphs = parent.child(GROUP, "subgraphs")
                _add_graph(sub, node or subgraphs or parent, checker,
                           f"{safe_text(attr['name'], 40)} of {safe_text(op['op_type'], 60)}")
    if not eager:
        group.set_lazy_children(len(nodes), lambda a, b: [_op_node(op) for op in nodes[a:b]])


def _op_node(op: dict[str, Any]) -> Node:
    domain = safe_text(op["domain"])
    label = f"{domain + '.' if domain else ''}{safe_text(op['op_type'], 80)}"
    if op["name"]:
        label += f" {safe_text(op['name'], 80)}"
    node = Node(OPERATOR, label, attrs={
        "op_type": safe_text(op["op_type"]), "domain": domain or "ai.onnx",
        "inputs": ", ".join(safe_text(x, 60) for x in op["inputs"][:16]),
        "outputs": ", ".join(safe_text(x, 60) for x in op["outputs"][:16]),
    })
    for attr in op["attributes"]:
        if not attr.get("graphs"):
            node.child(FIELD, f"{safe_text(attr['name'], 60)} = {safe_text(str(attr.get('value', '')), 120)}",
                       attrs={"type": attr.get("type", "")})
    return node


def _tensor_node(tensor: dict[str, Any]) -> Node:
    attrs = onnx_checks.tensor_attrs(tensor)
    return Node(INITIALIZER, safe_text(tensor["name"], 120) or "(unnamed)", attrs=attrs)


def _value_attrs(vi: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"type": vi.get("kind", "")}
    if vi.get("dtype") is not None:
        attrs["dtype"] = onnx_checks.dtype_name(vi["dtype"])
    if vi.get("shape") is not None:
        attrs["shape"] = tuple(safe_text(str(d), 40) if isinstance(d, str) else d for d in vi["shape"])
    return attrs


# The child side: runs in core/isolate.py's child process, the only place onnx is imported.


def describe(data: bytes | None, path: str | None, options: dict[str, Any]) -> dict[str, Any]:
    from google.protobuf.message import DecodeError
    from onnx import ModelProto

    model = ModelProto()
    try:
        model.ParseFromString(read_input(data, path))
    except DecodeError as exc:
        raise ChildFormatError(f"protobuf: {exc}") from None
    return onnx_checks.describe_model(model)
