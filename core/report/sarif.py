"""SARIF 2.1.0 for code scanning: one run, every rule described, a region with byte offsets."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from airlock.core import __version__
from airlock.core.findings import Severity, all_rules
from airlock.core.text import safe_text

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_LEVEL = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
          Severity.LOW: "note", Severity.INFO: "note", Severity.NONE: "none"}
# GitHub code scanning reads `security-severity` (0-10) to rank alerts.
_SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5",
                      Severity.LOW: "3.0", Severity.INFO: "1.0", Severity.NONE: "0.0"}


def _uri(path: str) -> str:
    return quote(path.replace("\\", "/"), safe="/:._-~")


def _artifact(entry: dict[str, Any]) -> dict[str, Any]:
    artifact: dict[str, Any] = {"location": {"uri": _uri(entry["path"])},
                                "properties": {"inspected": entry.get("inspected", "none")}}
    if entry.get("sha256"):  # scan --hash, verify, lock
        artifact["hashes"] = {"sha-256": entry["sha256"]}
    if entry.get("size") is not None:
        artifact["length"] = entry["size"]
    return artifact


def render(files: list[dict[str, Any]]) -> str:
    """`files` are the JSON report's file dicts (one shape for both reports)."""
    rules = all_rules()
    index = {r.id: i for i, r in enumerate(rules)}
    results = []
    for entry in files:
        for f in entry["findings"]:
            severity = Severity.parse(f["severity"])
            region: dict[str, Any] = {"startLine": 1}
            location = f.get("location")
            if location and not f["member"]:
                # Code findings: the line of the file as stored (for a notebook, the .ipynb line that
                # holds the source line), columns in code points (run.columnKind).
                region = {"startLine": location["line"], "startColumn": location["column"],
                          "endLine": location["end_line"], "endColumn": location["end_column"]}
            elif f["offset"] is not None:
                region["byteOffset"] = max(int(f["offset"]), 0)
                region["byteLength"] = 1
            message = f["message"]
            if f["member"]:
                message += f" (in member {f['member']})"
            result: dict[str, Any] = {
                "ruleId": f["rule"],
                "level": _LEVEL[severity],
                "message": {"text": message},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": _uri(entry["path"])},
                    "region": region,
                }}],
                "properties": {"severity": f["severity"], "node": f["node"], "member": f["member"],
                               "inspected": entry.get("inspected", "none")},
            }
            if location and "cell" in location:
                result["properties"].update(cell=location["cell"], cell_line=location["cell_line"],
                                            cell_column=location["cell_column"])
            if f.get("detail"):
                result["properties"]["detail"] = f["detail"]
            if f["rule"] in index:
                result["ruleIndex"] = index[f["rule"]]
            if f.get("suppressed_by"):  # a policy file's [[suppress]]: kept, marked, not counted
                entry_by = f["suppressed_by"]
                result["suppressions"] = [{"kind": "external", "status": "accepted",
                                           "justification": f"{entry_by.get('reason', '')} "
                                                            f"({entry_by.get('where', '')})"}]
            if f.get("overridden_by"):
                result["properties"]["overridden_by"] = f["overridden_by"]
            results.append(result)
    driver = {
        "name": "Airlock",
        "informationUri": "https://pypi.org/project/model-airlock/",
        "semanticVersion": __version__,
        "version": __version__,
        "rules": [{
            "id": r.id,
            "name": r.__name__,
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.help or r.title},
            "defaultConfiguration": {"level": _LEVEL[r.severity]},
            "properties": {"security-severity": _SECURITY_SEVERITY[r.severity], "tags": ["security"]},
        } for r in rules],
    }
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results, "columnKind": "unicodeCodePoints",
                  "artifacts": [_artifact(e) for e in files],
                  "properties": {"not_inspected": sum(e.get("inspected", "none") != "full" for e in files)}}],
    }
    return json.dumps(doc, indent=2, ensure_ascii=True)


__all__ = ["render", "safe_text"]
