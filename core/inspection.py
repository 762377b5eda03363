"""Was a file fully inspected, and how its verdict reads: one place for the CLI, the reports and the GUI.

A file is `full`y inspected when every part of it was read by a parser that understands it (known-inert
content such as text and images counts: Airlock knows what it is). It is `partial` when a rule says a
part was not (`Rule.incomplete`: a limit hit, a malformed or truncated structure, a parser crash, a member
or coder Airlock cannot read), and `none` when the content itself was not read: no format claims it, it
could not be opened, or it is a format Airlock only recognises. Such a file never reads as clean.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from airlock.core.findings import Finding, NotInspected, Rule, Severity

if TYPE_CHECKING:
    from airlock.core.tree import Node

FULL, PARTIAL, NONE = "full", "partial", "none"
STATES = (FULL, PARTIAL, NONE)

# Formats that mean "nothing was read": no format claimed the bytes, or the file was never opened.
_NOT_READ = frozenset({"unknown", "skipped"})


def is_incomplete(rule_id: str) -> bool:
    rule = Rule.registry.get(rule_id)
    if rule is None:  # rules register when their format module is imported: import them all once
        from airlock.core.rule_catalog import all_rules  # imports every format: only when needed

        rule = {r.id: r for r in all_rules()}.get(rule_id)
    return rule is not None and rule.incomplete


def derive(fmt: str, root: Node | None, findings: Iterable[Finding]) -> str:
    """The inspected state of one scanned file, from what happened during its scan."""
    if fmt in _NOT_READ:
        return NONE
    incomplete = [f for f in findings if is_incomplete(f.rule)]
    if not incomplete:
        return FULL
    # Only recognised (a TFLite flatbuffer, a Core ML model): the file's own node says so and holds nothing.
    if root is not None and root.child_count == 0 and any(
            f.rule == NotInspected.id and f.node is root for f in incomplete):
        return NONE
    return PARTIAL


def reasons(findings: Iterable[Finding], limit: int = 3) -> list[str]:
    """Why a file was not fully inspected: the messages of the findings that say so, worst first."""
    incomplete = sorted((f for f in findings if is_incomplete(f.rule)), key=lambda f: -int(f.severity))
    return [f.message for f in incomplete[:limit]]


def reasons_of_entry(findings: Iterable[dict[str, object]], limit: int = 3) -> list[str]:
    """`reasons` for a report entry's finding dicts (the JSON report's shape)."""
    incomplete = [f for f in findings if is_incomplete(str(f.get("rule")))]
    incomplete.sort(key=lambda f: -int(Severity.parse(str(f.get("severity", "info")))))
    return [str(f.get("message", "")) for f in incomplete[:limit]]


def state_words(state: str) -> str:
    return {FULL: "fully inspected", PARTIAL: "not fully inspected", NONE: "not inspected"}.get(
        state, "not inspected")


def verdict_word(severity: Severity, state: str) -> str:
    """The one word a report leads with. "clean" only for a file with no finding that was fully read."""
    if severity == Severity.NONE and state == FULL:
        return "clean"
    if severity == Severity.NONE:
        return "not inspected"  # cannot happen through scan (an incomplete rule is a finding); never "clean"
    return severity.label
