"""What an ORT file holds besides its ONNX graph, and the rules for it (ORT0xx).

- `kernel_type_str_resolver`: the operator ids ("domain:op_type:since_version") a minimal build
  resolves kernels for. An id in a custom domain that no node of the graph uses still makes the
  loading application look up a kernel from a native library: the graph's own custom nodes are
  ONX002 already (ORT001, medium).
- `runtime_optimizations`: records saved by the converter that the runtime replays, each naming the
  nodes it fuses (by index) and the operator ids it produces. Produced ids in a custom domain are
  kernels from outside onnxruntime (ORT001); node indices that do not exist are malformed.
- `ort_version`: onnxruntime refuses versions it does not know; a newer one than this reader knows
  may hold fields it does not read (ORT002, low).
- `Tensor.external_data_offset` (newer schemas): the bytes live in a file the application hands to
  onnxruntime; the model does not name it, so they were not inspected (ORT003, low).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats.onnx_checks import PYOP_DOMAIN, STANDARD_DOMAINS
from airlock.core.text import safe_text

if TYPE_CHECKING:
    from airlock.core.context import ScanContext
    from airlock.core.formats.flatbuf import Table
    from airlock.core.tree import Node

# Domains of kernels onnxruntime itself ships (layout-optimised and experimental contrib ops its
# optimizers write into saved models): not custom, though the ONNX reader's standard set omits them.
ORT_DOMAINS = frozenset({"com.microsoft.nchwc", "com.microsoft.experimental", "com.ms.internal.nhwc",
                         "ai.onnx.preview", "ai.onnx.training"})
LATEST_VERSION = 6  # kOrtModelVersion in onnxruntime/core/flatbuffers/ort_format_version.h
MAX_LISTED = 8


class CustomOpId(Rule):
    id = "ORT001"
    severity = Severity.MEDIUM
    title = "ORT kernel or runtime optimization in a custom operator domain"
    help = ("The ORT file's kernel type string resolver or a saved runtime optimization names an operator "
            "outside the standard ONNX and onnxruntime domains: loading needs a kernel from a native "
            "library.")


class UnknownVersion(Rule):
    id = "ORT002"
    severity = Severity.LOW
    title = "ORT format version newer than known"
    help = ("The ORT file says it was written in a format version newer than the onnxruntime releases "
            "Airlock knows; fields added since were not read.")


class ExternalBytes(Rule):
    id = "ORT003"
    severity = Severity.LOW
    title = "ORT initializer bytes outside the file"
    help = ("An initializer's bytes are at an offset in an external data file the application supplies; "
            "the model does not name the file, so its bytes were not inspected.")


def check_version(version: str, ctx: ScanContext, root: Node) -> None:
    shown = safe_text(version, 40)
    if not version.isdigit():
        ctx.report(Malformed, f"malformed ORT file: ort_version {shown!r} is not a version number; "
                   "onnxruntime refuses it", node=root, offset=0)
    elif int(version) > LATEST_VERSION:
        ctx.report(UnknownVersion, f"ORT format version {shown}, newer than version {LATEST_VERSION} that "
                   "the latest onnxruntime Airlock knows writes: fields added since were not read",
                   node=root, offset=0)


def read_optimizations(reader: Any, table: Table, indices: set[int]) -> list[tuple[str, str, int]]:
    """(optimizer, produced op id, offset) of every saved runtime optimization; node indices that
    are not the graph's are reported as malformed."""
    out: list[tuple[str, str, int]] = []
    for entry in reader.each(table, 0, "runtime optimization entries"):
        optimizer = entry.string(0, "optimizer name") or ""
        for record in reader.each(entry, 1, "runtime optimization records"):
            targets = record.table(1, "nodes to optimize")
            wanted = targets.ints(0, "node indices") if targets is not None else []
            missing = [i for i in wanted if i & 0xFFFFFFFF not in indices]
            if missing:
                reader.malformed(f"runtime optimization {safe_text(optimizer, 60)} names node "
                                 f"{missing[0] & 0xFFFFFFFF:,}, which the graph does not have", record.pos)
            out.extend((optimizer, op_id, record.pos) for op_id in record.strings(3, "produced op ids"))
    return out


def judge_op_ids(reader: Any, resolver: Table | None, produced: list[tuple[str, str, int]],
                 graph_ops: set[tuple[str, str]], root: Node) -> None:
    found: dict[tuple[str, str], tuple[str, int]] = {}  # (domain, op) -> (where, offset)
    if resolver is not None:
        for entry in reader.each(resolver, 0, "kernel type string resolver"):
            op_id = entry.string(0, "op id") or ""
            _note(op_id, "the kernel type string resolver", entry.pos, graph_ops, found)
    for optimizer, op_id, pos in produced:
        _note(op_id, f"runtime optimization {safe_text(optimizer, 60)}", pos, graph_ops, found)
    if not found:
        return
    items = list(found.items())
    names = ", ".join(f"{safe_text(d, 60)}.{safe_text(o, 60)} ({w})"
                      for (d, o), (w, _p) in items[:MAX_LISTED])
    more = f" and {len(items) - MAX_LISTED:,} more" if len(items) > MAX_LISTED else ""
    reader.ctx.report(CustomOpId, f"{len(items):,} operator id(s) in custom domains that no node of the "
                      f"graph uses: {names}{more}; loading needs kernels from a native library", node=root,
                      offset=items[0][1][1])


def _note(op_id: str, where: str, pos: int, graph_ops: set[tuple[str, str]],
          found: dict[tuple[str, str], tuple[str, int]]) -> None:
    rest, _sep, _since = op_id.rpartition(":")
    domain, _sep, op = rest.rpartition(":")
    if domain in STANDARD_DOMAINS or domain in ORT_DOMAINS or (domain, op) in graph_ops:
        return
    if domain == PYOP_DOMAIN or (domain, op) not in found:
        found.setdefault((domain, op), (where, pos))


def external_bytes(tensor: dict[str, Any], ctx: ScanContext, group: Node, member: str | None) -> None:
    if "external_offset" not in tensor:
        return
    ctx.report(ExternalBytes, f"initializer {safe_text(tensor['name'], 120)!r} keeps its bytes at offset "
               f"{tensor['external_offset']:,} of an external data file the model does not name: they were "
               "not inspected", node=group, offset=tensor["pos"], member=member)
