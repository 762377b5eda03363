"""Which protobuf model kind some content is: a TF SavedModel or a Core ML model.

Their readers (airlock.core.formats.saved_model, .coreml) sniff with `detect`, by the field layout of the
protobuf (ONNX, also a protobuf, never matches). Not a format of its own: content that neither reads is
"unrecognised binary content" (medium, never clean) like any other. (This module once reported these
kinds, OpenVINO IR, onnxruntime `.ort` and TF checkpoint indexes as "not inspected"; each has its own
reader now.)
"""

from __future__ import annotations

import os

from airlock.core.formats.protowire import read_varint
from airlock.core.source import Source

SAVED_MODEL = "TensorFlow SavedModel (saved_model.pb)"
COREML = "Core ML model"


def detect(source: Source) -> tuple[str | None, int]:
    """(what the content is, sniff score). Cached per source: both readers ask."""
    cached = source.cache.get("model_kinds.detect")
    if cached is None:
        cached = source.cache["model_kinds.detect"] = _detect(source)
    result: tuple[str | None, int] = cached
    return result


def _detect(source: Source) -> tuple[str | None, int]:
    head = source.head(1024)
    name = os.path.basename(source.member or source.name).lower()
    kind = _protobuf_kind(head, source.size)
    if kind is not None:
        if kind == SAVED_MODEL:
            return kind, 70 if name == "saved_model.pb" else 45
        return kind, 70 if name.endswith(".mlmodel") else 45
    return None, 0


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
