"""SARIF 2.1.0 for GitHub code scanning: one run, every rule described, a region with byte offsets.

What code scanning needs, and where it comes from:
- every rule's `help` in `text` and `markdown` (what it means, why it matters, what to do: the rule's
  own `remedy`, else the advice for its severity); `helpUri` only when the package metadata has a
  `[project.urls] Documentation` entry, as `<that>/rules.md#<id>` (docs/rules.md, see rules_doc.py);
- `partialFingerprints` on every result, so an alert is tracked across runs;
- `automationDetails.id` ("airlock/<command>/<time>": the category is "airlock/<command>");
- artifact URIs relative to the source root (`--sarif-root`; default the nearest folder above the
  current one that holds `.git`, found by walking up, never by running git; else the current
  folder) with `uriBaseId` SRCROOT, and absolute `file:` URIs for files outside it;
- info-level findings left out unless `--include-info` (the artifacts still list every file).
"""

from __future__ import annotations

import functools
import hashlib
import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_from_bytes

from airlock.core import __version__
from airlock.core.findings import Rule, Severity
from airlock.core.report.json_report import Interruption, dumps
from airlock.core.report.paths import entry_path_bytes
from airlock.core.rule_catalog import all_rules
from airlock.core.text import safe_text

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
ROOT_ID = "SRCROOT"
FINGERPRINT_KEY = "airlockFinding/v1"

_LEVEL = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
          Severity.LOW: "note", Severity.INFO: "note", Severity.NONE: "none"}
# GitHub code scanning reads `security-severity` (0-10) to rank alerts.
_SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5",
                      Severity.LOW: "3.0", Severity.INFO: "1.0", Severity.NONE: "0.0"}
WHY = {
    Severity.CRITICAL: "A loader would reach code that can take over the machine that loads the file: "
                       "loading "
                       "it runs what the file's author chose.",
    Severity.HIGH: "Airlock cannot prove the file safe: a loader would act on something that could not be "
                   "resolved or is malformed, the way scanners have been bypassed before.",
    Severity.MEDIUM: "Loading needs code beyond the model format itself; nothing suggests an attack, "
                     "but that "
                     "code runs with the rights of whoever loads the file.",
    Severity.LOW: "It runs no code by itself, but it can hide content or make tools disagree about the file.",
    Severity.INFO: "For the record: no risk by itself.",
    Severity.NONE: "For the record.",
}
TODO = {
    Severity.CRITICAL: "Do not load the file. Get the model from a source you trust in a data-only format "
                       "(SafeTensors), or copy its tensors out with `airlock convert`, which never runs "
                       "the pickle.",
    Severity.HIGH: "Do not load the file until the finding is understood: open it in Airlock, go to the "
                   "offset, "
                   "ask the publisher. Accept a reviewed file with a policy [[suppress]] entry keyed by "
                   "its sha256.",
    Severity.MEDIUM: "Check that the code the loader needs comes from a package you trust, pinned to a "
                     "version; "
                     "prefer a data-only export of the model.",
    Severity.LOW: "Ask the publisher if the finding is unexpected.",
    Severity.INFO: "Nothing is required.",
    Severity.NONE: "Nothing is required.",
}


# Options of the command line (scan and verify add them with airlock.core.cli_common.add_sarif_options)

def options_from(args: Any) -> dict[str, Any]:
    return {"root": getattr(args, "sarif_root", None),
            "include_info": bool(getattr(args, "include_info", False)),
            "command": str(getattr(args, "command", "scan"))}


def find_root(start: str | None = None) -> str:
    """The nearest folder from `start` (default: the current folder) upward holding `.git` (a folder,
    or a file in a git worktree), else `start` itself. Found by looking, never by running git."""
    try:
        here = os.path.abspath(start or os.getcwd())
    except OSError:  # the current folder was removed
        return os.path.abspath(os.sep)
    folder = here
    while True:
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return here
        folder = parent


