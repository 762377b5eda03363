"""A decision about files, from their scan: what `airlock approve|reject` and the GUI record.

The files are scanned and hashed the way `airlock lock` does it (provenance.digest_scan: the same
findings digest, over the scanner's own findings before any policy) and the record keeps the sha256,
size, name, format, verdict (after the policy), that digest, the policy digest, the reviewer and the
time. Approving a file whose verdict is critical needs `accept_critical`, and the record says so.
An approval never changes a file's findings: accepting findings is a policy baseline's job.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airlock.core import __version__
from airlock.core.errors import AirlockError
from airlock.core.findings import Severity

if TYPE_CHECKING:
    from airlock.core.policy_file import UserPolicy
    from airlock.core.review.queries import ApprovalStore, Decision

APPROVE, REJECT = "approve", "reject"
MAX_FINDINGS_KEPT = 200
MAX_NOTE = 4000


class DecisionRefused(AirlockError):
    """Nothing was recorded: the message says which file and why (critical findings not accepted)."""


def clean(text: str, limit: int = 4000) -> str:
    """Text as a database keeps it: file names that are not valid UTF-8 and NUL characters (which
    PostgreSQL refuses) become visible escapes, and long text is cut."""
    data = text.encode("utf-8", "surrogateescape")
    shown = data.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def default_reviewer() -> str:
    """The login name, as getpass finds it (LOGNAME, USER, LNAME, USERNAME, then the password file)."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def scan_files(files: list[tuple[str, str]], policy: UserPolicy | None,
               jobs: int | None = None) -> list[dict[str, Any]]:
    """Report entries (with sha256, size and findings_digest) of these (display, real) files."""
    from airlock.core.provenance.digest_scan import scan_with_digest

    return scan_with_digest(files, jobs, policy, hashes=True)


def _kept_findings(entry: dict[str, Any]) -> list[dict[str, Any]]:
    kept = []
    for f in entry["findings"][:MAX_FINDINGS_KEPT]:
        item = {"rule": f["rule"], "severity": f["severity"], "message": clean(str(f["message"]), 500),
                "offset": f.get("offset"), "member": clean(f["member"], 300) if f.get("member") else None}
        if f.get("suppressed_by"):
            item["suppressed_by"] = f["suppressed_by"].get("where", "policy")
        if f.get("overridden_by"):
            item["overridden_from"] = f["overridden_by"].get("was")
        kept.append(item)
    if len(entry["findings"]) > MAX_FINDINGS_KEPT:
        kept.append({"rule": "", "severity": "info", "offset": None, "member": None,
                     "message": f"… and {len(entry['findings']) - MAX_FINDINGS_KEPT} more"})
    return kept


def make_record(entry: dict[str, Any], real_path: str, decision: str, *, note: str, reviewer: str,
                accept_critical: bool, policy_digest: str, now: datetime | None = None) -> Decision:
    if decision not in (APPROVE, REJECT):
        raise ValueError(f"decision must be {APPROVE!r} or {REJECT!r}, not {decision!r}")
    critical = Severity.parse(entry["severity"]) >= Severity.CRITICAL
    return {
        "sha256": entry["sha256"],
        "size": int(entry["size"]),
        "file_name": clean(os.path.basename(real_path) or real_path, 1000),
        "path": clean(os.path.abspath(real_path), 4000),
        "format": clean(str(entry["format"]), 64),
        "verdict": entry["severity"],
        "decision": decision,
        "accepted_critical": bool(decision == APPROVE and critical and accept_critical),
        "findings_digest": entry["findings_digest"],
        "findings": _kept_findings(entry),
        "policy_digest": policy_digest,
        "reviewer": clean(reviewer, 200),
        "note": clean(note, MAX_NOTE),
        "decided_at": (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "airlock_version": __version__,
    }


def records_for(entries: list[dict[str, Any]], reals: list[str], decision: str, *, note: str, reviewer: str,
                accept_critical: bool, policy: UserPolicy | None) -> list[Decision]:
    """One record per entry, or DecisionRefused naming every file that stops the decision."""
    from airlock.core.policy_file import EMPTY, digest

    problems = []
    for entry, real in zip(entries, reals, strict=True):
        if entry.get("sha256") is None:
            problems.append(f"{clean(real, 500)}: cannot be read, so it cannot be hashed")
        elif (decision == APPROVE and not accept_critical
              and Severity.parse(entry["severity"]) >= Severity.CRITICAL):
            worst = next((f for f in entry["findings"] if f["severity"] == "critical"
                          and not f.get("suppressed_by")), None)
            why = f" ({worst['rule']}: {clean(str(worst['message']), 200)})" if worst else ""
            problems.append(f"{clean(real, 500)} has critical findings{why}: approving it needs "
                            "--accept-critical")
    if problems:
        raise DecisionRefused("nothing recorded: " + "; ".join(problems))
    policy_digest = digest(policy or EMPTY)
    return [make_record(entry, real, decision, note=note, reviewer=reviewer, accept_critical=accept_critical,
                        policy_digest=policy_digest) for entry, real in zip(entries, reals, strict=True)]


def decide(store: ApprovalStore, paths: list[str], decision: str, *, note: str, reviewer: str | None = None,
           accept_critical: bool = False, policy: UserPolicy | None = None,
           jobs: int | None = None) -> list[Decision]:
    """Scan, hash and record a decision about every file under `paths`, in one transaction (all of
    them or none). Returns the records with their ids."""
    from airlock.core.scan import iter_files

    if not note.strip():
        raise DecisionRefused("a decision needs a note saying why (--note)")
    files = [pair for p in paths for pair in iter_files(p)]
    if not files:
        raise DecisionRefused("no file to decide about")
    reals = [real for _, real in files]
    entries = scan_files(files, policy, jobs)
    records = records_for(entries, reals, decision, note=note, reviewer=reviewer or default_reviewer(),
                          accept_critical=accept_critical, policy=policy)
    for record, record_id in zip(records, store.record(records), strict=True):
        record["id"] = record_id
    return records
