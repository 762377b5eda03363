"""onnxruntime ORT models (`.ort`): a FlatBuffer with the `ORTM` identifier (onnxruntime's
core/flatbuffers/schema/ort.fbs), the format mobile and minimal onnxruntime builds load.

Read with the bounded FlatBuffers walk (airlock.core.formats.flatbuf), never with onnxruntime or onnx.
An ORT file is an ONNX graph in another encoding: the walk (ort_reader.Reader) turns it into the
plain description the ONNX reader gets from its parser child, so the ONNX judgement runs unchanged
(custom operator domains ONX002, onnxruntime-extensions Python operators ONX001, trigger logic ONX006
through `onnx_triggers.analyse`) and the graph view draws it (`OnnxGraphSource`). The tree mirrors the ONNX
one: model fields, opset imports, metadata, the graph's inputs, outputs, operators (with their If/Loop/
Scan bodies) and initializers with the offset and length of their bytes in the file.

ORT-only (module ort_extras): operator ids in the kernel type string resolver and in saved runtime
optimizations naming custom domains (ORT001), an `ort_version` newer than onnxruntime writes (ORT002),
initializers whose bytes live outside the file (ORT003). Node indices past `max_node_index` or
repeated, edges to nodes that do not exist, initializer bytes that disagree with dims × dtype and
offsets outside the file are malformed (onnxruntime's loader refuses them; another reader may not).
"""

from __future__ import annotations

from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import Malformed
from airlock.core.formats import onnx_checks, onnx_triggers, ort_extras
from airlock.core.formats.contract import file_node
from airlock.core.formats.flatbuf import FlatBuffer
from airlock.core.formats.ort_reader import Reader
from airlock.core.graph.onnx_graph import OnnxGraphSource
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import FIELD, GROUP, INITIALIZER, METADATA, OPERATOR, Node

NAME = "ort"
EXTENSIONS = (".ort",)

EAGER_LIMIT = 1000  # longer lists of operators or initializers are built page by page
_NO_VERSION = (1 << 63) - 1  # what onnxruntime writes for a model without model_version


def sniff(head: bytes, size: int) -> int:
    return 95 if len(head) >= 8 and head[4:8] == b"ORTM" else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    reader = Reader(FlatBuffer(source.view(), source.size), ctx, root)
    try:
        session = reader.buf.root()
        version = session.string(0, "ort_version") or ""
        root.attrs["ort_version"] = safe_text(version, 40)
        ort_extras.check_version(version, ctx, root)
        model = session.table(1, "model")
        if model is None:
            ctx.report(Malformed, "malformed ORT file: the InferenceSession has no model; onnxruntime "
                       "refuses it", node=root, offset=session.pos)
            return root
        desc = reader.model(model)
        _build(desc, source, ctx, root)
        resolver = session.table(3, "kernel type string resolver")
        ops = {(op["domain"], op["op_type"]) for op in reader.all_nodes}
        ort_extras.judge_op_ids(reader, resolver, desc.get("optimizations", []), ops, root)
    except FormatError as exc:
        ctx.report(Malformed, f"malformed ORT flatbuffer: {exc.message}; onnxruntime's verifier refuses "
                   "the file", node=root, offset=exc.offset)
    return root


# The tree, like the ONNX reader's: lists longer than EAGER_LIMIT are paged.


def _build(desc: dict[str, Any], source: Source, ctx: ScanContext, root: Node) -> None:
    root.attrs.update({"ir_version": desc["ir_version"], "producer": safe_text(
        f"{desc['producer_name']} {desc['producer_version']}".strip())})
    header = root.child(GROUP, "model")
    for key in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        if desc.get(key) not in (None, "", 0, _NO_VERSION):
            text = str(desc[key])
            header.child(FIELD, f"{key}: {safe_text(text, 120)}", attrs={"value": safe_text(text)})
    group = root.child(GROUP, f"opset imports ({len(desc['opset_import'])})")
    for domain, version in desc["opset_import"]:
        shown = safe_text(domain) or "ai.onnx"
        group.child(FIELD, f"{shown} v{version}", attrs={"domain": shown})
    props = desc["metadata_props"]
    if props:
        meta = root.child(GROUP, f"metadata ({len(props)})")
        for key, value in props[:EAGER_LIMIT]:
            meta.child(METADATA, f"{safe_text(key, 80)} = {safe_text(value, 120)}",
                       attrs={"key": safe_text(key), "value": safe_text(value, 400)})
    checker = onnx_checks.Checker(source, ctx, set())
    if desc["graph"] is None:
        ctx.report(Malformed, "malformed ORT file: the model has no graph; onnxruntime refuses it",
                   node=root, offset=0)
        return
    marks = onnx_triggers.analyse(desc["graph"], ctx, root)  # ShadowLogic-style trigger logic
    _add_graph(desc["graph"], root, checker, "graph", marks)
    checker.finish(root)
    records = desc.get("optimizations") or []
    if records:  # fusions the converter saved for the runtime to replay
        group = root.child(GROUP, f"runtime optimizations ({len(records):,})")
        for optimizer, op_id, pos in records[:EAGER_LIMIT]:
            group.child(FIELD, f"{safe_text(optimizer, 60)} → {safe_text(op_id, 120)}", offset=pos,
                        member=source.member,
                        attrs={"optimizer": safe_text(optimizer), "produces": safe_text(op_id)})


