"""Rules of the review trail (ids REV0xx): what `--require-approved` (or `require-approved = true` in
the policy file) adds to a model file whose exact content has no approval. Imported by
`rule_catalog.all_rules()` so that SARIF describes them; imports nothing but the registry."""

from __future__ import annotations

from airlock.core.findings import Rule, Severity


class NotApproved(Rule):
    id = "REV001"
    severity = Severity.HIGH
    title = "Model file not approved"
    help = ("The gate requires an approval for every model file, and none is recorded for this file's "
            "sha256 in the approvals database. An approval belongs to the exact content: a renamed copy "
            "of an "
            "approved file is approved, a file changed by one byte is not.")
    why = ("The gate lets through only files a person reviewed; nobody recorded a decision about this exact "
           "content, so nothing says it is the file that was reviewed.")
    remedy = ("Review the file (`airlock scan FILE`), then record the decision: `airlock approve FILE --note "
              "'why'` (or `airlock reject`). Check which database the gate reads (`--db` or AIRLOCK_DB).")


class Rejected(Rule):
    id = "REV002"
    severity = Severity.CRITICAL
    title = "Model file rejected"
    help = ("The latest decision recorded for this file's sha256 is a rejection: a reviewer looked at this "
            "exact content and decided it must not be used.")
    why = "Someone who reviewed this exact content decided that it must not be used."
    remedy = ("Do not load the file. `airlock history FILE` shows who rejected it and why; only a new review "
              "ending in `airlock approve` lifts the rejection.")
