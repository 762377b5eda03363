"""`convert()`: the one function the CLI and the GUI's one-click export call."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from airlock.core import interrupt
from airlock.core.convert.inputs import load_plan, resolve_input
from airlock.core.convert.model import (
    CHUNK,
    DEFAULT_MAX_EXPANSION,
    ConvertError,
    ConvertReport,
    OutTensor,
    Plan,
    RefusedCritical,
    WrittenFile,
)
from airlock.core.convert.publish import PartFile, publish, remove_stale_parts
from airlock.core.convert.stream import check_spec
from airlock.core.convert.verify import verify_file
from airlock.core.convert.writer import Progress, SourceFiles, write_file
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.tensor_spec import DTYPE_SIZES
from airlock.core.text import safe_path, safe_text

ALIASES_KEY = "airlock.aliases"
# SafeTensors offsets are unsigned 64-bit and numpy's sizes signed 64-bit: nothing may exceed this.
MAX_BYTES = 2**63 - 1


def convert(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str] | None = None,
    *,
    key: str | None = None,
    dedupe: bool = False,
    dequantize: bool = False,
    skip_quantized: bool = False,
    max_shard_size: int = 5 * 10**9,
    overwrite: bool = False,
    allow_critical: bool = False,
    verify: bool = True,
    progress: Callable[[float, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_expansion: float | None = DEFAULT_MAX_EXPANSION,
) -> ConvertReport:
    """Convert a checkpoint into SafeTensors without executing it. Raises ConvertError (one clear
    line), RefusedCritical, VerificationFailed or Cancelled; leaves no partial output behind.

    Outputs appear atomically and, without `overwrite`, never replace a file (core/convert/
    publish.py). An output larger than `max_expansion` times the input's size on disk is refused
    (None: no limit)."""
    start = time.monotonic()
    src = os.fspath(input_path)
    from airlock.core.source import is_url

    if is_url(src):  # converting reads every tensor: a remote file is scanned, never converted in place
        raise ConvertError(f"conversion needs a local file: download {src} first (airlock scan reads it "
                           "remotely)")
    if not os.path.exists(src):
        raise ConvertError(f"no such file or directory: {src}")
    if max_shard_size <= 0:
        raise ConvertError("the maximum shard size must be positive")
    if progress is not None:
        progress(0.0, "reading the checkpoint")
    resolved = resolve_input(src)
    plan = load_plan(resolved, key=key, dequantize=dequantize, skip_quantized=skip_quantized, limits=limits)
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

    total = sum(t.nbytes for t in plan.tensors)
    _check_expansion(total, _input_files(plan, resolved), max_expansion)
    outputs, index_path, groups = _layout(src, resolved, output_path, plan.tensors, max_shard_size)
    finals = outputs + ([index_path] if index_path else [])
    _check_outputs(finals, _input_files(plan, resolved), overwrite)
    for folder in sorted({os.path.dirname(os.path.abspath(f)) for f in finals}):
        stale = remove_stale_parts(folder)
        if stale:
            plan.notes.append(f"removed {len(stale)} temporary file(s) left by an interrupted conversion "
                              f"in {safe_path(folder)}")

    tracker = Progress(total * (2 if verify else 1), progress, cancelled)
    buf = memoryview(bytearray(CHUNK))
    sources = SourceFiles()
    parts: list[PartFile] = []
    files: list[WrittenFile] = []
    summary = "not verified (--no-verify)"
    try:
        for final, group in zip(outputs, groups, strict=True):
            part = PartFile(final)
            parts.append(part)
            files.append(write_file(part, group, plan.metadata, sources=sources, buf=buf, hashing=verify,
                                    progress=tracker))
        sources.close()
        if verify:
            for written in files:
                verify_file(written, buf=buf, progress=tracker)
            summary = f"{len(plan.tensors)} tensors re-read, matched the source bytes (xxh3-128); " \
                      "the safetensors library agrees on keys, dtypes, shapes and order"
        if index_path is not None:
            part = PartFile(index_path)
            parts.append(part)
            _write_index(part, outputs, groups, total)
        # All or nothing, and never cut by a signal: a signal arriving now is acted on once the
        # outputs are in place (the conversion is then complete, and reported so).
        with interrupt.deferred(raise_after=False):
            publish(parts, overwrite)
        for written, final in zip(files, outputs, strict=True):
            written.path = final
    except BaseException:
        sources.close()
        for part in parts:
            part.discard()
        raise
    if progress is not None:
        progress(1.0, "done")
    return ConvertReport(
        input_path=src, input_format=plan.input_format, outputs=outputs, index_path=index_path,
        tensors=len(plan.tensors), bytes=total, seconds=time.monotonic() - start,
        verified=True if verify else None, verification=summary, selected=plan.selected,
        skipped=plan.skipped, metadata=plan.metadata, aliases=plan.aliases, severity=plan.severity,
        notes=plan.notes, files=files)


def _check_expansion(total: int, inputs: set[str], max_expansion: float | None) -> None:
    stored = sum(os.path.getsize(p) for p in inputs if os.path.isfile(p))
    if max_expansion is None or total <= max_expansion * max(stored, 1):
        return
    raise ConvertError(
        f"refused: the output would hold {total:,} bytes of tensors, {total / max(stored, 1):,.0f}x the "
        f"{stored:,} bytes of the input (limit {max_expansion:g}x; stride-0 views, deflated storages and "
        "dequantization can describe far more data than a file holds). Convert anyway with "
        "--allow-expansion, or raise --max-expansion.")


def _check_sizes(plan: Plan) -> None:
    """Every size fits in 64 bits, checked before anything is allocated for it."""
    total = 0
    for t in plan.tensors:
        if any(d < 0 or d > MAX_BYTES for d in t.shape) or t.nbytes > MAX_BYTES:
            raise ConvertError(f"tensor {safe_text(t.name)!r}: shape {list(t.shape)[:8]} x "
                               f"{DTYPE_SIZES[t.dtype]} bytes per element does not fit in 64 bits")
        total += t.nbytes
    if total > MAX_BYTES:
        raise ConvertError(f"the tensors hold {total:,} bytes together, which does not fit in 64 bits")


def _check_plan(plan: Plan) -> None:
    _check_sizes(plan)
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


def _write_index(part: PartFile, outputs: list[str], groups: list[list[OutTensor]], total: int) -> None:
    weight_map = {t.name: os.path.basename(out) for out, group in zip(outputs, groups, strict=True)
                  for t in group}
    assert part.fd is not None
    with open(part.fd, "w", encoding="utf-8", closefd=False) as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=2,
                  ensure_ascii=False)
        fh.write("\n")
