"""Model formats Airlock recognises but does not inspect yet: named, never reported as clean.

Each is detected by content where the format allows it (the `ORTM` flatbuffer identifier of
onnxruntime, the field layout of TF SavedModel and Core ML protobufs, OpenVINO's `<net>` XML, a
TensorFlow checkpoint index's footer magic) and reported with a `medium` "not inspected" finding (fail
closed: never clean). SavedModels, OpenVINO IR and Core ML are only detected here: their own modules
(airlock.core.formats.saved_model, .openvino, .coreml) read them, as .nemo, .pt2 and TFLite are.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from airlock.core.context import ScanContext
from airlock.core.findings import NotInspected
from airlock.core.formats.contract import file_node
from airlock.core.formats.protowire import read_varint
from airlock.core.source import Source
from airlock.core.tree import Node

if TYPE_CHECKING:
    pass

NAME = "not-inspected"
EXTENSIONS = (".mlmodel", ".pb", ".index", ".ort")
# The fallback for those readers' extensions: a `.mlmodel` or `.pb` they cannot read (a frozen
# GraphDef, a protobuf of another kind) is still "not inspected" here, never clean.
OVERLAPS = ("coreml", "saved_model")

ORT = "onnxruntime ORT flatbuffer"
SAVED_MODEL = "TensorFlow SavedModel (saved_model.pb)"
COREML = "Core ML model"
OPENVINO = "OpenVINO IR (network XML)"
TF_INDEX = "TensorFlow checkpoint index"

_TF_TABLE_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")


def detect(source: Source) -> tuple[str | None, int]:
    """(what the content is, sniff score). Cached per source: the SavedModel, Core ML and OpenVINO
    readers ask too, and the TF index check reads the file's last bytes (a request when remote)."""
    cached = source.cache.get("not_inspected.detect")
    if cached is None:
        cached = source.cache["not_inspected.detect"] = _detect(source)
    result: tuple[str | None, int] = cached
    return result


def _detect(source: Source) -> tuple[str | None, int]:
    head = source.head(1024)
    name = os.path.basename(source.member or source.name).lower()
    if len(head) >= 8 and head[4:8] == b"ORTM":
        return ORT, 90
    if head.lstrip()[:5] == b"<?xml" and b"<net " in head and b"version=" in head:
        return OPENVINO, 80
    kind = _protobuf_kind(head, source.size)
    if kind is not None:
        if kind == SAVED_MODEL:
            return kind, 70 if name == "saved_model.pb" else 45
        return kind, 70 if name.endswith(".mlmodel") else 45
    if source.size >= 48 and source.read(source.size - 8, 8) == _TF_TABLE_MAGIC:
        return TF_INDEX, 60 if name.endswith(".index") else 40
    return None, 0


def sniff_source(source: Source) -> int:
    kind, score = detect(source)
    return 0 if kind in (SAVED_MODEL, OPENVINO, COREML) else score  # read by their own modules now


def sniff(head: bytes, size: int) -> int:
    # Only for callers without a Source; scan uses sniff_source, which can see the whole file.
    return detect(Source.from_bytes(head, "<head>"))[1]


def _protobuf_kind(head: bytes, size: int) -> str | None:
    """SavedModel: field 1 (schema version, a small varint) then MetaGraphDefs at field 2 and
    nothing else. Core ML: specificationVersion at 1, a description message at 2, the model at
    a field number of 200 or more. ONNX (ir_version at 1) has text at field 2, so never both."""
    first = read_varint(head, 0, len(head))
    if first is None or first[0] != 0x08:
        return None
    version = read_varint(head, first[1], len(head))
    if version is None or not 1 <= version[0] <= 16:
        return None
    pos, numbers = version[1], [1]
    while pos < len(head):
        tag = read_varint(head, pos, len(head))
        if tag is None or tag[0] & 7 != 2:
            break
        length = read_varint(head, tag[1], len(head))
        if length is None or length[1] + length[0] > size:
            return None
        numbers.append(tag[0] >> 3)
        if numbers == [1, 2] and head[length[1] : length[1] + 1] not in (b"\x0a", b"\x12"):
            return None  # field 2 holds a message starting with its first field; text is ONNX
        pos = length[1] + length[0]
    if len(numbers) < 2 or numbers[1] != 2:
        return None
    if any(n >= 200 for n in numbers):
        return COREML
    return SAVED_MODEL if set(numbers) == {1, 2} else None


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    kind, _score = detect(source)
    what = kind or "unrecognised model format"
    root.attrs["detected"] = what
    ctx.report(NotInspected, f"{what}: not inspected; Airlock does not read this format yet, so "
               "the file is not known to be safe", node=root, offset=0)
    return root
