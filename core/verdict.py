"""How a file's verdict reads and which colour it wears, for every view (the desktop app, HTML reports).

A verdict is in one of three states: judged by its worst finding's severity (notes alone, such as
torch's weights-only tier, read like no findings at all: NO RISK FOUND; a 0-byte file never does);
"not fully inspected" (a grey badge beside the severity, never a green check, saying why); or
"could not open" (the file could not be read: permission, I/O error; or Airlock itself failed on
it). The words and colours of each state are defined here once, so that a window, a tab title and
an exported page never disagree. Colours are plain "#rrggbb" strings (white text on each passes
WCAG AA); nothing here knows Qt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from airlock.core import inspection
from airlock.core.findings import EmptyFile, Finding, Rule, Severity, Unreadable
from airlock.core.text import safe_text

# By severity: the badge (strong, for white text on it) ...
BADGE = {
    Severity.CRITICAL: "#b3001b",
    Severity.HIGH: "#c2410c",
    Severity.MEDIUM: "#a16207",
    Severity.LOW: "#1d4ed8",
    Severity.INFO: "#475569",
    Severity.NONE: "#15803d",
}
# ... and text colours readable on white (light themes, printed reports).
TEXT_LIGHT = {
    Severity.CRITICAL: "#b3001b", Severity.HIGH: "#b23c00", Severity.MEDIUM: "#8a5300",
    Severity.LOW: "#1d4ed8", Severity.INFO: "#475569", Severity.NONE: "#15803d",
}
WORD = {
    Severity.CRITICAL: "CRITICAL", Severity.HIGH: "HIGH RISK", Severity.MEDIUM: "MEDIUM",
    Severity.LOW: "LOW", Severity.INFO: "INFO", Severity.NONE: "NO RISK FOUND",
}
# Beside the severity of a file Airlock did not fully read: grey, whatever the severity.
NOT_INSPECTED = "#64748b"
# A file Airlock could not open at all: shown as HIGH (it cannot be proven safe), worded apart.
COULD_NOT_OPEN = "COULD NOT OPEN"

BY_SEVERITY, NOT_FULLY_INSPECTED, FAILED = "severity", "not fully inspected", "could not open"

# What a critical finding means, for the verdict's first words: most critical rules are code that runs on
# load; these are not, and saying "runs code" for them would be wrong.
_OUTSIDE = "loading this file reaches files outside the model: "
CRITICAL_LEADS = {
    "ONX003": _OUTSIDE, "CML002": _OUTSIDE, "TFSM003": _OUTSIDE,
    "PRV001": "not the file that was recorded: ", "PRV007": "its signature does not verify: ",
    "REV002": "rejected in review: ",
}


@dataclass(frozen=True)
class Verdict:
    state: str  # BY_SEVERITY, NOT_FULLY_INSPECTED or FAILED
    severity: Severity  # what the icon and colour show
    word: str  # the short form: a tab title, a badge
    text: str  # the sentence a reviewer reads first (escaped)
    colour: str  # the badge colour for `severity`
    inspected: str = inspection.FULL
    badge: str = ""  # the grey badge's text when not fully inspected, else ""
    reasons: tuple[str, ...] = ()  # every reason it was not fully inspected (escaped)


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first; ties keep file order, so the first critical call in the file leads."""
    return sorted(findings, key=lambda f: -int(f.severity))


def rule_title(rule_id: str) -> str:
    rule = Rule.registry.get(rule_id)
    return rule.title if rule is not None else ""


def notes_only(findings: Sequence[Finding]) -> bool:
    """Only notes, nothing judged risky (torch's weights-only tier, a name that disagrees with the
    content): the same clean state as no findings at all. A 0-byte file is not clean (nothing was there
    to inspect), nor is a file Airlock could not read."""
    not_clean = (EmptyFile.id, Unreadable.id)
    return (any(f.severity == Severity.INFO for f in findings)
            and all(f.severity <= Severity.INFO and f.rule not in not_clean for f in findings))


def sentence(findings: Sequence[Finding], fmt: str) -> str:
    """One line: the worst severity and the worst finding in words."""
    ordered = sorted_findings(findings)
    clean = f"{WORD[Severity.NONE]} — nothing in this {safe_text(fmt, 40)} file was judged risky"
    if not ordered or ordered[0].severity == Severity.NONE:
        return clean
    worst = ordered[0]
    if notes_only(ordered):
        notes = len([f for f in ordered if f.severity == Severity.INFO])
        return f"{clean} ({notes} note{'s' if notes > 1 else ''}: {safe_text(worst.message, 160)})"
    more = len([f for f in ordered if f.severity >= Severity.MEDIUM]) - 1
    tail = f"  (+{more} more)" if more > 0 else ""
    if worst.severity == Severity.CRITICAL:
        lead = CRITICAL_LEADS.get(worst.rule, "loading this file runs code: ")
    elif worst.severity == Severity.HIGH:
        lead = "cannot be proven safe: "
    else:
        lead = ""
    return f"{WORD[worst.severity]} — {lead}{safe_text(worst.message, 220)}{tail}"


def of_findings(findings: Sequence[Finding], fmt: str, inspected: str = inspection.FULL) -> Verdict:
    """The verdict of a scanned file from its findings and its inspected state."""
    unreadable = next((f for f in findings if f.rule == Unreadable.id), None)
    if unreadable is not None:  # an I/O error (permission, a vanished file): not something found in it
        return could_not_open(unreadable.message)
    worst = max((f.severity for f in findings), default=Severity.NONE)
    if inspected == inspection.FULL:
        if notes_only(findings):
            worst = Severity.NONE  # a clean torch checkpoint reads like a clean SafeTensors file
        return Verdict(BY_SEVERITY, worst, WORD[worst], sentence(findings, fmt), BADGE[worst])
    if worst == Severity.NONE:
        worst = Severity.INFO  # never the green check for a file Airlock did not fully read
    why = tuple(safe_text(w, 300) for w in inspection.reasons(findings))
    words = inspection.state_words(inspected).upper()
    badge = f"{words}: {safe_text(why[0], 160)}" if why else words
    return Verdict(NOT_FULLY_INSPECTED, worst, WORD[worst], sentence(findings, fmt), BADGE[worst], inspected,
                   badge, why)


def could_not_open(message: str) -> Verdict:
    """Airlock failed on the file before it had a verdict (an unreadable path, a crash outside a parser)."""
    return Verdict(FAILED, Severity.HIGH, COULD_NOT_OPEN,
                   f"{COULD_NOT_OPEN} — Airlock failed on this file: {safe_text(message, 300)}",
                   BADGE[Severity.HIGH], inspection.NONE)
