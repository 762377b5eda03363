"""Turn an input path into a Plan: which kind of file it is (by content), its tensors, and the
worst finding of its scan (the caller refuses critical files unless the user confirms).

PyTorch checkpoints are described by `convert.torch_input.read_checkpoint`, which reads
the pickle symbolically and replaces every tensor with a TensorSpec. Nothing is executed.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any

from airlock.core.convert.model import ConvertError, Plan
from airlock.core.convert.select import plan_from_value
from airlock.core.convert.torch_input import read_checkpoint
from airlock.core.findings import Severity
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.text import safe_text

MAX_INDEX_BYTES = 64 * 1024 * 1024
INDEX_NAMES = ("pytorch_model.bin.index.json",)
SINGLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")


def resolve_input(path: str) -> str:
    """A folder stands for the checkpoint inside it."""
    if not os.path.isdir(path):
        return path
    for name in INDEX_NAMES + SINGLE_NAMES:
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    indexes = sorted(n for n in os.listdir(path) if n.endswith(".bin.index.json"))
    if len(indexes) == 1:
        return os.path.join(path, indexes[0])
    raise ConvertError(f"{path} is a folder without pytorch_model.bin or pytorch_model.bin.index.json")


# The engine's format name → the converter's reader. Anything else is handed to the checkpoint
# reader, which says clearly what it could not read.
_READERS = {"gguf": "gguf", "npy": "npy", "npz": "npz", "onnx": "onnx"}
_JSON_FORMATS = ("safetensors-index", "json", "yaml")  # a shard index is JSON


def detect(path: str) -> str:
    """Which reader converts `path`: decided by the engine's own sniffing (`dispatch.sniff`), by content."""
    from airlock.core.dispatch import sniff
    from airlock.core.source import Source

    with Source.open(path) as source:
        module, _ = sniff(source)
    fmt = module.NAME if module is not None else None
    if path.endswith(".index.json") or fmt in _JSON_FORMATS:
        return "sharded"
    if fmt == "safetensors":
        raise ConvertError("the input is already a SafeTensors file")
    return _READERS.get(fmt or "", "torch")


def load_plan(path: str, *, key: str | None = None, dequantize: bool = False, skip_quantized: bool = False,
              limits: Limits = DEFAULT_LIMITS) -> Plan:
    try:
        return _load_plan(path, key=key, dequantize=dequantize, skip_quantized=skip_quantized, limits=limits)
    except (OSError, ValueError, EOFError, NotImplementedError, struct.error, zlib.error) as exc:
        # Hostile bytes reaching a library (zipfile, json) must still give one clear line.
        raise ConvertError(f"cannot read {os.path.basename(path)}: {type(exc).__name__}: {exc}") from None


def _load_plan(path: str, *, key: str | None, dequantize: bool, skip_quantized: bool,
               limits: Limits) -> Plan:
    path = resolve_input(path)
    kind = detect(path)
    if kind == "sharded":
        return _plan_sharded(path, key=key, limits=limits)
    if kind == "torch":
        plan = Plan("torch")
        plan_torch(path, plan, key=key, limits=limits)
        return plan
    plan = Plan(kind)
    _scan(path, plan, limits)
    if key is not None:
        plan.notes.append(f"--key is ignored for {kind} input")
    if kind == "gguf":
        from airlock.core.convert.gguf_input import plan_gguf

        plan_gguf(path, plan, dequantize=dequantize, skip_quantized=skip_quantized)
    elif kind == "onnx":
        from airlock.core.convert.onnx_input import plan_onnx

        plan_onnx(path, plan)
    elif kind == "npz":
        from airlock.core.convert.npz import plan_npz

        plan_npz(path, plan)
    else:
        from airlock.core.convert.npz import plan_npy

        plan_npy(path, plan, os.path.splitext(os.path.basename(path))[0] or "array")
    return plan


def _scan(path: str, plan: Plan, limits: Limits) -> None:
    from airlock.core.scan import scan_file

    result = scan_file(path, limits=limits)
    try:
        _note_severity(path, plan, result.severity, result.findings)
    finally:
        result.close()


def _note_severity(path: str, plan: Plan, severity: Any, findings: list[Any]) -> None:
    """Keep the worst severity and the critical findings; the caller decides whether to refuse."""
    label = severity.label if hasattr(severity, "label") else str(severity)
    if Severity.parse(label) > Severity.parse(plan.severity):
        plan.severity = label
    for f in findings:
        if f.severity >= Severity.CRITICAL:
            plan.critical.append(f"{os.path.basename(path)}: {f.message}")


def plan_torch(path: str, plan: Plan, *, key: str | None, limits: Limits, prefix: str = "") -> None:
    """Add one torch checkpoint's tensors to `plan` (provenance uses it to list a shard's tensor
    names); ConvertError if the file is not a checkpoint torch can load."""
    from airlock.core.errors import AirlockError

    try:
        checkpoint = read_checkpoint(path, limits=limits)
    except AirlockError as exc:
        raise ConvertError(f"cannot read {os.path.basename(path)}: {exc}") from None
    plan.input_format = str(getattr(checkpoint, "format", "torch"))
    _note_severity(path, plan, checkpoint.severity, list(checkpoint.findings))
    plan_from_value(checkpoint.root, plan, key=key, path=path, prefix=prefix)


def _plan_sharded(index_path: str, *, key: str | None, limits: Limits) -> Plan:
    if os.path.getsize(index_path) > MAX_INDEX_BYTES:
        raise ConvertError(f"{os.path.basename(index_path)} is larger than {MAX_INDEX_BYTES} bytes")
    try:
        with open(index_path, "rb") as fh:
            index = json.loads(fh.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConvertError(f"{os.path.basename(index_path)} is not valid JSON: {exc}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ConvertError(f"{os.path.basename(index_path)} has no weight_map of file names")
    folder = os.path.dirname(os.path.abspath(index_path))
    shards: list[str] = []
    for name in weight_map.values():
        if name not in shards:
            shards.append(name)
    plan = Plan("torch (sharded)")
    for i, name in enumerate(sorted(shards)):
        if os.path.basename(name) != name or name in (".", "..") or "\\" in name:
            raise ConvertError(f"the index names a shard outside its folder: {safe_text(name)!r}")
        shard = os.path.join(folder, name)
        if not os.path.isfile(shard):
            raise ConvertError(f"shard {safe_text(name)} listed in the index is missing")
        before = len(plan.tensors)
        sub = Plan("torch")
        plan_torch(shard, sub, key=key, limits=limits)
        plan.tensors += sub.tensors
        plan.skipped += [(f"{name}: {k}", why) for k, why in sub.skipped]
        plan.metadata.update(sub.metadata)
        plan.selected = sub.selected
        plan.critical += sub.critical
        if Severity.parse(sub.severity) > Severity.parse(plan.severity):
            plan.severity = sub.severity
        plan.notes.append(f"shard {i + 1}/{len(shards)} {safe_text(name)}: "
                          f"{len(plan.tensors) - before} tensors")
    found = {t.name for t in plan.tensors}
    listed = {k for k in weight_map if isinstance(k, str)}
    if found != listed:
        missing, extra = sorted(listed - found)[:5], sorted(found - listed)[:5]
        plan.notes.append(f"the index and the shards disagree: listed but not found {missing}, "
                          f"found but not listed {extra}")
    return plan
