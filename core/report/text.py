"""Readable terminal output: one block per file, worst first within it; colour only on a TTY."""

from __future__ import annotations

from typing import Any

from airlock.core import inspection
from airlock.core.findings import Severity
from airlock.core.report.json_report import Interruption
from airlock.core.report.paths import entry_path_bytes
from airlock.core.text import safe_text

_COLOURS = {"critical": "\033[1;97;41m", "high": "\033[1;31m", "medium": "\033[33m", "low": "\033[36m",
            "info": "\033[2m", "none": "\033[32m"}
_RESET = "\033[0m"


def render(files: list[dict[str, Any]], *, colour: bool, interruption: Interruption | None = None,
           verified: bool = False) -> str:
    """The text report of a scan, or with `verified` of `airlock verify`, whose entries are checks of
    hashes and signatures, not inspections of content: no "not inspected" words there."""
    def paint(level: str, text: str) -> str:
        return f"{_COLOURS[level]}{text}{_RESET}" if colour else text

    lines = []
    counts: dict[str, int] = {}
    not_full = 0
    for entry in files:
        verdict = entry["severity"]
        counts[verdict] = counts.get(verdict, 0) + 1
        state = entry.get("inspected", inspection.NONE)
        name = safe_text(entry_path_bytes(entry), 500)  # bytes that are not UTF-8 shown as \xNN
        if verified:
            shown = "ok" if verdict == Severity.NONE.label else verdict.upper()
            lines.append(f"{paint(verdict, f'[{shown}]')} {name}  ({entry['format']})")
        else:
            shown = inspection.verdict_word(Severity.parse(verdict), state)
            shown = shown if shown == "clean" else shown.upper()
            lines.append(f"{paint(verdict, f'[{shown}]')} {name}  ({entry['format']}; "
                         f"{inspection.state_words(state)})")
            if state != inspection.FULL:
                not_full += 1
        if entry.get("sha256"):
            lines.append(f"    sha256 {entry['sha256']}  {entry.get('size', '?'):,} bytes"
                         if isinstance(entry.get("size"), int) else f"    sha256 {entry['sha256']}")
        hf = entry.get("huggingface")
        if hf and hf.get("revision"):  # a Hugging Face cache file: where it comes from, as JSON says
            refs = ", ".join(str(r) for r in hf.get("refs") or ()) or "no ref points at it"
            lines.append(f"    Hugging Face {safe_text(str(hf['repo_id']), 200)} @ "
                         f"{safe_text(str(hf['revision']), 100)} ({safe_text(refs, 200)})")
        ordered = sorted(entry["findings"], key=lambda f: -Severity.parse(f["severity"]))
        for f in ordered:
            where = f"@{f['offset']}" if f["offset"] is not None else ""
            if f["member"]:
                where = f"{f['member']}{where}"
            lines.append(f"    {paint(f['severity'], f['severity'].upper()):<10} {f['rule']} {where}  "
                         f"{f['message']}{_policy_mark(f)}")
            lines.extend(f"        | {line}" for line in f.get("detail", ()))
    summary = ", ".join(f"{n} {level}" for level, n in sorted(
        counts.items(), key=lambda kv: -Severity.parse(kv[0])))
    if verified:
        lines.append(f"{len(files)} file(s) verified: {summary}")
    else:
        # Nothing scanned (an empty folder, only .git/): say so, never an empty list that reads as a pass.
        summary = summary or "no file found under the paths given, nothing was inspected"
        lines.append(f"{len(files)} file(s) scanned: {summary}; {not_full} not fully inspected")
    if interruption is not None:
        lines.append(paint("high", f"INTERRUPTED by {interruption.signal}: the files not listed above "
                                   "were not scanned; this report is incomplete"))
    return "\n".join(lines) + "\n"


def _policy_mark(f: dict[str, Any]) -> str:
    """What a policy file did to a finding, so that it never hides one silently."""
    if f.get("suppressed_by"):
        by = f["suppressed_by"]
        return f"  [SUPPRESSED by policy {by.get('where', '')}: {safe_text(str(by.get('reason', '')), 200)}]"
    if f.get("overridden_by"):
        by = f["overridden_by"]
        return (f"  [severity {by.get('was')} -> {f['severity']} by policy {by.get('where', '')}: "
                f"{safe_text(str(by.get('reason', '')), 200)}]")
    return ""