@functools.cache
def documentation_url() -> str | None:
    """`[project.urls] Documentation` of the installed package, when it has one."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("model-airlock").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    for item in urls:
        label, _, url = str(item).partition(",")
        if label.strip().lower() == "documentation" and url.strip():
            return url.strip().rstrip("/")
    return None


# Rules

def rule_help(rule: type[Rule]) -> dict[str, str]:
    """What it means, why it matters, what to do: as plain text and as Markdown."""
    means = (rule.help or rule.title).strip()
    why = (rule.why or WHY[rule.severity]).strip()
    todo = (rule.remedy or TODO[rule.severity]).strip()
    text = (f"{rule.title} ({rule.id}, {rule.severity.label}). {means} Why it matters: {why} "
            f"What to do: {todo}")
    markdown = (f"**{rule.title}** (`{rule.id}`, default severity **{rule.severity.label}**)\n\n{means}\n\n"
                f"**Why it matters.** {why}\n\n**What to do.** {todo}")
    return {"text": text, "markdown": markdown}


def rule_descriptor(rule: type[Rule], docs_url: str | None) -> dict[str, Any]:
    descriptor = {
        "id": rule.id,
        "name": rule.__name__,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.help or rule.title},
        "help": rule_help(rule),
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {"security-severity": _SECURITY_SEVERITY[rule.severity], "tags": ["security"]},
    }
    if docs_url:
        descriptor["helpUri"] = f"{docs_url}/rules.md#{rule.id}"
    return descriptor


# Locations

def _root_uri(root: str) -> str:
    from pathlib import Path

    uri = Path(root).as_uri()
    return uri if uri.endswith("/") else uri + "/"


def artifact_location(path: str, root: str) -> dict[str, str]:
    """Relative to `root` (with uriBaseId) when the file lies under it, else an absolute file: URI.
    Built from the name's bytes, so that a name that is not valid UTF-8 still round-trips; ':' is
    encoded, so that a relative name never reads as a scheme."""
    from pathlib import Path

    full = os.path.abspath(path)
    try:
        inside = os.path.commonpath([full, root]) == root
    except ValueError:  # another drive (Windows)
        inside = False
    if inside and full == root:  # the root folder itself (verify reports a folder's signature state)
        return {"uri": "./", "uriBaseId": ROOT_ID}
    if inside:
        rel = os.path.relpath(full, root).replace(os.sep, "/")
        return {"uri": quote_from_bytes(os.fsencode(rel), safe="/._-~"), "uriBaseId": ROOT_ID}
    return {"uri": Path(full).as_uri()}


def _fingerprint(rule: str, uri: str, f: dict[str, Any], seen: dict[str, int]) -> str:
    """Stable across runs: the rule, the file's URI, where in the file (member, node) and the message;
    equal findings in one file are told apart by their order."""
    data = "\0".join([rule, uri, str(f.get("member") or ""), str(f.get("node") or ""), str(f["message"])])
    digest = hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    seen[digest] = seen.get(digest, 0) + 1
    return f"{digest}:{seen[digest]}"


# The document

_AUTO: Any = object()


def render(files: list[dict[str, Any]], interruption: Interruption | None = None, *, root: str | None = None,
           include_info: bool = False, command: str = "scan", docs_url: str | None = _AUTO) -> str:
    """`files` are the JSON report's file dicts (one shape for both reports)."""
    root = os.path.abspath(root) if root else find_root()
    docs_url = documentation_url() if docs_url is _AUTO else docs_url
    rules = all_rules()
    index = {r.id: i for i, r in enumerate(rules)}
    results = []
    seen: dict[str, int] = {}
    for entry in files:
        location = artifact_location(_name(entry), root)
        for f in entry["findings"]:
            severity = Severity.parse(f["severity"])
            if severity <= Severity.INFO and not include_info:
                continue
            region: dict[str, Any] = {"startLine": 1}
            code_at = f.get("location")
            if code_at and not f["member"]:
                # Code findings: the line of the file as stored (for a notebook, the .ipynb line that
                # holds the source line), columns in code points (run.columnKind).
                region = {"startLine": code_at["line"], "startColumn": code_at["column"],
                          "endLine": code_at["end_line"], "endColumn": code_at["end_column"]}
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
                "locations": [{"physicalLocation": {"artifactLocation": dict(location), "region": region}}],
                "partialFingerprints": {FINGERPRINT_KEY: _fingerprint(f["rule"], location["uri"], f, seen)},
                "properties": {"severity": f["severity"], "node": f["node"], "member": f["member"],
                               "inspected": entry.get("inspected", "none")},
            }
            if code_at and "cell" in code_at:
                result["properties"].update(cell=code_at["cell"], cell_line=code_at["cell_line"],
                                            cell_column=code_at["cell_column"])
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
        "informationUri": docs_url or "https://pypi.org/project/model-airlock/",
        "semanticVersion": __version__,
        "version": __version__,
        "rules": [rule_descriptor(r, docs_url) for r in rules],
    }
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = {
        "tool": {"driver": driver},
        "invocations": [_invocation(interruption, len(files))],
        "automationDetails": {"id": f"airlock/{command}/{when}"},
        "originalUriBaseIds": {ROOT_ID: {"uri": _root_uri(root)}},
        "results": results,
        "columnKind": "unicodeCodePoints",
        "artifacts": [_artifact(e, root) for e in files],
        "properties": {"not_inspected": sum(e.get("inspected", "none") != "full" for e in files)},
    }
    doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return dumps(doc, indent=2)


def _artifact(entry: dict[str, Any], root: str) -> dict[str, Any]:
    artifact: dict[str, Any] = {"location": artifact_location(_name(entry), root),
                                "properties": {"inspected": entry.get("inspected", "none")}}
    if entry.get("sha256"):  # scan --hash, verify, lock, --require-approved
        artifact["hashes"] = {"sha-256": entry["sha256"]}
    if entry.get("size") is not None:
        artifact["length"] = entry["size"]
    return artifact



def _name(entry: dict[str, Any]) -> str:
    """The file's name with its exact bytes (a report's `path` has U+FFFD where a byte is not UTF-8)."""
    return os.fsdecode(entry_path_bytes(entry))


def _invocation(interruption: Interruption | None, scanned: int) -> dict[str, Any]:
    """Code scanning must not read an interrupted scan as a clean one: executionSuccessful is
    false and a notification says how far it got."""
    if interruption is None:
        return {"executionSuccessful": True}
    return {"executionSuccessful": False, "exitSignalName": interruption.signal,
            "toolExecutionNotifications": [{"level": "error", "message": {"text": (
                f"interrupted by {interruption.signal} after {scanned} file(s); the files not listed "
                "were not scanned and the results are incomplete")}}]}

__all__ = ["render", "safe_text"]
