"""The JSON document of the CLI contract (schema_version 1)."""

from __future__ import annotations

import json
from typing import Any

from airlock.core import __version__
from airlock.core.findings import Finding
from airlock.core.report.paths import clean_strings, path_fields
from airlock.core.scan import ScanResult
from airlock.core.text import safe_text
from airlock.core.tree import FILE, MEMBER, Node

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
    entry: dict[str, Any] = {
        **path_fields(result.path),  # "path", and "path_bytes_b64" for a name that is not UTF-8
        "format": result.format,
        "severity": result.severity.label,
        "inspected": result.inspected,  # "full" | "partial" | "none" (airlock.core.inspection)
        "findings": [finding_dict(f) for f in result.findings],
    }
    inside = member_formats(result.root)
    if inside:  # what containers hold (a pickle in a zip): the policy's refuse-formats looks here too
        entry["member_formats"] = inside
    bytes_read = result.root.attrs.get("bytes_read")
    if isinstance(bytes_read, int):  # a remote file (airlock.core.remote): what its range reads fetched
        entry["bytes_read"] = bytes_read
    return entry


def member_formats(root: Node) -> list[str]:
    """The formats of the files nested in this one (container members, blobs in configs), sorted: what
    the engine sniffed below the file, and the pickle members a zip reads directly."""
    found = set()
    for node in root.walk():
        if node is root:
            continue
        if node.kind == FILE and "format" in node.attrs:
            found.add(str(node.attrs["format"]))
        elif node.kind == MEMBER and node.attrs.get("pickle") is True:
            found.add("pickle")
    return sorted(found)


def not_inspected_count(results: list[dict[str, Any]]) -> int:
    """Files that were not fully inspected (an entry without the field counts as not inspected)."""
    return sum(1 for r in results if r.get("inspected", "none") != "full")


class Interruption:
    """Why a report is incomplete: the stop signal that ended the scan. (Folders are walked while
    files are scanned, so how many files were left is not known.)"""

    __slots__ = ("signal",)

    def __init__(self, signal: str) -> None:
        self.signal = signal  # "SIGTERM"


def document(results: list[dict[str, Any]], extra: dict[str, Any] | None = None,
             interruption: Interruption | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "airlock_version": __version__,
                           "not_inspected": not_inspected_count(results),
                           "interrupted": interruption is not None}
    if interruption is not None:
        doc["signal"] = interruption.signal
    doc["files"] = results
    if extra:  # e.g. "policy": the policy file in effect and its digest
        doc.update(extra)
    return doc


def render_line(entry: dict[str, Any]) -> str:
    """One line of `--format jsonl`: a file's entry, exactly as in the "files" list of `render`."""
    return dumps(entry) + "\n"


def render(results: list[dict[str, Any]], extra: dict[str, Any] | None = None,
           interruption: Interruption | None = None) -> str:
    return dumps(document(results, extra, interruption)) + "\n"


def dumps(doc: dict[str, Any], indent: int | None = None) -> str:
    """ASCII JSON that strict parsers accept. Every string should already be valid Unicode (file
    names come through path_fields, file content through safe_text); a lone surrogate that
    slipped through anyway becomes U+FFFD instead of an escape strict parsers reject. No indent
    by default: json's C encoder only runs without one, and the report is read by programs (pipe it
    through `python -m json.tool` to read it)."""
    out = json.dumps(doc, ensure_ascii=True, indent=indent)
    if "\\ud" in out:  # a surrogate escape: a pair (valid) or a lone one (not); the slow path decides
        out = json.dumps(clean_strings(doc), ensure_ascii=True, indent=indent)
    return out
