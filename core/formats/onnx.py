"""ONNX models: the protobuf is parsed by `onnx` in an isolated child process, judged here.

The child (`describe`, run through core/isolate.py) turns the ModelProto into plain data; this
process never imports onnx or protobuf, so a crash in the native parser is a finding and a scan
of other formats pays nothing for them. External data is never loaded: only its locations are
checked against the model's folder, the way onnx's checker and onnxruntime resolve them.
Operators and initializers carry their own bytes' offset and length, found by a wire walk in
this process (onnx_wire.py) and matched to the child's description by index. The checks are in
onnx_checks.py, the rules they report in onnx_rules.py.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.errors import LimitExceeded as LimitExceeded_
from airlock.core.findings import LimitExceeded, Malformed, ParserCrash, Rule
from airlock.core.formats import onnx_checks, onnx_triggers
from airlock.core.formats.contract import file_node
from airlock.core.formats.protowire import read_varint
from airlock.core.graph.onnx_graph import OnnxGraphSource
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
from airlock.core.tree import FIELD, GROUP, INITIALIZER, METADATA, OPERATOR, Node

if TYPE_CHECKING:
    from collections.abc import Callable

    from airlock.core.formats.onnx_wire import Field, GraphSpans, ModelSpans, Span

NAME = "onnx"
EXTENSIONS = (".onnx",)  # .ort is onnxruntime's flatbuffer format: airlock.core.formats.ort

# ModelProto field number -> protobuf wire type (0 varint, 2 length-delimited).
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
_FIELD_NAMES = {1: "ir_version", 2: "producer_name", 3: "producer_version", 4: "domain",
                5: "model_version", 6: "doc_string", 7: "graph", 8: "opset_import",
                14: "metadata_props", 20: "training_info", 25: "functions"}
_TEXT_FIELDS = (2, 3, 4)
EAGER_LIMIT = 1000  # longer lists of operators or initializers are built page by page


# Sniffing: a few top-level ModelProto fields read from the head, never the whole message.


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
    root = file_node(source, ctx)
    fields, problem = top_fields(source.view(), source.size, source.size)
    if problem is not None:
        offset = fields[-1][1] if fields and problem.startswith("truncated: field ") else None
        raise FormatError(problem, offset)
    try:
        # The child's walk stops by a wall-clock deadline (shared by both processes), early enough
        # for this process to read its answer and say how far it got.
        desc = run_isolated("onnx", source, ctx, {"deadline": time.time() + 0.8 * ctx.time_left()})
    except LimitExceeded_ as exc:  # the child was stopped before its walk began: say so
        if not exc.message.startswith("time budget"):
            raise
        raise LimitExceeded_(f"{exc.message} while the parser process was still loading the model's "
                             f"{source.size:,} bytes (onnx.load builds every operator before any is "
                             "described)", 0) from None
    except IsolationFailure as failure:
        if failure.kind == MALFORMED:
            raise FormatError(f"the protobuf does not parse ({failure.message})", 0) from None
        rule: type[Rule] = LimitExceeded if failure.kind == TIMEOUT else ParserCrash
        ctx.report(rule, f"onnx: {failure.message}", node=root, offset=0)
        return root
    if not isinstance(desc, dict):
        raise FormatError("the parser returned no model description", 0)
    if isinstance(desc.get("out_of_time"), dict):
        stop = desc["out_of_time"]
        raise LimitExceeded_(f"time budget of {ctx.limits.time_budget_s:g} s exceeded in the parser process "
                             f"after describing {stop.get('described', 0):,} operators and initializers (the "
                             f"main graph has {stop.get('operators', 0):,} operators)", 0)
    from airlock.core.formats.onnx_wire import model_spans  # here: only ONNX scans pay for it

    # Operators and initializers get their byte spans from a wire walk here (the child's
    # description has none), matched to the description by index.
    _build(desc, source, ctx, root, model_spans(source.view(), source.size, fields, ctx.check))
    return root


def _build(desc: dict[str, Any], source: Source, ctx: ScanContext, root: Node,
           spans: ModelSpans | None) -> None:
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
        marks = onnx_triggers.analyse(graph, ctx, root)  # ShadowLogic-style trigger logic
        _add_graph(graph, root, checker, "graph", spans.graph if spans else None, marks)
    if functions:
        fgroup = root.child(GROUP, f"functions ({len(functions)})")
        for i, fn in enumerate(functions):
            label = f"{safe_text(fn['domain'])}.{safe_text(fn['name'])}"
            fnode = fgroup.child(GROUP, f"function {label}", attrs={"inputs": len(fn["inputs"]),
                                                                   "outputs": len(fn["outputs"])})
            fspans = spans.function(i, len(functions)) if spans else None
            graph_source = OnnxGraphSource(label, fn, checker.local_functions)
            graph_source.nodes = _add_nodes(fn["nodes"], fnode, checker,
                                            fspans if fspans and fspans.fits(fn) else None)
            fnode.attrs["graph"] = graph_source
    training = desc.get("training_info") or []
    for i, info in enumerate(training):
        tnode = root.child(GROUP, f"training info #{i + 1}")
        for key in ("initialization", "algorithm"):
            if info.get(key) is not None:
                tspans = spans.training_graph(i, len(training), key) if spans else None
                _add_graph(info[key], tnode, checker, key, tspans)
    checker.finish(root)


def _add_graph(graph: dict[str, Any], parent: Node, checker: onnx_checks.Checker, what: str,
               spans: GraphSpans | None, marks: onnx_triggers.Marks | None = None) -> Node:
    if spans is not None and not spans.fits(graph):
        spans = None  # the file changed under us, or the walk disagrees: no offsets rather than wrong ones
    member = checker.source.member
    title = f"{what} {safe_text(graph['name'], 80)}".strip()
    # Kept for the graph view (core/graph): full tensor names and where each element is in this tree.
    graph_source = OnnxGraphSource(title, graph, checker.local_functions)
    node = parent.child(GROUP, title, attrs={"nodes": len(graph["nodes"]), "graph": graph_source,
                                             "initializers": len(graph["initializers"])})
    for key in ("inputs", "outputs"):
        items = graph[key]
        group = node.child(GROUP, f"{key} ({len(items)})")
        setattr(graph_source, key, group)
        for vi in items[:EAGER_LIMIT]:
            group.child(FIELD, safe_text(vi["name"], 120), attrs=onnx_checks.value_attrs(vi))
    graph_source.nodes = _add_nodes(graph["nodes"], node, checker, spans, marks)
    if marks is not None:
        graph_source.roles = dict(marks.roles)  # the graph view highlights the trigger path
    inits = graph["initializers"] + graph["sparse_initializers"]
    group = node.child(GROUP, f"initializers ({len(inits)})")
    graph_source.initializers = group
    where: Callable[[int], Span | None] = spans.initializer if spans is not None else _nowhere
    if len(inits) <= EAGER_LIMIT:
        for i, tensor in enumerate(inits):
            checker.tensor(tensor, group.add(_tensor_node(tensor, where(i), member)))
    else:
        for i, tensor in enumerate(checker.ctx.each(inits, "initializers")):
            checker.tensor(tensor, group, where(i))
        group.set_lazy_children(len(inits), lambda a, b: [_tensor_node(inits[i], where(i), member)
                                                          for i in range(a, b)])
    return node


def _nowhere(_i: int) -> None:
    return None


def _add_nodes(nodes: list[dict[str, Any]], parent: Node, checker: onnx_checks.Checker,
               spans: GraphSpans | None, marks: onnx_triggers.Marks | None = None) -> Node:
    group = parent.child(GROUP, f"nodes ({len(nodes)})")
    eager = len(nodes) <= EAGER_LIMIT
    subgraphs: Node | None = None
    member = checker.source.member
    where: Callable[[int], Span | None] = spans.node if spans is not None else _nowhere
    for i, op in enumerate(checker.ctx.each(nodes, "operators")):
        span = where(i)
        node = group.add(_op_node(op, span, member, marks.roles.get(i) if marks else None)) if eager else None
        checker.operator(op, node or group, span)
        if marks is not None and i in marks.messages:
            marks.report(i, checker.ctx, node or group, span, member)
        for j, attr in enumerate(op["attributes"]):
            for tensor in attr.get("tensors", ()):
                checker.tensor(tensor, node or group, span)  # a Constant's value: inside the operator
            graphs = attr.get("graphs", ())
            inner = spans.graphs(i, j, len(graphs)) if spans is not None else [None] * len(graphs)
            for sub, sub_spans in zip(graphs, inner, strict=True):
                # If/Loop/Scan bodies sit under their operator; a paged operator list cannot hold
                # eager children, so there they go to a sibling group.
                if node is None and subgraphs is None:
                    subgraphs = parent.child(GROUP, "subgraphs")
                _add_graph(sub, node or subgraphs or parent, checker,
                           f"{safe_text(attr['name'], 40)} of {safe_text(op['op_type'], 60)}", sub_spans)
    if not eager:
        roles = marks.roles if marks is not None else {}
        group.set_lazy_children(len(nodes), lambda a, b: [_op_node(nodes[i], where(i), member, roles.get(i))
                                                          for i in range(a, b)])
    return group


def _op_node(op: dict[str, Any], span: Span | None, member: str | None, role: str | None = None) -> Node:
    domain = safe_text(op["domain"])
    label = f"{domain + '.' if domain else ''}{safe_text(op['op_type'], 80)}"
    if op["name"]:
        label += f" {safe_text(op['name'], 80)}"
    offset, length = span or (None, None)
    node = Node(OPERATOR, label, offset=offset, length=length, member=member, attrs={
        "op_type": safe_text(op["op_type"]), "domain": domain or "ai.onnx",
        "inputs": ", ".join(safe_text(x, 60) for x in op["inputs"][:16]),
        "outputs": ", ".join(safe_text(x, 60) for x in op["outputs"][:16]),
    })
    if role is not None:  # part of a trigger: the tree (and a graph view) highlight it
        node.attrs["trigger_path"] = role
    for attr in op["attributes"]:
        if not attr.get("graphs"):
            node.child(FIELD, f"{safe_text(attr['name'], 60)} = {safe_text(str(attr.get('value', '')), 120)}",
                       attrs={"type": attr.get("type", "")})
    return node


def _tensor_node(tensor: dict[str, Any], span: Span | None, member: str | None) -> Node:
    attrs = onnx_checks.tensor_attrs(tensor)
    offset, length = span or (None, None)
    return Node(INITIALIZER, safe_text(tensor["name"], 120) or "(unnamed)", offset=offset, length=length,
                member=member, attrs=attrs)


# The child side: runs in core/isolate.py's child process, the only place onnx is imported.


def describe(data: bytes | None, path: str | None, options: dict[str, Any]) -> dict[str, Any]:
    from google.protobuf.message import DecodeError

    model = _model_proto_class()()
    try:
        model.ParseFromString(read_input(data, path))
    except DecodeError as exc:
        raise ChildFormatError(f"protobuf: {exc}") from None
    # The parent's deadline is wall-clock time; the walk counts on the monotonic clock.
    deadline = time.monotonic() + float(options.get("deadline", float("inf"))) - time.time()
    try:
        return onnx_checks.describe_model(model, deadline)
    except onnx_checks.OutOfTime as stop:
        return {"out_of_time": {"described": stop.done, "operators": len(model.graph.node)}}


def _model_proto_class() -> Any:
    """onnx's generated ModelProto class, without `import onnx`: the package's __init__ imports
    its helpers and ml_dtypes (0.7 s, most of a child's start-up), the generated module needs only
    protobuf (30 ms). The class, its descriptor and so the parse are the same as onnx.load's; a
    later `import onnx` in the same process reuses the module. Where the module is not a file on
    disk (a frozen app), onnx is imported as usual."""
    import importlib.util
    import os
    import sys

    if "onnx" in sys.modules:
        return sys.modules["onnx"].ModelProto
    loaded = sys.modules.get("onnx.onnx_ml_pb2")
    if loaded is None:
        package = importlib.util.find_spec("onnx")
        folder = os.path.dirname(package.origin) if package is not None and package.origin else ""
        file = os.path.join(folder, "onnx_ml_pb2.py")
        spec = importlib.util.spec_from_file_location("onnx.onnx_ml_pb2", file)
        if spec is None or spec.loader is None or not os.path.isfile(spec.origin or ""):
            from onnx import ModelProto

            return ModelProto
        loaded = importlib.util.module_from_spec(spec)
        sys.modules["onnx.onnx_ml_pb2"] = loaded
        spec.loader.exec_module(loaded)
    return loaded.ModelProto
