"""Core ML models (`.mlmodel`, also `Data/com.apple.CoreML/model.mlmodel` inside an `.mlpackage` folder):
a protobuf `Model` (coremltools mlmodel/format/Model.proto, NeuralNetwork.proto, MIL.proto).

Read with the bounded protobuf wire walk of airlock.core.formats.protowire, never with coremltools: the
model type, pipelines' sub-models, neural-network layers (name and kind), ML Program operations (type)
and the weight files they reference.

What Core ML runs besides its own layers:
- a custom layer (`CustomLayerParams.className`, also inside the networks of branch and loop layers) or
  a custom model (`CustomModel.className`) is a class compiled into the application: CML001, medium;
- an ML Program weight file (`BlobFileValue.fileName`) or a linked model (`LinkedModelFile`) whose path
  leaves the model package (absolute, `~`, `..`) makes Core ML read a file outside it: CML002, critical.
"""

from __future__ import annotations

from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats.contract import file_node
from airlock.core.formats.protowire import LEN, fields, text
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, GROUP, LAYER, OPERATOR, ROLE, Node

NAME = "coreml"
EXTENSIONS = (".mlmodel",)

MAX_DEPTH = 16
TYPES = {
    200: "PipelineClassifier",
    201: "PipelineRegressor",
    202: "Pipeline",
    300: "GLMRegressor",
    301: "SupportVectorRegressor",
    302: "TreeEnsembleRegressor",
    303: "NeuralNetworkRegressor",
    400: "GLMClassifier",
    401: "SupportVectorClassifier",
    402: "TreeEnsembleClassifier",
    403: "NeuralNetworkClassifier",
    404: "KNearestNeighborsClassifier",
    500: "NeuralNetwork",
    501: "ItemSimilarityRecommender",
    502: "MLProgram",
    555: "CustomModel",
    556: "LinkedModel",
    560: "ClassConfidenceThresholding",
}
NETWORKS = {303, 403, 500}


class CustomCode(Rule):
    id = "CML001"
    severity = Severity.MEDIUM
    title = "Core ML custom layer or custom model"
    help = (
        "The model names a class (className) that the application must compile in: Core ML calls that "
        "code to run the layer or model."
    )


class PathOutside(Rule):
    id = "CML002"
    severity = Severity.CRITICAL
    title = "Core ML weight file or linked model outside the model package"
    help = (
        "A weight file or linked model path is absolute or climbs out of the model package: Core ML reads "
        "a file the model has no business reading."
    )


def sniff_source(source: Source) -> int:
    from airlock.core.formats.model_kinds import COREML, detect

    kind, score = detect(source)
    return score + 10 if kind == COREML else 0


def sniff(head: bytes, size: int) -> int:
    return sniff_source(Source.from_bytes(head, "<head>"))


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    try:
        _model(source.view(), 0, source.size, ctx, root, source, 0)
    except FormatError as exc:
        ctx.report(
            Malformed,
            f"malformed Core ML model: {exc.message}; Core ML refuses the file",
            node=root,
            offset=exc.offset,
        )
    return root


