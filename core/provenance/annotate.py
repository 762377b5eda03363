"""What the chain of custody adds to scan report entries (the JSON report's file dicts):
`sha256`/`size` when asked, `huggingface` (repo id, revision, refs) for files of a Hugging Face
cache, an info finding for blobs outside every snapshot, and the policy file's marks.

It works entry by entry on a stream in file order, so it fits any report mode; hashes are
computed ahead on threads while the scan runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airlock.core.provenance import hashing, hf_cache
from airlock.core.provenance.rules import NotInAnySnapshot

if TYPE_CHECKING:
    from airlock.core.policy_file import UserPolicy


def findings_digest(findings: Iterable[dict[str, Any]]) -> str:
    """SHA-256 of a file's findings as canonical JSON (rule, severity, message, offset, member),
    in a stable order: equal when a rescan finds the same things, whatever the file is called."""
    rows = sorted([f["rule"], f["severity"], f["message"], f.get("offset"), f.get("member")]
                  for f in findings)
    data = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(data.encode("ascii")).hexdigest()


def might_be_hf(path: str) -> bool:
    """A cheap test before the path is split: every cache path holds `--` and snapshots/ or blobs/."""
    return "--" in path and ("snapshots" in path or "blobs" in path)


def hf_finding(info: dict[str, Any]) -> dict[str, Any] | None:
    if info.get("in_snapshot", True):
        return None
    what = "an unfinished download (.incomplete)" if info.get("incomplete") else "an orphan blob"
    return {"rule": NotInAnySnapshot.id, "severity": NotInAnySnapshot.severity.label,
            "message": f"not in any snapshot of {info['repo_id']}: {what}; nothing loads it through the "
                       f"cache",
            "offset": None, "member": None, "node": None}


def annotate(entries: Iterable[dict[str, Any]], files: list[tuple[str, str]], *, hashes: bool = False,
             policy: UserPolicy | None = None, jobs: int | None = None) -> Iterator[dict[str, Any]]:
    """Entries of `files` (same order), with what this module adds. Hashing reads every byte, so it
    happens only with `hashes` (or a policy entry keyed by sha256)."""
    want_hashes = hashes or (policy is not None and policy.needs_hashes)
    digests = hashing.hash_files([real for _, real in files], jobs=jobs) if want_hashes else None
    for entry in entries:
        if digests is not None:
            result = next(digests, None)
            if result is not None and result.sha256 is not None:
                entry["sha256"], entry["size"] = result.sha256, result.size
        add_hf(entry)
        if policy is not None:
            from airlock.core.policy_file import apply

            apply(policy, [entry])
        yield entry


def add_hf(entry: dict[str, Any]) -> None:
    path = str(entry["path"])
    if not might_be_hf(path):
        return
    info = hf_cache.describe(path)
    if info is None:
        return
    entry["huggingface"] = info
    finding = hf_finding(info)
    if finding is not None:
        entry["findings"].append(finding)
        if entry["severity"] == "none":
            entry["severity"] = finding["severity"]


def relative(path: str, folder: str) -> str:
    return os.path.relpath(os.path.abspath(path), folder).replace(os.sep, "/")
