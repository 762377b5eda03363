"""`convert()`: the one function the CLI and the GUI's one-click export call."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from airlock.core.convert.inputs import load_plan, resolve_input
from airlock.core.convert.model import (
    ConvertError,
    ConvertReport,
    OutTensor,
    Plan,
    RefusedCritical,
    WrittenFile,
)
from airlock.core.convert.spec import DTYPE_SIZES
from airlock.core.convert.stream import CHUNK, check_spec
from airlock.core.convert.verify import verify_file
from airlock.core.convert.writer import Progress, SourceFiles, remove_quietly, temp_path_for, write_file
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.text import safe_text

ALIASES_KEY = "airlock.aliases"


def convert(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str] | None = None,
    *,
    key: str | None = None,
    dedupe: bool = False,
    dequantize: bool = False,
    max_shard_size: int = 5 * 10**9,
    overwrite: bool = False,
    allow_critical: bool = False,
    verify: bool = True,
    progress: Callable[[float, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ConvertReport:
    """Convert a checkpoint into SafeTensors without executing it. Raises ConvertError (one clear
    line), RefusedCritical, VerificationFailed or Cancelled; leaves no partial output behind."""
    start = time.monotonic()
    src = os.fspath(input_path)
    if not os.path.exists(src):
        raise ConvertError(f"no such file or directory: {src}")
    if max_shard_size <= 0:
        raise ConvertError("the maximum shard size must be positive")
    if progress is not None:
        progress(0.0, "reading the checkpoint")
    resolved = resolve_input(src)
    plan = load_plan(resolved, key=key, dequantize=dequantize, limits=limits)
    if plan.critical and not allow_critical:
        raise RefusedCritical(f"refused: {safe_text(plan.critical[0], 200)} (critical; nothing was "
                              "executed). Convert anyway with --allow-critical.")
    _check_plan(plan)
    if dedupe:
        _dedupe(plan)
    if plan.aliases:
        plan.metadata[ALIASES_KEY] = json.dumps(plan.aliases, ensure_ascii=False)
    if plan.tensors and "format" not in plan.metadata:
        plan.metadata["format"] = "pt"  # transformers refuses SafeTensors metadata without it
    # Widest elements first: with the header padded to 8 bytes, every tensor is then aligned.
    plan.tensors.sort(key=lambda t: -DTYPE_SIZES[t.dtype])

    outputs, index_path, groups = _layout(src, resolved, output_path, plan.tensors, max_shard_size)
    _check_outputs(outputs + ([index_path] if index_path else []), _input_files(plan, resolved), overwrite)

    total = sum(t.nbytes for t in plan.tensors)
    tracker = Progress(total * (2 if verify else 1), progress, cancelled)
    buf = memoryview(bytearray(CHUNK))
    sources = SourceFiles()
    temps: list[str] = []
    files: list[WrittenFile] = []
    summary = "not verified (--no-verify)"
    try:
        for final, group in zip(outputs, groups, strict=True):
            tmp = temp_path_for(final)
            temps.append(tmp)
            files.append(write_file(tmp, group, plan.metadata, sources=sources, buf=buf, hashing=verify,
                                    progress=tracker))
        sources.close()
        if verify:
            for written in files:
                verify_file(written, buf=buf, progress=tracker)
            summary = f"{len(plan.tensors)} tensors re-read, matched the source bytes (xxh3-128); " \
                      "the safetensors library agrees on keys, dtypes, shapes and order"
        index_tmp = None
        if index_path is not None:
            index_tmp = temp_path_for(index_path)
            temps.append(index_tmp)
            _write_index(index_tmp, outputs, groups, total)
        for written, final in zip(files, outputs, strict=True):
            os.replace(written.path, final)
            written.path = final
        if index_tmp is not None and index_path is not None:
            os.replace(index_tmp, index_path)
    except BaseException:
        sources.close()
        for tmp in temps:
            remove_quietly(tmp)
        raise
    if progress is not None:
        progress(1.0, "done")
    return ConvertReport(
        input_path=src, input_format=plan.input_format, outputs=outputs, index_path=index_path,
        tensors=len(plan.tensors), bytes=total, seconds=time.monotonic() - start,
        verified=True if verify else None, verification=summary, selected=plan.selected,
        skipped=plan.skipped, metadata=plan.metadata, aliases=plan.aliases, severity=plan.severity,
        notes=plan.notes, files=files)


def _check_plan(plan: Plan) -> None:
    if not plan.tensors:
        why = f" ({len(plan.skipped)} entries skipped: {plan.skipped[0][0]}: {plan.skipped[0][1]})" \
            if plan.skipped else ""
        raise ConvertError(f"nothing to convert: no tensors found{why}")
    seen: set[str] = set()
    sizes: dict[str, int] = {}
    for t in plan.tensors:
        if t.name in seen:
            raise ConvertError(f"two tensors are named {safe_text(t.name)!r}")
        if t.name == "__metadata__":
            raise ConvertError("a tensor is named '__metadata__', which SafeTensors reserves")
        seen.add(t.name)
        if t.spec is not None:
            if t.path not in sizes:
                sizes[t.path] = os.path.getsize(t.path)
            check_spec(safe_text(t.name), t.spec, sizes[t.path])


def _dedupe(plan: Plan) -> None:
    """Identical views of one storage (tied weights) are written once; the rest become aliases."""
    first: dict[tuple[object, ...], str] = {}
    kept: list[OutTensor] = []
    for t in plan.tensors:
        s = t.spec
        if s is None:
            kept.append(t)
            continue
        ident = (t.path, s.storage.key, s.storage.file_offset, s.dtype, s.shape, s.strides, s.storage_offset)
        if ident in first:
            plan.aliases[t.name] = first[ident]
        else:
            first[ident] = t.name
            kept.append(t)
    plan.tensors = kept


def _default_output(src: str, resolved: str) -> str:
    if os.path.isdir(src) or resolved.endswith(".index.json"):
        return os.path.join(os.path.dirname(os.path.abspath(resolved)), "model.safetensors")
    folder, name = os.path.split(os.path.abspath(resolved))
    stem = name.split(".")[0] if not name.startswith(".") else name
    if stem.startswith("pytorch_model"):
        stem = "model"
    return os.path.join(folder, (stem or "model") + ".safetensors")


def _layout(src: str, resolved: str, output: str | os.PathLike[str] | None, tensors: list[OutTensor],
            max_shard: int) -> tuple[list[str], str | None, list[list[OutTensor]]]:
    """Output file names and which tensors go in each (shards of at most max_shard bytes)."""
    out = os.fspath(output) if output is not None else _default_output(src, resolved)
    if os.path.isdir(out):
        out = os.path.join(out, os.path.basename(_default_output(src, resolved)))
    groups: list[list[OutTensor]] = [[]]
    size = 0
    for t in tensors:
        if groups[-1] and size + t.nbytes > max_shard:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.nbytes
    if len(groups) == 1:
        return [out], None, groups
    base = out[:-len(".safetensors")] if out.endswith(".safetensors") else out
    n = len(groups)
    names = [f"{base}-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    return names, f"{base}.safetensors.index.json", groups


def _input_files(plan: Plan, resolved: str) -> set[str]:
    return {resolved, *(t.path for t in plan.tensors if t.path)}


def _check_outputs(outputs: list[str], inputs: set[str], overwrite: bool) -> None:
    real_inputs = {os.path.realpath(p) for p in inputs}
    for out in outputs:
        if os.path.realpath(out) in real_inputs or any(
                os.path.exists(out) and os.path.samefile(out, p) for p in inputs if os.path.exists(p)):
            raise ConvertError(f"refusing to write over the input {out}")
        if os.path.exists(out) and not overwrite:
            raise ConvertError(f"{out} already exists (use --overwrite to replace it)")
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder):
            raise ConvertError(f"the output folder {folder} does not exist")


def _write_index(tmp: str, outputs: list[str], groups: list[list[OutTensor]], total: int) -> None:
    weight_map = {t.name: os.path.basename(out) for out, group in zip(outputs, groups, strict=True)
                  for t in group}
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=2,
                  ensure_ascii=False)
        fh.write("\n")
