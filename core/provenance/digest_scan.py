"""Files scanned the way a pin records them: each report entry as `airlock scan` makes it, with its
`findings_digest` (over the scanner's own findings, before any policy), then the chain of custody's
additions. `airlock lock` writes these entries, `airlock verify --lock` rescans to compare them, and
`airlock approve|reject` (airlock.core.review.decisions) records them: one way to scan for all three.
"""

from __future__ import annotations

from typing import Any


def scan_with_digest(files: list[tuple[str, str]], jobs: int | None, policy: Any,
                     hashes: bool = False) -> list[dict[str, Any]]:
    """Report entries of these (display, real) files, in their order, with `findings_digest`; with
    `hashes`, each file's sha256 and size too."""
    # Imported here: `airlock hash` loads this module with provenance.cli and never scans.
    from airlock.core import api, formats
    from airlock.core.limits import DEFAULT_LIMITS
    from airlock.core.provenance.annotate import annotate, findings_digest

    limits = policy.limits(DEFAULT_LIMITS) if policy else DEFAULT_LIMITS
    formats.load_all_modules()
    entries = []
    for report in sorted(api.iter_listed(files, limits=limits, jobs=jobs), key=lambda r: r.index or 0):
        entry = report.to_dict()
        entry["findings_digest"] = findings_digest(entry["findings"])
        entries.append(entry)
    return list(annotate(entries, files, hashes=hashes, policy=policy, jobs=jobs))