def _model(view: Any, start: int, end: int, ctx: ScanContext, node: Node, source: Source, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FormatError(f"pipelines nested deeper than {MAX_DEPTH} at {start:,}", start)
    for number, wire, value, at in fields(view, start, end):
        ctx.tick(64)
        if number == 1 and wire != LEN:
            node.attrs["specification version"] = value
        if wire != LEN or number < 200:
            continue
        kind = TYPES.get(number, f"model type {number}")
        node.attrs["model type"] = kind
        body = node.child(
            GROUP,
            kind,
            offset=at,
            length=value,
            member=source.member,
            attrs={ROLE: CONTENTS} if depth == 0 else None,
        )
        if number in (200, 201):  # PipelineClassifier/Regressor: pipeline (1) → Pipeline
            for n2, w2, v2, a2 in fields(view, at, at + value):
                if n2 == 1 and w2 == LEN:
                    _pipeline(view, a2, a2 + v2, ctx, body, source, depth)
        elif number == 202:
            _pipeline(view, at, at + value, ctx, body, source, depth)
        elif number in NETWORKS:
            _network(view, at, at + value, ctx, body, source)
        elif number == 502:
            _program(view, at, at + value, ctx, body, source)
        elif number == 555:  # CustomModel: className (10)
            for n2, w2, v2, a2 in fields(view, at, at + value):
                if n2 == 10 and w2 == LEN:
                    name = safe_text(text(view, a2, v2, 200), 120)
                    body.attrs["class"] = name
                    ctx.report(
                        CustomCode,
                        f"custom model class {name}: the application's code runs the model",
                        node=body,
                        offset=a2,
                    )
        elif number == 556:
            _linked(view, at, at + value, ctx, body)


def _pipeline(
    view: Any, start: int, end: int, ctx: ScanContext, node: Node, source: Source, depth: int
) -> None:
    i = 0
    for number, wire, value, at in fields(view, start, end):
        if number == 1 and wire == LEN:  # Pipeline.models
            child = node.child(GROUP, f"model {i}", offset=at, length=value, member=source.member)
            _model(view, at, at + value, ctx, child, source, depth + 1)
            i += 1


# Control-flow layers hold whole networks: BranchLayerParams (605) ifBranch (1) / elseBranch (2),
# LoopLayerParams (615) conditionNetwork (3) / bodyNetwork (4). A custom layer inside one runs as any other.
_NESTED_NETWORKS = {605: {1: "if", 2: "else"}, 615: {3: "condition", 4: "body"}}
_CUSTOM_LAYER = 500


def _network(view: Any, start: int, end: int, ctx: ScanContext, node: Node, source: Source) -> None:
    """NeuralNetwork.layers (1), control-flow layers' networks included, listed flat under their path."""
    layers: list[tuple[str, int, int]] = []  # path/name, layer field number, offset
    pending = [("", start, end, 0)]  # (path of the enclosing layers, network bytes, nesting)
    while pending:
        prefix, net_start, net_end, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise LimitExceeded(
                f"control-flow networks nested deeper than {MAX_DEPTH} at {net_start:,}", net_start
            )
        for number, wire, value, at in fields(view, net_start, net_end):
            ctx.tick(256)
            if number != 1 or wire != LEN:
                continue
            name, kind, nested = _layer(view, at, at + value, ctx)
            path = prefix + name
            if kind == _CUSTOM_LAYER:
                for cls, cls_at in nested:
                    ctx.report(
                        CustomCode,
                        f"layer {safe_text(path, 160)} is a custom layer of class "
                        f"{safe_text(cls, 120)}: the application's code runs it",
                        node=node,
                        offset=cls_at,
                    )
            else:
                # Reversed onto the stack so that the walk lists if before else, condition before body.
                pending.extend((f"{path}/{branch}/", a, b, depth + 1) for branch, a, b in reversed(nested))
            layers.append((path, kind, at))
    group = node.child(GROUP, f"layers ({len(layers):,})", member=source.member)

    def page(lo: int, hi: int) -> list[Node]:
        return [
            Node(
                LAYER,
                f"{safe_text(name, 200)} ({'custom' if kind == _CUSTOM_LAYER else f'layer type {kind}'})",
                offset=at,
                member=source.member,
            )
            for name, kind, at in layers[lo:hi]
        ]

    group.set_lazy_children(len(layers), page)


def _layer(view: Any, start: int, end: int, ctx: ScanContext) -> tuple[str, int, list[Any]]:
    """(name, layer kind, what it holds): a custom layer's (className, offset) pairs, a control-flow
    layer's (branch, start, end) networks."""
    name, kind = "", 0
    held: list[Any] = []
    for number, wire, value, at in fields(view, start, end):
        ctx.tick(256)
        if number == 1 and wire == LEN:
            name = text(view, at, value, 200)
        elif number >= 100 and wire == LEN:
            kind = number
            if number == _CUSTOM_LAYER:  # CustomLayerParams.className (10)
                held.extend(
                    (text(view, a2, v2, 200), a2)
                    for n2, w2, v2, a2 in fields(view, at, at + value)
                    if n2 == 10 and w2 == LEN
                )
            elif number in _NESTED_NETWORKS:
                branches = _NESTED_NETWORKS[number]
                held.extend(
                    (branches[n2], a2, a2 + v2)
                    for n2, w2, v2, a2 in fields(view, at, at + value)
                    if n2 in branches and w2 == LEN
                )
    return name, kind, held


def _program(view: Any, start: int, end: int, ctx: ScanContext, node: Node, source: Source) -> None:
    """MIL Program: functions (2) → Function.block_specializations (3) → Block.operations (3)."""
    ops: list[tuple[str, int]] = []
    blocks: list[tuple[int, int]] = []
    for number, wire, value, at in fields(view, start, end):
        if number == 2 and wire == LEN:  # map entry {key, Function}
            for n2, w2, v2, a2 in fields(view, at, at + value):
                if n2 == 2 and w2 == LEN:
                    for n3, w3, v3, a3 in fields(view, a2, a2 + v2):
                        if n3 == 3 and w3 == LEN:  # map entry {key, Block}
                            blocks.extend(
                                (a4, a4 + v4)
                                for n4, w4, v4, a4 in fields(view, a3, a3 + v3)
                                if n4 == 2 and w4 == LEN
                            )
    while blocks:
        ctx.tick(64)
        b_start, b_end = blocks.pop()
        for n, w, v, a in fields(view, b_start, b_end):
            if n == 3 and w == LEN:
                ops.append(_operation(view, a, a + v, ctx, node, blocks))
    group = node.child(GROUP, f"operations ({len(ops):,})", member=source.member)

    def page(lo: int, hi: int) -> list[Node]:
        return [
            Node(OPERATOR, safe_text(kind, 80), offset=at, member=source.member) for kind, at in ops[lo:hi]
        ]

    group.set_lazy_children(len(ops), page)


def _operation(
    view: Any, start: int, end: int, ctx: ScanContext, node: Node, blocks: list[tuple[int, int]]
) -> tuple[str, int]:
    kind = ""
    for number, wire, value, at in fields(view, start, end):
        ctx.tick(256)
        if wire != LEN:
            continue
        if number == 1:
            kind = text(view, at, value, 120)
        elif number == 4:
            blocks.append((at, at + value))  # nested blocks (cond, while_loop)
        elif number == 5:  # attributes map entry {key, Value}: Value.blobFileValue (5) → fileName (1)
            for n2, w2, v2, a2 in fields(view, at, at + value):
                if n2 == 2 and w2 == LEN:
                    for n3, w3, v3, a3 in fields(view, a2, a2 + v2):
                        if n3 == 5 and w3 == LEN:
                            for n4, w4, v4, a4 in fields(view, a3, a3 + v3):
                                if n4 == 1 and w4 == LEN:
                                    _judge_path(text(view, a4, v4, 1024), a4, ctx, node, "weight file")
    return kind, start


def _linked(view: Any, start: int, end: int, ctx: ScanContext, node: Node) -> None:
    """LinkedModel.linkedModelFile (1): linkedModelFileName (1), linkedModelSearchPath (2)."""
    for number, wire, value, at in fields(view, start, end):
        if number != 1 or wire != LEN:
            continue
        for n2, w2, v2, a2 in fields(view, at, at + value):
            if n2 in (1, 2) and w2 == LEN:
                for n3, w3, v3, a3 in fields(view, a2, a2 + v2):
                    if n3 == 1 and w3 == LEN:
                        what = "linked model file" if n2 == 1 else "linked model search path"
                        path = text(view, a3, v3, 1024)
                        node.attrs[what] = safe_text(path, 200)
                        _judge_path(path, a3, ctx, node, what)


def _judge_path(path: str, offset: int, ctx: ScanContext, node: Node, what: str) -> None:
    inside = path.removeprefix("@model_path/")
    parts = inside.replace("\\", "/").split("/")
    if inside.startswith(("/", "~", "\\")) or ".." in parts or (len(inside) > 1 and inside[1] == ":"):
        ctx.report(
            PathOutside,
            f"{what} {safe_text(path, 200)!r} is outside the model package",
            node=node,
            offset=offset,
        )