def _add_graph(graph: dict[str, Any], parent: Node, checker: onnx_checks.Checker, title: str,
               marks: onnx_triggers.Marks | None = None) -> None:
    member = checker.source.member
    graph_source = OnnxGraphSource(title, graph, set())
    node = parent.child(GROUP, title, attrs={"nodes": len(graph["nodes"]), "graph": graph_source,
                                             "initializers": len(graph["initializers"])})
    for key in ("inputs", "outputs"):
        group = node.child(GROUP, f"{key} ({len(graph[key])})")
        setattr(graph_source, key, group)
        for vi in graph[key][:EAGER_LIMIT]:
            group.child(FIELD, safe_text(vi["name"], 120), attrs=onnx_checks.value_attrs(vi))
    graph_source.nodes = _add_nodes(graph["nodes"], node, checker, marks)
    if marks is not None:
        graph_source.roles = dict(marks.roles)
    inits = graph["initializers"] + graph["sparse_initializers"]
    group = node.child(GROUP, f"initializers ({len(inits)})")
    graph_source.initializers = group
    for tensor in checker.ctx.each(inits, "initializers"):
        ort_extras.external_bytes(tensor, checker.ctx, group, member)
    if len(inits) <= EAGER_LIMIT:
        for tensor in inits:
            group.add(_tensor_node(tensor, member))
    else:
        group.set_lazy_children(len(inits), lambda a, b: [_tensor_node(inits[i], member)
                                                          for i in range(a, b)])


def _add_nodes(nodes: list[dict[str, Any]], parent: Node, checker: onnx_checks.Checker,
               marks: onnx_triggers.Marks | None) -> Node:
    group = parent.child(GROUP, f"nodes ({len(nodes)})")
    eager = len(nodes) <= EAGER_LIMIT
    subgraphs: Node | None = None
    member = checker.source.member
    roles = marks.roles if marks is not None else {}
    for i, op in enumerate(checker.ctx.each(nodes, "operators")):
        node = group.add(_op_node(op, member, roles.get(i))) if eager else None
        span = None if eager else (op["pos"], 4)
        if op["domain"] not in ort_extras.ORT_DOMAINS:  # onnxruntime's own kernels are not custom
            checker.operator(op, node or group, span)
        if marks is not None and i in marks.messages:
            marks.report(i, checker.ctx, node or group, (op["pos"], 4), member)
        for attr in op["attributes"]:
            for sub in attr.get("graphs", ()):
                if node is None and subgraphs is None:
                    subgraphs = parent.child(GROUP, "subgraphs")
                _add_graph(sub, node or subgraphs or parent, checker,
                           f"{safe_text(attr['name'], 40)} of {safe_text(op['op_type'], 60)}")
    if not eager:
        group.set_lazy_children(len(nodes), lambda a, b: [_op_node(nodes[i], member, roles.get(i))
                                                          for i in range(a, b)])
    return group


def _op_node(op: dict[str, Any], member: str | None, role: str | None) -> Node:
    domain = safe_text(op["domain"])
    label = f"{domain + '.' if domain else ''}{safe_text(op['op_type'], 80)}"
    if op["name"]:
        label += f" {safe_text(op['name'], 80)}"
    attrs: dict[str, Any] = {
        "op_type": safe_text(op["op_type"]), "domain": domain or "ai.onnx",
        "since_version": op["since_version"],
        "index": op["index"], "inputs": ", ".join(safe_text(x, 60) for x in op["inputs"][:16]),
        "outputs": ", ".join(safe_text(x, 60) for x in op["outputs"][:16]),
    }
    if op["provider"]:
        attrs["execution provider"] = safe_text(op["provider"], 80)
    if op["fused"]:
        attrs["fused"] = True
    if role is not None:
        attrs["trigger_path"] = role
    node = Node(OPERATOR, label, offset=op["pos"], member=member, attrs=attrs)
    for attr in op["attributes"]:
        if not attr.get("graphs"):
            node.child(FIELD, f"{safe_text(attr['name'], 60)} = {safe_text(str(attr.get('value', '')), 120)}",
                       attrs={"type": attr.get("type", "")})
    return node


def _tensor_node(tensor: dict[str, Any], member: str | None) -> Node:
    attrs = onnx_checks.tensor_attrs(tensor)
    if "external_offset" in tensor:
        attrs["external data offset"] = tensor["external_offset"]
    length = tensor["raw"] or None
    return Node(INITIALIZER, safe_text(tensor["name"], 120) or "(unnamed)", offset=tensor["offset"],
                length=length, member=member, attrs=attrs)
