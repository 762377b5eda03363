"""The JSON document of the CLI contract (schema_version 1)."""

from __future__ import annotations

import json
from typing import Any

from airlock.core import __version__
from airlock.core.findings import Finding
from airlock.core.scan import ScanResult
from airlock.core.text import safe_text

SCHEMA_VERSION = 1


def finding_dict(f: Finding) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule": f.rule,
        "severity": f.severity.label,
        "message": safe_text(f.message, 2000),
        "offset": f.offset,
        "member": safe_text(f.member, 500) if f.member is not None else None,
        "node": safe_text(f.node_path() or "", 1000) if f.node is not None else None,
    }
    # Findings in source code (airlock.core.code) also say where as line/column (and notebook cell).
    location = f.node.attrs.get("location") if f.node is not None else None
    if isinstance(location, dict):
        out["location"] = {k: int(v) for k, v in location.items() if isinstance(v, int)}
    if f.detail is not None:  # several lines (a template's drift diff): a list, each line escaped
        out["detail"] = [safe_text(line, 400) for line in f.detail.splitlines()[:200]]
    return out


def file_dict(result: ScanResult) -> dict[str, Any]:
    return {
        "path": result.path,
        "format": result.format,
        "severity": result.severity.label,
        "inspected": result.inspected,  # "full" | "partial" | "none" (airlock.core.inspection)
        "findings": [finding_dict(f) for f in result.findings],
    }


def not_inspected_count(results: list[dict[str, Any]]) -> int:
    """Files that were not fully inspected (an entry without the field counts as not inspected)."""
    return sum(1 for r in results if r.get("inspected", "none") != "full")


def document(results: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = {"schema_version": SCHEMA_VERSION, "airlock_version": __version__,
           "not_inspected": not_inspected_count(results), "files": results}
    if extra:  # e.g. "policy": the policy file in effect and its digest
        doc.update(extra)
    return doc


def render_line(entry: dict[str, Any]) -> str:
    """One line of `--format jsonl`: a file's entry, exactly as in the "files" list of `render`."""
    return json.dumps(entry, ensure_ascii=True) + "\n"


def render(results: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> str:
    # ensure_ascii keeps the document valid UTF-8 whatever the file names hold (lone surrogates).
    # No indent: json's C encoder only runs without one, and the report is read by programs
    # (pipe it through `python -m json.tool` to read it).
    return json.dumps(document(results, extra), ensure_ascii=True) + "\n"
