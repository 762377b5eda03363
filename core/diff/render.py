"""`airlock diff` reports: the document (JSON), text, and the exit code they imply.

The document is built once (`document`) and every format renders it: JSON as is, text line by
line, HTML as a page (airlock.core.diff.html). Every string from a file is escaped by `safe_text`
before it is shown.
"""

from __future__ import annotations

import json
import math
from typing import Any

from airlock.core import __version__
from airlock.core.diff.compare import (
    ADDED,
    CHANGED,
    DTYPE_CHANGED,
    IDENTICAL,
    NOT_COMPARED,
    REMOVED,
    RENAMED,
    SHAPE_CHANGED,
)
from airlock.core.diff.values import HASH_NAME
from airlock.core.text import safe_text

EXIT_SAME, EXIT_SECURITY, EXIT_ERROR = 0, 1, 2
STATUSES = (IDENTICAL, CHANGED, DTYPE_CHANGED, SHAPE_CHANGED, RENAMED, ADDED, REMOVED, NOT_COMPARED)


def document(path_a: str, path_b: str, pairs: list[dict[str, Any]], fail_on: str) -> dict[str, Any]:
    security = [f"{_pair_name(p)}: {r}" for p in pairs for r in p["security"]]
    errors = [f"{_pair_name(p)}: {e}" for p in pairs for e in p["errors"]]
    if not any(p.get("a") is not None and p.get("b") is not None for p in pairs):
        # Two folders with no file of one paired to a file of the other (one empty, a wrong path, an
        # unrelated model): nothing was compared, which must not read as "nothing new".
        errors.append(f"A and B share no files: {len(pairs):,} file(s) only in one of them, nothing was "
                      "compared (check the two paths)" if pairs
                      else "A and B hold no files: nothing was compared")
    counts = dict.fromkeys(STATUSES, 0)
    for p in pairs:
        for t in p["tensors"]:
            counts[t["status"]] += 1
    # Something security-relevant in B wins over "unrelated" or "unreadable": a gate that reads 2 as a
    # tool error must still see a hostile candidate.
    code = EXIT_SECURITY if security else EXIT_ERROR if errors else EXIT_SAME
    return {"schema_version": 1, "airlock_version": __version__, "kind": "diff", "a": path_a, "b": path_b,
            "fail_on": fail_on, "hash": HASH_NAME, "pairs": pairs, "tensor_counts": counts,
            "security": security, "errors": errors, "exit_code": code}


def _pair_name(p: dict[str, Any]) -> str:
    a, b = p.get("a"), p.get("b")
    if a is None or b is None:
        return safe_text(str(a or b), 300)
    return safe_text(a if a == b else f"{a} ↔ {b}", 300)


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False, default=str,
                      cls=_FiniteEncoder) + "\n"


class _FiniteEncoder(json.JSONEncoder):
    """JSON has no Infinity or NaN: such statistics are written as strings."""

    def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
        return super().iterencode(_finite(o), _one_shot)


