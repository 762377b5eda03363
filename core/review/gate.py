"""The CI gate: `airlock scan --require-approved` (or `require-approved = true` in the policy file).

Every file Airlock identifies as a model format — by content, or by a model file name on content it
could not identify (fail closed) — must have an approval of its exact sha256: none is a high
finding (REV001), a latest decision that is a rejection a critical one (REV002). READMEs, configs,
templates and code are not models and are left alone. The decision that counts is attached to the
entry (`review` in JSON, the approvals section of the HTML report), never changing its findings.

`scan --db URL` without `--require-approved` attaches the decisions only, adding no finding.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airlock.core.claims import INERT_FORMATS
from airlock.core.review.rules import NotApproved, Rejected

if TYPE_CHECKING:
    from airlock.core.policy_file import UserPolicy
    from airlock.core.review.queries import ApprovalStore, Decision

# Formats that are not models: configs, indexes, templates, code, skipped files, and the content the
# scan knows to be inert (text, images, SentencePiece tokenizers, Git LFS pointers: claims.INERT_FORMATS).
# A format not listed here (including any added later) counts as a model, so that the gate fails closed.
NOT_MODELS = frozenset({"skipped", "json", "chat_template", "safetensors-index", "yaml", "inert",
                        "model_card", "python", "notebook", "text", *INERT_FORMATS})
UNKNOWN = "unknown"
EMPTY = "empty"  # 0 bytes: a model only under a model's name (an empty model.safetensors), as unknown content


def model_extensions() -> frozenset[str]:
    """File name endings of the model formats of the registry (".safetensors", ".pt", ".gguf"…)."""
    from airlock.core import formats

    return frozenset(ext for module in formats.load_all_modules() if module.NAME not in NOT_MODELS
                     for ext in module.EXTENSIONS)


def is_model(entry: dict[str, Any], extensions: frozenset[str] | None = None) -> bool:
    fmt = str(entry.get("format"))
    if fmt in NOT_MODELS:
        return False
    if fmt not in (UNKNOWN, EMPTY):
        return True
    # Content Airlock did not recognise (or none): a model when its name says so (a loader would try it).
    name = os.path.basename(str(entry["path"])).lower()
    return any(name.endswith(ext) for ext in (extensions if extensions is not None else model_extensions()))


def _finding(rule: type[NotApproved] | type[Rejected], message: str) -> dict[str, Any]:
    return {"rule": rule.id, "severity": rule.severity.label, "message": message, "offset": None,
            "member": None, "node": None}


def summary(decision: Decision, current_digest: str | None) -> dict[str, Any]:
    """What a report shows of the decision that counts."""
    from airlock.core.text import safe_text

    shown = {key: decision[key] for key in ("id", "decision", "reviewer", "decided_at", "note", "verdict",
                                            "accepted_critical", "policy_digest", "file_name")}
    shown["reviewer"] = safe_text(str(shown["reviewer"]), 200)
    shown["note"] = safe_text(str(shown["note"]), 2000)
    shown["file_name"] = safe_text(str(shown["file_name"]), 500)
    if current_digest is not None:
        # Same findings as when it was decided? (A newer Airlock or policy may find more.)
        shown["same_findings"] = current_digest == decision["findings_digest"]
    return shown


def apply_decisions(entries: list[dict[str, Any]], latest: dict[str, Decision], *, require: bool) -> None:
    """Attach each model file's decision; with `require`, add REV001/REV002 and recompute verdicts."""
    from airlock.core.findings import Severity
    from airlock.core.text import safe_text

    extensions = model_extensions()
    for entry in entries:
        if not is_model(entry, extensions):
            continue
        sha = entry.get("sha256")
        decision = latest.get(sha) if sha else None
        if decision is not None:
            entry["review"] = summary(decision, entry.get("findings_digest"))
        if not require:
            continue
        if sha is None:
            entry["findings"].append(_finding(NotApproved, "not approved: the file could not be read, so its "
                                                           "sha256 is unknown and no approval can match it"))
        elif decision is None:
            entry["findings"].append(_finding(NotApproved, f"not approved: no decision is recorded for "
                                                           f"sha256 "
                                                           f"{sha} ({entry.get('format')} file)"))
        elif decision["decision"] == "reject":
            entry["findings"].append(_finding(Rejected, (
                f"rejected by {safe_text(str(decision['reviewer']), 100)} on {decision['decided_at']} "
                f"(decision #{decision['id']}): {safe_text(str(decision['note']), 300)}")))
        else:
            continue
        counted = [Severity.parse(f["severity"]) for f in entry["findings"] if "suppressed_by" not in f]
        entry["severity"] = max(counted, default=Severity.NONE).label


Entries = list[dict[str, Any]]


def gate(store: ApprovalStore, *, require: bool,
         policy: UserPolicy | None) -> Callable[[Entries, list[tuple[str, str]]], Entries]:
    """The step `airlock scan` runs after scanning: hash, look decisions up, add the gate's findings,
    then apply the policy (so that the policy's marks cover the gate's findings too)."""

    def run(entries: list[dict[str, Any]], files: list[tuple[str, str]]) -> list[dict[str, Any]]:
        from airlock.core.provenance.annotate import annotate, findings_digest

        for entry in entries:  # over the scanner's own findings, as `airlock approve` records it
            entry["findings_digest"] = findings_digest(entry["findings"])
        entries = list(annotate(entries, files, hashes=True, policy=None))
        extensions = model_extensions()
        hashes = [e["sha256"] for e in entries if e.get("sha256") and is_model(e, extensions)]
        apply_decisions(entries, store.latest(hashes), require=require)
        if policy is not None:
            from airlock.core.policy_file import apply

            apply(policy, entries)
        return entries

    return run
