"""What a policy file (airlock.toml) changed in one file's findings, for the desktop app.

The policy is applied by core exactly as `airlock scan` applies it (`airlock.core.api.scan_file`
with `policy=`): the report entry's findings then carry `suppressed_by` / `overridden_by`. The app
shows the tree's Finding objects, so this module carries those marks over to them, index by index
(the entry's findings are the tree's, in order, plus what the chain of custody appends).

A suppressed finding stays in the list, struck through, with the policy entry's reason; it no
longer counts toward the verdict. An overridden one shows its new severity and the one it had.
A policy can never hide anything silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airlock.core.findings import Finding, Severity
from airlock.core.text import safe_text
from airlock.core.tree import Node

SUPPRESSED, OVERRIDDEN = "suppressed", "overridden"


class PolicyMark:
    """One policy entry's effect on one finding."""

    __slots__ = ("kind", "reason", "was", "where")

    def __init__(self, kind: str, reason: str, where: str, was: Severity | None = None) -> None:
        self.kind = kind
        self.reason = reason
        self.where = where  # "airlock.toml:12"
        self.was = was  # the severity before an override

    def describe(self) -> str:
        """One line for a tooltip or a details row (already escaped)."""
        why = safe_text(self.reason, 300) or "no reason given"
        where = safe_text(self.where, 200) or "the policy file"
        if self.kind == SUPPRESSED:
            return f"suppressed by {where}: {why} (kept here, not counted in the verdict)"
        was = self.was.label.upper() if self.was is not None else "?"
        return f"severity overridden by {where} (was {was}): {why}"


Marks = dict[int, list[PolicyMark]]  # id(Finding) → what the policy did to it


def load_policy(opened: Sequence[str] = ()) -> tuple[Any, str]:
    """(UserPolicy or None, a line for the view): the policy in effect, or why none is. Found from the
    current folder upward, as `airlock scan` finds it, and never one inside an `opened` folder or beside
    an opened file: a downloaded model must not bring the policy that suppresses its own findings. A
    policy file that does not load is not applied, and the view says so (a policy only lowers findings:
    ignoring a broken one can hide nothing)."""
    from airlock.core.policy_file import PolicyError, brought_along, find, load

    passed_over = brought_along(opened)
    skipped = (f"; policy {safe_text(passed_over[0], 200)} NOT applied: it came with the opened files"
               if passed_over else "")
    found = find(scanned=opened)
    if found is None:
        return None, skipped.removeprefix("; ")
    try:
        return load(found), f"policy {safe_text(found, 200)}{skipped}"
    except (PolicyError, OSError, ValueError) as exc:
        return None, f"policy {safe_text(found, 200)} NOT applied: {safe_text(str(exc), 300)}{skipped}"


def carry_marks(entry: dict[str, Any], findings: list[Finding]) -> Marks:
    """Carry the entry's policy marks over to the tree's findings (in place: an overridden finding
    takes its new severity). Findings the entry adds beyond the tree's (a refused format, a blob in
    no snapshot) are appended to `findings`, so that the app shows everything the report says."""
    marks: Marks = {}
    items = list(entry.get("findings", []))
    for i, item in enumerate(items):
        if i < len(findings):
            finding = findings[i]
        else:
            finding = Finding(str(item.get("rule", "?")), Severity.parse(str(item.get("severity", "info"))),
                              str(item.get("message", "")), item.get("offset"))
            findings.append(finding)
        got = []
        overridden = item.get("overridden_by")
        if overridden:
            finding.severity = Severity.parse(str(item["severity"]))
            was = Severity.parse(str(overridden.get("was", "info")))
            got.append(PolicyMark(OVERRIDDEN, str(overridden.get("reason", "")),
                                  str(overridden.get("where", "")), was))
        suppressed = item.get("suppressed_by")
        if suppressed:
            got.append(PolicyMark(SUPPRESSED, str(suppressed.get("reason", "")),
                                  str(suppressed.get("where", ""))))
        if got:
            marks[id(finding)] = got
    return marks


SeverityWas = dict[int, Severity]  # id(Node) → the node's severity before the policy changed it


def settle_severities(findings: list[Finding], marks: Marks) -> SeverityWas:
    """Make the tree's node severities (its Risk column, tint and "show only risky") the effective ones:
    an overridden finding counts with its new severity, a suppressed one not at all, as in the verdict.
    Only the nodes from the changed findings' nodes up to the root are recomputed, each from the counted
    findings at or below it (a node may sit under a lazy list without being one of its built pages) and
    from its built children. Returns what each changed node showed before, so the tree can say
    "low (was medium)" as the findings panel does."""
    starts = {id(f.node): f.node for f in findings if id(f) in marks and f.node is not None}
    if not starts:
        return {}
    reach: dict[int, Severity] = {}  # id(Node) → the worst counted finding at or below it
    for finding in findings:
        if is_suppressed(finding, marks):
            continue
        node = finding.node
        while node is not None:
            if reach.get(id(node), Severity.NONE) < finding.severity:
                reach[id(node)] = finding.severity
            node = node.parent
    before: dict[int, tuple[Node, Severity]] = {}
    for start in starts.values():
        walk: Node | None = start
        while walk is not None:
            own = [f.severity for f in walk.findings if not is_suppressed(f, marks)]
            below = [child.severity for child in walk.built_children()]
            before.setdefault(id(walk), (walk, walk.severity))
            walk.severity = max([reach.get(id(walk), Severity.NONE), *own, *below])
            walk = walk.parent
    return {key: old for key, (node, old) in before.items() if node.severity != old}


def is_suppressed(finding: Finding, marks: Marks) -> bool:
    return any(m.kind == SUPPRESSED for m in marks.get(id(finding), ()))


def counted(findings: list[Finding], marks: Marks) -> list[Finding]:
    """The findings that count toward the verdict: all but the suppressed ones."""
    return [f for f in findings if not is_suppressed(f, marks)]


def policy_data(finding: Finding, marks: list[PolicyMark], column: int, role: int) -> Any:
    """The findings table's data for a finding a policy changed, or None for the usual data:
    struck through when suppressed, the original severity beside an overridden one, and the policy
    entry's reason in the message and the tooltip."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QFont

    from airlock.gui.findings_panel import COL_MESSAGE, COL_RULE, COL_SEVERITY
    from airlock.gui.tree_model import plain_tooltip

    suppressed = any(m.kind == SUPPRESSED for m in marks)
    if role == Qt.ItemDataRole.FontRole and suppressed:
        font = QFont()
        font.setStrikeOut(True)
        return font
    if role == Qt.ItemDataRole.DisplayRole:
        if column == COL_SEVERITY:
            was = next((m.was for m in marks if m.kind == OVERRIDDEN and m.was is not None), None)
            text = finding.severity.label.upper() + (f" (was {was.label.upper()})" if was is not None else "")
            return text + (" · suppressed" if suppressed else "")
        if column == COL_MESSAGE:
            return f"{safe_text(finding.message, 400)}   [{' · '.join(m.describe() for m in marks)}]"
    if role == Qt.ItemDataRole.ToolTipRole and column in (COL_SEVERITY, COL_RULE, COL_MESSAGE):
        return plain_tooltip(f"{finding.rule}\n{safe_text(finding.message, 1000)}\n"
                             + "\n".join(m.describe() for m in marks))
    if role == Qt.ItemDataRole.ForegroundRole and suppressed:
        from PySide6.QtGui import QColor

        return QColor("gray")
    return None