def _finite(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def _shape(t: dict[str, Any]) -> str:
    return f"{t['dtype']} [{', '.join(map(str, t['shape']))}]"


def stats_line(stats: dict[str, Any]) -> str:
    cosine = stats["cosine"]
    cos = "n/a" if cosine is None else f"{cosine:.9f}".rstrip("0").rstrip(".")
    share = 100.0 * stats["changed_share"]
    line = (f"max |Δ| {stats['max_abs_diff']:.6g}, relative L2 {stats['rel_l2']:.6g}, cosine {cos}, "
            f"{stats['changed']:,} of {stats['elements']:,} values changed ({share:.3g}%)")
    return line + non_finite_note(stats)


def non_finite_note(stats: dict[str, Any]) -> str:
    """A value that became NaN or Inf is left out of max |Δ|, L2 and cosine (they would all read NaN):
    say so, or a poisoned value would read as "max |Δ| 0, cosine 1"."""
    count = stats.get("non_finite_changed") or 0
    if not count:
        return ""
    return (f"; {count:,} of them NaN or ±Inf on one side only (max |Δ|, relative L2 and cosine count "
            "only the values finite on both sides)")


def tensor_line(t: dict[str, Any]) -> str:
    name = safe_text(t["name"], 200)
    status = t["status"]
    if status == IDENTICAL:
        return f"  identical      {name}"
    if status in (ADDED, REMOVED):
        side = t["b"] if status == ADDED else t["a"]
        return f"  {status:<14} {name}  {_shape(side)}"
    if status == RENAMED:
        return f"  renamed        {name}  (was {safe_text(t['from'], 200)}; same bytes)"
    line = f"  {status:<14} {name}"
    if status in (SHAPE_CHANGED, DTYPE_CHANGED) or t["a"] != t["b"]:
        line += f"  {_shape(t['a'])} → {_shape(t['b'])}"
    else:
        line += f"  {_shape(t['a'])}"
    if "stats" in t:
        line += f": {stats_line(t['stats'])}"
    if t.get("note"):
        line += f" ({safe_text(t['note'], 200)})"
    return line


def _pair_lines(p: dict[str, Any]) -> list[str]:
    fa, fb = p["format"]
    _sa, sb = p["severity"]
    lines = [f"== {_pair_name(p)}"]
    if p.get("a") is None:
        lines[0] += f"  (only in B: {fb}, verdict {sb})"
    elif p.get("b") is None:
        lines[0] += f"  (only in A: {fa})"
    else:
        how = p.get("matched_by")
        paired = f"; paired by {how}" if how and how != "path" else ""
        lines[0] += f"  ({fa} → {fb}; B's verdict: {sb}{paired})"
    tensors = p["tensors"]
    if tensors:
        counts = {s: sum(1 for t in tensors if t["status"] == s) for s in STATUSES}
        lines.append("tensors: " + ", ".join(f"{n:,} {s}" for s, n in counts.items() if n))
        lines += [tensor_line(t) for t in tensors]
    elif "file_identical" in p:
        lines.append("content: identical" if p["file_identical"] else "content: changed (the bytes differ)")
    meta = p["metadata"]
    for key, value in meta["added"].items():
        lines.append(f"  metadata +    {safe_text(key, 120)} = {safe_text(value, 200)}")
    for key, value in meta["removed"].items():
        lines.append(f"  metadata -    {safe_text(key, 120)} = {safe_text(value, 200)}")
    for key, (old, new) in meta["changed"].items():
        lines.append(f"  metadata ~    {safe_text(key, 120)}: {safe_text(old, 120)} → {safe_text(new, 120)}")
    for t in p["templates"]:
        lines.append(f"  template {t['status']}: {safe_text(t['key'], 120)}")
        if t.get("diff"):
            lines += ["    " + line for line in t["diff"].splitlines()]
    for label, key in (("imports added", "imports_added"), ("imports removed", "imports_removed"),
                       ("calls added", "calls_added")):
        if p[key]:
            allowed = set(p.get("allowlisted", ()))
            lines.append(f"  pickle {label}: " + ", ".join(
                safe_text(n, 120) + (" (allowlisted)" if n in allowed else "") for n in p[key]))
    for name, (old, new) in p["calls_count_changed"].items():
        lines.append(f"  pickle calls of {safe_text(name, 120)}: {old:,} → {new:,}")
    ops = p["operators"]
    if ops["added"]:
        lines.append("  operators added: " + ", ".join(safe_text(o, 80) for o in ops["added"]))
    if ops["removed"]:
        lines.append("  operators removed: " + ", ".join(safe_text(o, 80) for o in ops["removed"]))
    for op, (old, new) in ops["count_changed"].items():
        lines.append(f"  operator {safe_text(op, 80)}: {old:,} → {new:,}")
    for f in p["findings_b"]:
        lines.append(f"  B finding {f['severity']} {f['rule']}: {safe_text(f['message'], 300)}")
    for e in p["errors"]:
        lines.append(f"  ERROR {safe_text(e, 300)}")
    return lines


def render_text(doc: dict[str, Any]) -> str:
    lines = [f"airlock diff  A (reference) = {safe_text(doc['a'], 300)}   "
             f"B (candidate) = {safe_text(doc['b'], 300)}",
             f"tensors compared by {doc['hash']} of their bytes first, values only where the bytes differ",
             ""]
    for p in doc["pairs"]:
        lines += _pair_lines(p)
        lines.append("")
    counts = doc["tensor_counts"]
    lines.append("summary: " + (", ".join(f"{n:,} {s}" for s, n in counts.items() if n) or "no tensors"))
    if doc["errors"]:
        lines.append(f"exit 2: {len(doc['errors'])} problem(s) kept the diff from being complete:")
        lines += [f"  {safe_text(e, 300)}" for e in doc["errors"]]
    if doc["security"]:
        lines.append(f"{'also ' if doc['errors'] else 'exit 1: '}security-relevant changes in B "
                     f"({len(doc['security'])}):")
        lines += [f"  {safe_text(s, 300)}" for s in doc["security"]]
    if not doc["errors"] and not doc["security"]:
        lines.append("exit 0: nothing security-relevant is new in B (no new imports or calls off the "
                     f"allowlist, no new templates or operators, no finding at or above {doc['fail_on']})")
    return "\n".join(lines) + "\n"
