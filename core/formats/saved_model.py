"""TensorFlow SavedModel graphs (`saved_model.pb`, tensorflow/core/protobuf/saved_model.proto).

Read with an own bounded protobuf wire walk (airlock.core.formats.protowire), never with TensorFlow:
every MetaGraphDef's graph (NodeDef name, op, inputs, string constants) and the functions of its
library (tf.function bodies, which TF2 models are made of), the signature names and the object
graph's Keras metadata.

What loading and calling the model runs besides tensor math (names in airlock.core.formats.tf_ops):
- `PyFunc`, `PyFuncStateless`, `EagerPyFunc` call a Python function of the loading process
  (TFSM001, critical);
- `ReadFile`, `WriteFile`, `MatchingFiles`, `DeleteFile`, whole-file readers, `LoadLibrary` read, list,
  write or load files (TFSM002, high);
- any file op, checkpoint `Save`/`Restore` included, whose path is a constant that leaves the model's
  folder (absolute, `~`, or `..`) writes or reads where the model has no business (TFSM003, critical);
  the checkpoint ops every SavedModel has take their path from the loader, so they stay clean.
Keras metadata (`SavedUserObject.metadata`, and the `keras_metadata.pb` file next to saved_model.pb)
is JSON judged like any Keras config (airlock.core.formats.keras_config: Lambda layers, non-Keras
modules, gadgets).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats import tf_ops
from airlock.core.formats.contract import file_node
from airlock.core.formats.protowire import LEN, fields, text
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, GROUP, METADATA, OPERATOR, ROLE, Node

NAME = "saved_model"
EXTENSIONS = (".pb",)

MAX_FINDINGS = 20  # per rule and graph
ACCESS_OPS = frozenset({"ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "WholeFileReader",
                        "WholeFileReaderV2"}) | tf_ops.LIBRARY_OPS


class PythonOp(Rule):
    id = "TFSM001"
    severity = Severity.CRITICAL
    title = "SavedModel graph calls Python (PyFunc, EagerPyFunc)"
    help = "The graph has an op that calls a Python function registered in the loading process."


class FileAccess(Rule):
    id = "TFSM002"
    severity = Severity.HIGH
    title = "SavedModel graph reads, lists or writes files"
    help = ("The graph has TensorFlow ops that read, list, write or delete files or load a library "
            "(ReadFile, WriteFile, MatchingFiles, LoadLibrary…): not something inference needs.")


class PathOutside(Rule):
    id = "TFSM003"
    severity = Severity.CRITICAL
    title = "SavedModel file op with a constant path outside the model"
    help = ("A file op (ReadFile, WriteFile, Save, Restore…) takes its path from a constant that is absolute "
            "or climbs out of the model's folder: running the graph touches that file.")


class GraphNode(NamedTuple):
    name: str
    op: str
    inputs: list[str]
    offset: int  # of the op name's bytes
    string: str | None  # a Const's first string value (paths)


def sniff_source(source: Source) -> int:
    from airlock.core.formats.not_inspected import SAVED_MODEL, detect

    kind, score = detect(source)
    if kind == SAVED_MODEL:
        return score + 10
    if _is_keras_metadata(source):
        return 70
    # Named saved_model.pb and opening like one (schema version, then a MetaGraphDef), but not whole:
    # claimed, so that the break is reported as malformed rather than as unknown content.
    name = (source.member or source.name).replace("\\", "/").rsplit("/", 1)[-1]
    head = source.head(4)
    return 60 if name == "saved_model.pb" and head[:1] == b"\x08" and head[2:3] == b"\x12" else 0


def sniff(head: bytes, size: int) -> int:
    return sniff_source(Source.from_bytes(head, "<head>"))


def _is_keras_metadata(source: Source) -> bool:
    """`keras_metadata.pb` next to saved_model.pb: SavedMetadata, repeated SavedObject at field 1."""
    name = (source.member or source.name).replace("\\", "/").rsplit("/", 1)[-1]
    return name == "keras_metadata.pb" and source.head(1) == b"\x0a"


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    view = source.view()
    if _is_keras_metadata(source):
        try:
            _keras_metadata(view, source, ctx, root)
        except FormatError as exc:
            ctx.report(Malformed, f"malformed keras_metadata.pb: {exc.message}; Keras refuses it", node=root,
                       offset=exc.offset)
        return root
    try:
        metas = 0
        for number, wire, value, at in fields(view, 0, source.size):
            ctx.check()
            if number == 1 and wire != LEN:
                root.attrs["schema version"] = value
            elif number == 2 and wire == LEN:
                _meta_graph(view, at, at + value, ctx, root, source, metas)
                metas += 1
        root.attrs["meta graphs"] = metas
    except FormatError as exc:
        ctx.report(Malformed, f"malformed SavedModel: {exc.message}; TensorFlow refuses the file", node=root,
                   offset=exc.offset)
    return root


def _meta_graph(view: Any, start: int, end: int, ctx: ScanContext, root: Node, source: Source,
                i: int) -> None:
    node = root.child(GROUP, f"meta graph {i}", offset=start, length=end - start, member=source.member,
                      attrs={ROLE: CONTENTS} if i == 0 else None)
    tags: list[str] = []
    signatures: list[str] = []
    for number, wire, value, at in fields(view, start, end):
        ctx.tick(64)
        if wire != LEN:
            continue
        if number == 1:  # MetaInfoDef: tags (4), tensorflow_version (5)
            for n2, w2, v2, a2 in fields(view, at, at + value):
                if n2 == 4 and w2 == LEN:
                    tags.append(safe_text(text(view, a2, v2), 60))
                elif n2 == 5 and w2 == LEN:
                    node.attrs["tensorflow"] = safe_text(text(view, a2, v2), 30)
        elif number == 2:
            _graph_def(view, at, at + value, ctx, node, source)
        elif number == 5:  # signature_def map entry: key (1)
            for n2, w2, v2, a2 in fields(view, at, at + value):
                if n2 == 1 and w2 == LEN:
                    signatures.append(safe_text(text(view, a2, v2), 80))
        elif number == 7:
            _object_graph(view, at, at + value, ctx, node, source)
    node.label = f"meta graph {i}" + (f" [{', '.join(tags)}]" if tags else "")
    if signatures:
        node.attrs["signatures"] = signatures[:50]


def _graph_def(view: Any, start: int, end: int, ctx: ScanContext, parent: Node, source: Source) -> None:
    nodes: list[GraphNode] = []
    functions: list[tuple[str, list[GraphNode], int]] = []
    for number, wire, value, at in fields(view, start, end):
        ctx.tick(256)
        if number == 1 and wire == LEN:
            nodes.append(_node_def(view, at, at + value))
        elif number == 2 and wire == LEN:  # FunctionDefLibrary: function (1)
            for n2, w2, v2, a2 in fields(view, at, at + value):
                ctx.tick(64)
                if n2 == 1 and w2 == LEN:
                    functions.append(_function_def(view, a2, a2 + v2, ctx))
    graph = _scope(parent, "graph", nodes, ctx, source, start)
    if functions:
        group = parent.child(GROUP, f"functions ({len(functions):,})", offset=start, member=source.member)
        for name, body, at in functions:
            ctx.tick(16)
            _scope(group, f"function {safe_text(name, 120)}", body, ctx, source, at)
    parent.attrs["graph nodes"] = len(nodes)
    del graph


def _function_def(view: Any, start: int, end: int, ctx: ScanContext) -> tuple[str, list[GraphNode], int]:
    name = ""
    body: list[GraphNode] = []
    for number, wire, value, at in fields(view, start, end):
        ctx.tick(256)
        if number == 1 and wire == LEN:  # OpDef signature: name (1)
            for n2, w2, v2, a2 in fields(view, at, at + value):
                if n2 == 1 and w2 == LEN:
                    name = text(view, a2, v2, 512)
        elif number == 3 and wire == LEN:
            body.append(_node_def(view, at, at + value))
    return name, body, start


def _node_def(view: Any, start: int, end: int) -> GraphNode:
    name = op = ""
    offset = start
    inputs: list[str] = []
    string: str | None = None
    for number, wire, value, at in fields(view, start, end):
        if wire != LEN:
            continue
        if number == 1:
            name = text(view, at, value, 512)
        elif number == 2:
            op, offset = text(view, at, value, 256), at
        elif number == 3 and len(inputs) < 64:
            inputs.append(text(view, at, value, 512))
        elif number == 5 and string is None:
            string = _attr_string(view, at, at + value)
    return GraphNode(name, op, inputs, offset, string if op == "Const" else None)


def _attr_string(view: Any, start: int, end: int) -> str | None:
    """attr map entry {key, AttrValue}: the first string of a "value" tensor (TensorProto.string_val)."""
    key = ""
    for number, wire, value, at in fields(view, start, end):
        if number == 1 and wire == LEN:
            key = text(view, at, value, 64)
        elif number == 2 and wire == LEN and key == "value":
            for n2, w2, v2, a2 in fields(view, at, at + value):
                if n2 == 8 and w2 == LEN:  # AttrValue.tensor
                    for n3, w3, v3, a3 in fields(view, a2, a2 + v2):
                        if n3 == 8 and w3 == LEN:  # TensorProto.string_val
                            return text(view, a3, v3, 1024)
    return None


def _scope(parent: Node, label: str, nodes: list[GraphNode], ctx: ScanContext, source: Source,
           at: int) -> Node:
    """One graph or function body as a lazy list of ops, judged."""
    group = parent.child(GROUP, f"{label}: nodes ({len(nodes):,})", offset=at, member=source.member)
    consts = {n.name: n.string for n in nodes if n.string is not None}
    counts: dict[str, int] = {}
    for n in nodes:
        ctx.tick(1024)
        rule, why = _judge(n, consts)
        if rule is None:
            continue
        counts[rule.id] = counts.get(rule.id, 0) + 1
        if counts[rule.id] <= MAX_FINDINGS:
            ctx.report(rule, f"{label} node {safe_text(n.name, 120)} (op {safe_text(n.op, 60)}): {why}",
                       node=group, offset=n.offset)
    for rule_id, count in counts.items():
        if count > MAX_FINDINGS:
            ctx.report(Rule.registry[rule_id], f"{count - MAX_FINDINGS:,} more such nodes in {label}",
                       node=group, offset=at)

    def page(lo: int, hi: int) -> list[Node]:
        return [Node(OPERATOR, f"{safe_text(n.name, 120)}: {safe_text(n.op, 60)}", offset=n.offset,
                     member=source.member, attrs={"op": safe_text(n.op, 60), "inputs": [safe_text(i, 80)
                                                                                     for i in n.inputs[:8]]})
                for n in nodes[lo:hi]]

    group.set_lazy_children(len(nodes), page)
    return group


def _judge(n: GraphNode, consts: dict[str, str]) -> tuple[type[Rule] | None, str]:
    if n.op in tf_ops.PYTHON_OPS:
        return PythonOp, "calls a Python function registered in the loading process"
    if n.op not in tf_ops.FILE_OPS and n.op not in tf_ops.LIBRARY_OPS:
        return None, ""
    path = None
    for name in n.inputs[:3]:
        path = consts.get(name.lstrip("^").split(":")[0])
        if path:
            break
    if path and (path.startswith(("/", "~", "\\")) or ".." in path.replace("\\", "/").split("/")
                 or (len(path) > 1 and path[1] == ":")):
        return PathOutside, f"its path is the constant {safe_text(path, 160)!r}, outside the model's folder"
    if n.op in ACCESS_OPS:
        shown = f" {safe_text(path, 160)!r}" if path else " (path computed when it runs)"
        return FileAccess, f"reads, lists or writes files{shown}"
    return None, ""


def _keras_metadata(view: Any, source: Source, ctx: ScanContext, root: Node) -> None:
    """SavedMetadata.nodes (1) → SavedObject: identifier (4), metadata (5): each a Keras config (JSON)."""
    found = 0
    for number, wire, value, at in fields(view, 0, source.size):
        ctx.tick(64)
        if number != 1 or wire != LEN:
            continue
        identifier = metadata = ""
        meta_at = at
        for n2, w2, v2, a2 in fields(view, at, at + value):
            if n2 == 4 and w2 == LEN:
                identifier = text(view, a2, v2, 120)
            elif n2 == 5 and w2 == LEN and v2 <= ctx.limits.max_header_bytes:
                metadata, meta_at = text(view, a2, v2, v2), a2
        if metadata:
            found += 1
            _judge_keras(metadata, identifier, meta_at, ctx, root, source)
    root.attrs["keras objects"] = found


def _judge_keras(metadata: str, identifier: str, at: int, ctx: ScanContext, parent: Node,
                 source: Source) -> None:
    from airlock.core.formats.keras_config import ConfigWalker

    node = parent.child(METADATA, f"Keras metadata ({safe_text(identifier, 60)})", offset=at,
                        length=len(metadata.encode()), member=source.member)
    try:
        config = json.loads(metadata)
    except (ValueError, RecursionError):
        return  # Keras ignores metadata it cannot parse and rebuilds from the functions
    ConfigWalker(ctx, "SavedModel Keras metadata").walk(config, node)


def _object_graph(view: Any, start: int, end: int, ctx: ScanContext, parent: Node, source: Source) -> None:
    """SavedObjectGraph nodes (1) → SavedObject user_object (4) → SavedUserObject metadata (3): Keras JSON."""
    found = 0
    for number, wire, value, at in fields(view, start, end):
        ctx.tick(64)
        if number != 1 or wire != LEN:
            continue
        for n2, w2, v2, a2 in fields(view, at, at + value):
            if n2 != 4 or w2 != LEN:
                continue
            identifier = metadata = ""
            meta_at = a2
            for n3, w3, v3, a3 in fields(view, a2, a2 + v2):
                if n3 == 1 and w3 == LEN:
                    identifier = text(view, a3, v3, 120)
                elif n3 == 3 and w3 == LEN and v3 <= ctx.limits.max_header_bytes:
                    metadata, meta_at = text(view, a3, v3, v3), a3
            if not metadata:
                continue
            found += 1
            _judge_keras(metadata, identifier, meta_at, ctx, parent, source)
    if found:
        parent.attrs["keras objects"] = found
