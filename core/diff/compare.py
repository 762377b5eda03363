"""One pair of files compared, and the files of two folders paired.

`compare_sides(a, b)` returns a plain dict (the JSON report's entry for the pair): tensors (each
with a status: identical, changed, dtype changed, shape changed, added, removed, renamed, not
compared), metadata keys, chat templates (a unified diff), pickle imports and calls B adds, ONNX
operators, B's findings at or above `fail_on`, and `security`: the reasons this pair makes
`airlock diff` exit 1. `errors` (exit 2) says what could not be read or compared: a diff that
could not look at something never reads as "no change".
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from typing import Any

from airlock.core.diff.side import Side, Tensor, open_side
from airlock.core.diff.values import HASH_NAME, compare_values, hash_span
from airlock.core.dtypes import QUANT
from airlock.core.errors import Cancelled
from airlock.core.findings import Severity
from airlock.core.pickle.policy import SAFE
from airlock.core.text import safe_text

IDENTICAL, CHANGED, DTYPE_CHANGED, SHAPE_CHANGED = "identical", "changed", "dtype changed", "shape changed"
ADDED, REMOVED, RENAMED, NOT_COMPARED = "added", "removed", "renamed", "not compared"
UNRELATED = "A and B share no tensors"
MAX_TEMPLATE_DIFF_LINES = 400

Progress = Callable[[float, str], object]
CancelledFn = Callable[[], bool]


class _Hasher:
    """Span hashes of one side, each computed once."""

    def __init__(self, side: Side, cancelled: CancelledFn | None) -> None:
        self.path = side.real_path
        self.cancelled = cancelled
        self.cache: dict[str, str | None] = {}

    def __call__(self, t: Tensor) -> str | None:
        if t.span is None or self.path is None:
            return None
        if t.name not in self.cache:
            offset, length = t.span
            self.cache[t.name] = hash_span(self.path, offset, length, cancelled=self.cancelled)
        return self.cache[t.name]


def _brief(t: Tensor) -> dict[str, Any]:
    return {"dtype": t.dtype, "shape": list(t.shape)}


def _compare_tensor(ta: Tensor, tb: Tensor, a: Side, b: Side, ha: _Hasher, hb: _Hasher,
                    cancelled: CancelledFn | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": ta.name, "a": _brief(ta), "b": _brief(tb)}
    if ta.shape != tb.shape:
        entry["status"] = SHAPE_CHANGED
        return entry
    same_dtype = ta.dtype == tb.dtype and (ta.data is None or tb.data is None
                                           or ta.data.big_endian == tb.data.big_endian)
    if same_dtype:
        da, db = ha(ta), hb(tb)
        if da is not None and db is not None:
            entry["hash"] = {HASH_NAME: [da, db]}
            if da == db:
                entry["status"] = IDENTICAL
                return entry
        if ta.data is None or tb.data is None:
            why = ta.why or tb.why or "the file ends before the tensor's bytes do"
            if da is not None and db is not None:  # bytes compared, values not decoded
                entry.update(status=CHANGED, note=f"bytes differ; values not decoded: {why}")
            else:
                entry.update(status=NOT_COMPARED, note=why)
            return entry
    elif ta.data is None or tb.data is None:
        entry.update(status=NOT_COMPARED, note=ta.why or tb.why)
        return entry
    assert ta.data is not None and tb.data is not None
    try:
        stats = compare_values(a.read, ta.data, b.read, tb.data, cancelled=cancelled)
    except (ValueError, OSError) as exc:  # FormatError (truncated) is a ValueError
        entry.update(status=NOT_COMPARED, note=safe_text(str(exc), 300))
        return entry
    entry["stats"] = stats
    entry["status"] = CHANGED if same_dtype else DTYPE_CHANGED
    if not same_dtype and QUANT in (ta.data.dtype.kind, tb.data.dtype.kind):
        entry["note"] = "dequantised to float32 block by block"
    elif stats["changed"] == 0 and same_dtype and ta.data.fortran != tb.data.fortran:
        entry["status"] = IDENTICAL  # the same values, laid out differently: a view saved transposed
        entry["note"] = f"every value equal; {'A' if ta.data.fortran else 'B'} stores the matrix transposed"
    elif stats["changed"] == 0:
        entry["note"] = ("every value equal" if not same_dtype
                         else "the bytes differ but every value is equal (signed zeros or NaN payloads)")
    return entry


def _renames(removed: list[Tensor], added: list[Tensor], ha: _Hasher, hb: _Hasher) -> dict[str, str]:
    """B name → A name, for tensors whose bytes (and dtype and shape) B keeps under a new name."""
    by_hash: dict[tuple[str, str, tuple[int, ...]], list[str]] = {}
    for t in removed:
        digest = ha(t)
        if digest is not None:
            by_hash.setdefault((digest, t.dtype, t.shape), []).append(t.name)
    found: dict[str, str] = {}
    for t in added:
        digest = hb(t)
        names = by_hash.get((digest, t.dtype, t.shape)) if digest is not None else None
        if names:
            found[t.name] = names.pop(0)
    return found


def _tensors(a: Side, b: Side, cancelled: CancelledFn | None,
             progress: Progress | None) -> tuple[list[dict[str, Any]], int]:
    """Every tensor of either side with its status, and how many A and B share (by name or bytes)."""
    ha, hb = _Hasher(a, cancelled), _Hasher(b, cancelled)
    common = [name for name in a.tensors if name in b.tensors]
    removed = [t for name, t in a.tensors.items() if name not in b.tensors]
    added = [t for name, t in b.tensors.items() if name not in a.tensors]
    renames = _renames(removed, added, ha, hb) if removed and added else {}
    renamed_from = set(renames.values())
    out: list[dict[str, Any]] = []
    # Progress by bytes (both sides are read for each tensor), so one huge tensor among small ones shows.
    weights = [max(a.tensors[name].size or 0, 0) + max(b.tensors[name].size or 0, 0) + 1 for name in common]
    total, done = sum(weights), 0
    for name, weight in zip(common, weights, strict=True):
        if progress is not None:
            progress(done / total, f"comparing {safe_text(name, 80)}")
        out.append(_compare_tensor(a.tensors[name], b.tensors[name], a, b, ha, hb, cancelled))
        done += weight
    if progress is not None:
        progress(1.0, "tensors compared")
    for t in removed:
        if t.name not in renamed_from:
            out.append({"name": t.name, "status": REMOVED, "a": _brief(t)})
    for t in added:
        if t.name in renames:
            out.append({"name": t.name, "status": RENAMED, "from": renames[t.name], "b": _brief(t),
                        "hash": {HASH_NAME: [hb(t)] * 2}})
        else:
            out.append({"name": t.name, "status": ADDED, "b": _brief(t)})
    return out, len(common) + len(renames)


def _metadata(a: Side, b: Side) -> dict[str, Any]:
    return {
        "added": {k: v for k, v in b.metadata.items() if k not in a.metadata},
        "removed": {k: v for k, v in a.metadata.items() if k not in b.metadata},
        "changed": {k: [a.metadata[k], v] for k, v in b.metadata.items()
                    if k in a.metadata and a.metadata[k] != v},
    }


def template_diff(old: str, new: str, key: str) -> str:
    """A unified diff of two template texts, escaped for display, at most MAX_TEMPLATE_DIFF_LINES lines."""
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"A: {key}", f"B: {key}",
                                      lineterm=""))
    if len(lines) > MAX_TEMPLATE_DIFF_LINES:
        lines = [*lines[:MAX_TEMPLATE_DIFF_LINES], f"… {len(lines) - MAX_TEMPLATE_DIFF_LINES:,} more lines"]
    return "\n".join(safe_text(line, 2000) for line in lines)


def _templates(a: Side, b: Side) -> list[dict[str, Any]]:
    out = []
    for key in [*a.templates, *(k for k in b.templates if k not in a.templates)]:
        old, new = a.templates.get(key), b.templates.get(key)
        if old == new:
            out.append({"key": key, "status": IDENTICAL})
        elif new is None:
            out.append({"key": key, "status": REMOVED})
        else:
            out.append({"key": key, "status": ADDED if old is None else CHANGED,
                        "diff": template_diff(old or "", new, key)})
    return out


def _operators(a: Side, b: Side) -> dict[str, Any]:
    return {
        "added": sorted(k for k in b.operators if k not in a.operators),
        "removed": sorted(k for k in a.operators if k not in b.operators),
        "count_changed": {k: [a.operators[k], n] for k, n in sorted(b.operators.items())
                          if k in a.operators and a.operators[k] != n},
    }


def _errors(side: Side | None, which: str) -> list[str]:
    if side is None:
        return []
    return [f"{which}: {safe_text(f['message'], 200)}" for f in side.findings if f["rule"] == "AIR007"]


def compare_sides(a: Side | None, b: Side | None, *, fail_on: Severity = Severity.HIGH,
                  cancelled: CancelledFn | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """The diff of one pair (a side may be None: a file only one folder has)."""
    empty_a, empty_b = a is None, b is None
    side_a = a if a is not None else Side(None)
    side_b = b if b is not None else Side(None)
    tensors, shared = _tensors(side_a, side_b, cancelled, progress)
    entry: dict[str, Any] = {
        "a": None if empty_a else side_a.path, "b": None if empty_b else side_b.path,
        "format": [side_a.format, side_b.format],
        "severity": [side_a.severity, side_b.severity],
        "tensors": tensors,
        "metadata": _metadata(side_a, side_b),
        "templates": _templates(side_a, side_b),
        "imports_added": sorted(k for k in side_b.globals if k not in side_a.globals),
        "imports_removed": sorted(k for k in side_a.globals if k not in side_b.globals),
        "calls_added": sorted(k for k in side_b.calls if k not in side_a.calls),
        "calls_count_changed": {k: [side_a.calls[k], n] for k, n in sorted(side_b.calls.items())
                                if k in side_a.calls and side_a.calls[k] != n},
        "allowlisted": sorted(k for k, kind in side_b.globals.items() if kind == SAFE),
        "operators": _operators(side_a, side_b),
        "findings_b": [f for f in side_b.findings if Severity.parse(f["severity"]) >= fail_on],
        "errors": _errors(a, "A") + _errors(b, "B"),
    }
    keys_shared = (set(side_a.metadata) & set(side_b.metadata)) \
        | (set(side_a.templates) & set(side_b.templates))
    if not empty_a and not empty_b and (side_a.tensors or side_b.tensors) and not shared and not keys_shared:
        entry["errors"].append(UNRELATED)
    not_compared = [t["name"] for t in tensors if t["status"] == NOT_COMPARED]
    if not_compared:
        entry["errors"].append(f"{len(not_compared):,} tensor(s) could not be compared (first: "
                               f"{safe_text(not_compared[0], 120)})")
    if not tensors and not empty_a and not empty_b and not side_a.templates and not side_b.templates \
            and not side_a.metadata and not side_b.metadata:
        entry["file_identical"] = _same_file(side_a, side_b)
    entry["security"] = _security(entry)
    return entry


def _same_file(a: Side, b: Side) -> bool:
    """Whole files compared (for files with nothing a diff reads inside: text, code, unknown bytes)."""
    if a.size != b.size:
        return False
    if a.real_path is None or b.real_path is None:
        return False
    return hash_span(a.real_path, 0, a.size) == hash_span(b.real_path, 0, b.size)


def _security(entry: dict[str, Any]) -> list[str]:
    """Why this pair is security-relevant (exit 1): what B adds that can run or steer the model."""
    reasons = []
    # Globals on the allowlist (each with its reason there: torch's tensor rebuilders, OrderedDict,
    # numpy arrays) are listed but change nothing a loader would do: a torch .bin against its own
    # SafeTensors conversion adds only those. A call counts unless its callable is such a global.
    harmless = set(entry["allowlisted"])
    imports = [n for n in entry["imports_added"] if n not in harmless]
    calls = [n for n in entry["calls_added"] if n not in harmless]
    if imports:
        reasons.append("B imports " + ", ".join(safe_text(n, 80) for n in imports[:8]))
    if calls:
        reasons.append("B calls " + ", ".join(safe_text(n, 80) for n in calls[:8]))
    for t in entry["templates"]:
        if t["status"] in (CHANGED, ADDED):
            reasons.append(f"chat template {safe_text(t['key'], 80)} {t['status']}")
    if entry["operators"]["added"]:
        reasons.append("B adds operators " + ", ".join(entry["operators"]["added"][:8]))
    for f in entry["findings_b"]:
        reasons.append(f"B: {f['severity']} {f['rule']}: {safe_text(f['message'], 160)}")
    return reasons


def compare_files(path_a: str | None, path_b: str | None, *, fail_on: Severity = Severity.HIGH,
                  limits: Any = None, cancelled: CancelledFn | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """One pair (a path may be None: a file only one folder has). Never raises on bad input: a
    failure of the diff itself is an error of the pair (exit 2), never a traceback."""
    a = b = None
    try:
        a = open_side(path_a, limits=limits) if path_a is not None else None
        b = open_side(path_b, limits=limits) if path_b is not None else None
        return compare_sides(a, b, fail_on=fail_on, cancelled=cancelled, progress=progress)
    except Cancelled:
        raise
    except (MemoryError, RecursionError) as exc:
        return _failed(path_a, path_b, f"{type(exc).__name__} while comparing")
    except Exception as exc:  # noqa: BLE001 - a bug on one pair is an error of that pair, never a lost diff
        return _failed(path_a, path_b, f"the diff failed: {type(exc).__name__}: {safe_text(str(exc), 200)}")
    finally:
        for side in (a, b):
            if side is not None:
                side.close()


def _failed(path_a: str | None, path_b: str | None, why: str) -> dict[str, Any]:
    entry = compare_sides(None, None)
    entry.update(a=path_a, b=path_b, errors=[why])
    return entry


# Folders


def _files(root: str) -> dict[str, str]:
    """Relative path → path, for every file below a folder (as `airlock scan` walks it)."""
    from airlock.core.scan import iter_files

    return {os.path.relpath(display, root): real for display, real in iter_files(root)}


def pair_folders(dir_a: str, dir_b: str, *, limits: Any = None,
                 cancelled: CancelledFn | None = None) -> Iterator[tuple[str | None, str | None, str]]:
    """(path in A, path in B, matched by) for the files of two folders: by relative path, then the
    files left over by the tensor names they share (a `.bin` and its `.safetensors` conversion), then
    by identical bytes (a renamed file); the rest alone (added or removed)."""
    files_a, files_b = _files(dir_a), _files(dir_b)
    for rel in sorted(files_a.keys() & files_b.keys()):
        yield files_a[rel], files_b[rel], "path"
    left_a = [files_a[r] for r in sorted(files_a.keys() - files_b.keys())]
    left_b = [files_b[r] for r in sorted(files_b.keys() - files_a.keys())]
    names_a = {p: _tensor_names(p, limits) for p in left_a}
    names_b = {p: _tensor_names(p, limits) for p in left_b}
    for pb in list(left_b):
        best, score = None, 0
        for pa in left_a:
            shared = len(names_a[pa] & names_b[pb])
            if shared > score:
                best, score = pa, shared
        if best is not None:
            left_a.remove(best)
            left_b.remove(pb)
            yield best, pb, "tensors"
    for pb in list(left_b):
        size = os.path.getsize(pb)
        for pa in left_a:
            if os.path.getsize(pa) == size and hash_span(pa, 0, size, cancelled=cancelled) == \
                    hash_span(pb, 0, size, cancelled=cancelled):
                left_a.remove(pa)
                left_b.remove(pb)
                yield pa, pb, "content"
                break
    for pa in left_a:
        yield pa, None, "removed"
    for pb in left_b:
        yield None, pb, "added"


def _tensor_names(path: str, limits: Any) -> set[str]:
    try:
        side = open_side(path, limits=limits)
    except Cancelled:
        raise
    except Exception:  # noqa: BLE001 - unreadable here: the pair's own diff reports it
        return set()
    try:
        return set(side.tensors)
    finally:
        side.close()


def compare_paths(path_a: str, path_b: str, *, fail_on: Severity = Severity.HIGH, limits: Any = None,
                  cancelled: CancelledFn | None = None,
                  progress: Progress | None = None) -> list[dict[str, Any]]:
    """Every pair's entry: one for two files, one per file of either folder for two folders. ONNX and
    HDF5 files are parsed in one confined parser process for the whole diff (as `airlock scan` does)."""
    from airlock.core.isolate import ParserSession

    with ParserSession() as session, session.scanning():
        if not (os.path.isdir(path_a) and os.path.isdir(path_b)):
            return [compare_files(path_a, path_b, fail_on=fail_on, limits=limits, cancelled=cancelled,
                                  progress=progress)]
        if progress is not None:
            progress(0.0, "pairing the files of A and B")
        pairs = list(pair_folders(path_a, path_b, limits=limits, cancelled=cancelled))
        out = []
        for k, (pa, pb, how) in enumerate(pairs):
            # Each pair's progress (0..1) is its share of the whole diff: one bar from start to end.
            part = None if progress is None else _pair_progress(progress, k, len(pairs), pb or pa or "")
            entry = compare_files(pa, pb, fail_on=fail_on, limits=limits, cancelled=cancelled, progress=part)
            entry["matched_by"] = how
            out.append(entry)
        if progress is not None:
            progress(1.0, f"{len(pairs)} pair(s) compared")
        return out


def _pair_progress(progress: Progress, k: int, n: int, path: str) -> Progress:
    name = safe_text(os.path.basename(path), 60)

    def part(fraction: float, message: str) -> object:
        return progress((k + min(max(fraction, 0.0), 1.0)) / n, f"{name} ({k + 1}/{n}): {message}")

    return part
