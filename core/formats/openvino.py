"""OpenVINO IR: the network XML (`model.xml`, `<net>`) and its weights file (`model.bin` next to it).

The XML is parsed with the standard library's expat-based ElementTree (expat 2.4+ refuses entity
expansion bombs; a DOCTYPE, which IR never has, is refused before parsing, so no entity is declared at
all). Every layer is listed with its type and opset; Const layers with the offset and size of their
bytes in the `.bin`.

What the runtime runs besides its own operators:
- a layer whose `version` is not a standard `opsetN` belongs to an extension (`core.add_extension`,
  a native library the application loads): OVN001, medium;
- Const data outside the `.bin` (checked when the XML is scanned from a folder that has it), edges
  naming layers that do not exist, a DOCTYPE: malformed.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET  # a DOCTYPE is refused before parsing; expat 2.4+ bounds expansion

from airlock.core.context import ScanContext
from airlock.core.findings import LimitExceeded, Malformed, Rule, Severity
from airlock.core.formats.contract import file_node
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, GROUP, LAYER, ROLE, Node

NAME = "openvino"
EXTENSIONS = ()
ALSO_NAMED = (".xml",)  # the network's usual name, not a model name by itself (XML is everywhere)

_OPSET = re.compile(r"opset\d+")
MAX_FINDINGS = 20


class ExtensionLayer(Rule):
    id = "OVN001"
    severity = Severity.MEDIUM
    title = "OpenVINO layer from an extension"
    help = (
        "A layer's version is not a standard opset: the runtime needs an extension (a native library the "
        "application loads with core.add_extension) to run it."
    )


def sniff(head: bytes, size: int) -> int:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<?xml"):
        text = text[text.find(b"?>") + 2 :].lstrip() if b"?>" in text else b""
    if text.startswith(b"<!DOCTYPE net"):
        return 85  # claimed so that the DOCTYPE is reported, never parsed
    return 85 if text.startswith(b"<net ") and b"version=" in text[:400] else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    if source.size > ctx.limits.max_header_bytes:
        ctx.report(
            LimitExceeded,
            f"network XML of {source.size:,} bytes is over the "
            f"{ctx.limits.max_header_bytes:,}-byte budget: not inspected",
            node=root,
            offset=0,
        )
        return root
    data = source.read(0, source.size)
    doctype = data.find(b"<!DOCTYPE")
    if doctype >= 0:
        ctx.report(
            Malformed,
            "the network XML has a DOCTYPE (OpenVINO IR never does): not parsed, since it can "
            "declare entities",
            node=root,
            offset=doctype,
        )
        return root
    try:
        net = ET.fromstring(data)  # no DOCTYPE (checked above), so no entity can be declared
    except ET.ParseError as exc:
        ctx.report(
            Malformed,
            f"malformed network XML: {safe_text(str(exc), 160)}; OpenVINO refuses it",
            node=root,
            offset=0,
        )
        return root
    root.attrs.update(
        name=safe_text(net.get("name", ""), 80), ir_version=safe_text(net.get("version", ""), 10)
    )
    weights = _weights_size(ctx, source)
    layers = net.find("layers")
    items = list(layers) if layers is not None else []
    group = root.child(GROUP, f"layers ({len(items):,})", member=source.member, attrs={ROLE: CONTENTS})
    ids: set[str] = set()
    custom: list[str] = []
    outside = 0
    for layer in ctx.each(items, "layers"):
        kind, version = layer.get("type", ""), layer.get("version", "")
        ids.add(layer.get("id", ""))
        attrs: dict[str, object] = {"type": safe_text(kind, 60), "opset": safe_text(version, 40)}
        data_el = layer.find("data")
        if kind == "Const" and data_el is not None:
            offset, size = _int(data_el.get("offset")), _int(data_el.get("size"))
            attrs.update(
                element_type=safe_text(data_el.get("element_type", ""), 20),
                shape=safe_text(data_el.get("shape", ""), 60),
                bin_offset=offset,
                size=size,
            )
            if weights is not None and (offset is None or size is None or offset + size > weights):
                outside += 1
                if outside <= MAX_FINDINGS:
                    ctx.report(
                        Malformed,
                        f"Const layer {safe_text(layer.get('name', ''), 80)} reads {size} bytes at "
                        f"{offset} of the weights file, which has {weights:,}",
                        node=group,
                        offset=0,
                    )
        group.child(
            LAYER,
            f"{safe_text(layer.get('name', ''), 120)} ({safe_text(kind, 60)})",
            member=source.member,
            attrs=attrs,
        )
        if version and not _OPSET.fullmatch(version):
            custom.append(f"{safe_text(kind, 60)} ({safe_text(version, 40)})")
    if custom:
        shown = ", ".join(sorted(set(custom))[:MAX_FINDINGS])
        ctx.report(
            ExtensionLayer,
            f"{len(custom):,} layer(s) from outside the standard opsets: {shown}; the runtime "
            "needs an extension library for them",
            node=group,
            offset=0,
        )
    edges = net.find("edges")
    for edge in list(edges)[:100_000] if edges is not None else []:
        ctx.tick(4096)
        if edge.get("from-layer") not in ids or edge.get("to-layer") not in ids:
            ctx.report(
                Malformed,
                f"an edge joins layer {safe_text(str(edge.get('from-layer')), 20)} to "
                f"{safe_text(str(edge.get('to-layer')), 20)}, which are not both in the network",
                node=root,
                offset=0,
            )
            break
    return root


def _weights_size(ctx: ScanContext, source: Source) -> int | None:
    """The size of the .bin next to the XML, when the XML is a file on disk (None: not checked)."""
    if source.member or not ctx.path:
        return None
    stem, _ext = os.path.splitext(ctx.path)
    try:
        return os.path.getsize(stem + ".bin")
    except OSError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
