"""`--format html`: one self-contained page, the review record of a scan.

Files, hashes, verdicts, findings with their offsets, what the policy file changed (struck through
or re-rated, with the entry and its reason) and the decision that counts for each model file
(approvals database). No script, no external asset (a Content-Security-Policy forbids loading
anything), so it opens offline and shows the same thing anywhere. Every string that comes from a
file, a policy or a reviewer goes through safe_text (control and bidi characters made visible,
truncated) and then html.escape. The desktop app's "Export Report ▸ HTML" uses this module too.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airlock.core import __version__
from airlock.core.findings import Severity
from airlock.core.text import human_size, safe_text

if TYPE_CHECKING:
    from airlock.core.scan import ScanResult

# Light theme colours per severity (a report is printed and mailed: no dark mode).
BADGE = {"critical": "#991b1b", "high": "#dc2626", "medium": "#d97706", "low": "#2563eb", "info": "#6b7280",
         "none": "#15803d"}
WORD = {"critical": "CRITICAL", "high": "HIGH", "medium": "MEDIUM", "low": "LOW", "info": "INFO",
        "none": "CLEAN"}
MAX_FINDINGS_PER_FILE = 5000

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #111827; max-width: 1400px; }
h1 { margin-bottom: .2em; } .sub { color: #4b5563; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: .6em 0 1.2em; }
td, th { border: 1px solid #d1d5db; padding: .3em .5em; text-align: left; vertical-align: top;
  font-size: .9em; overflow-wrap: anywhere; }
th { background: #f3f4f6; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.hash { font-family: ui-monospace, monospace; font-size: .85em; }
.badge { color: white; padding: .1em .5em; border-radius: 4px; font-weight: bold; white-space: nowrap; }
.file { border-top: 3px solid #e5e7eb; margin-top: 2em; padding-top: .5em; }
tr.suppressed td { text-decoration: line-through; color: #6b7280; }
tr.suppressed td.policy { text-decoration: none; }
.policy { font-size: .85em; color: #374151; } pre { white-space: pre-wrap; margin: .3em 0 0; }
.approve { color: #15803d; font-weight: bold; } .reject { color: #991b1b; font-weight: bold; }
"""


def e(value: object, limit: int = 400) -> str:
    """A value from outside, escaped for HTML text and attributes."""
    return html.escape(safe_text(str(value), limit), quote=True)


def _badge(level: str) -> str:
    level = level if level in BADGE else "info"
    return f"<span class='badge' style='background:{BADGE[level]}'>{WORD[level]}</span>"


def _rule_titles() -> dict[str, str]:
    from airlock.core.rule_catalog import all_rules

    return {r.id: r.title for r in all_rules()}


def _policy_cell(f: dict[str, Any]) -> str:
    if f.get("suppressed_by"):
        by = f["suppressed_by"]
        return (f"suppressed by policy {e(by.get('where', ''), 200)}: {e(by.get('reason', ''), 300)}")
    if f.get("overridden_by"):
        by = f["overridden_by"]
        return (f"severity {e(by.get('was', '?'), 20)} &rarr; {e(f['severity'], 20)} by policy "
                f"{e(by.get('where', ''), 200)}: {e(by.get('reason', ''), 300)}")
    return ""


def _detail(f: dict[str, Any]) -> str:
    """A finding's several-line detail (e.g. a template's drift), escaped line by line."""
    detail = f.get("detail")
    if not detail:
        return ""
    return "<pre>" + "\n".join(e(line, 400) for line in str(detail).splitlines()[:200]) + "</pre>"


def _offset(value: Any) -> str:
    if value is None:
        return ""
    return f"{int(value):,}<br><span class='hash'>0x{int(value):x}</span>"


def _findings_table(entry: dict[str, Any], titles: dict[str, str]) -> str:
    findings = sorted(entry["findings"], key=lambda f: -Severity.parse(f["severity"]))
    if not findings:
        return "<p>No findings.</p>"
    rows = []
    for f in findings[:MAX_FINDINGS_PER_FILE]:
        css = " class='suppressed'" if f.get("suppressed_by") else ""
        rows.append(f"<tr{css}><td>{_badge(f['severity'])}</td><td>{e(f['rule'], 20)}</td>"
                    f"<td>{e(titles.get(f['rule'], ''), 200)}</td>"
                    f"<td>{e(f['message'], 2000)}{_detail(f)}</td>"
                    f"<td class='num'>{_offset(f.get('offset'))}</td><td>{e(f.get('member') or '', 300)}</td>"
                    f"<td>{e(f.get('node') or '', 600)}</td><td class='policy'>{_policy_cell(f)}</td></tr>")
    more = len(findings) - MAX_FINDINGS_PER_FILE
    if more > 0:
        rows.append(f"<tr><td colspan='8'>… and {more:,} more (see the JSON report)</td></tr>")
    return ("<table><tr><th>Severity</th><th>Rule</th><th>Title</th><th>Message</th><th>Offset</th>"
            "<th>Member</th><th>Node</th><th>Policy</th></tr>\n" + "\n".join(rows) + "</table>")


def _decision(review: dict[str, Any] | None) -> str:
    if not review:
        return ""
    word = "APPROVED" if review.get("decision") == "approve" else "REJECTED"
    css = "approve" if review.get("decision") == "approve" else "reject"
    extra = []
    if review.get("accepted_critical"):
        extra.append("critical findings accepted")
    if review.get("same_findings") is False:
        extra.append("the findings differ from those at the decision: rescan and review")
    tail = f" ({e('; '.join(extra), 300)})" if extra else ""
    return (f"<span class='{css}'>{word}</span> by {e(review.get('reviewer', ''), 200)} on "
            f"{e(review.get('decided_at', ''), 40)}, decision #{e(review.get('id', ''), 20)}{tail}<br>"
            f"note: {e(review.get('note', ''), 2000)}")


def _file_section(index: int, entry: dict[str, Any], titles: dict[str, str]) -> str:
    rows = [("File", e(entry["path"], 1000)), ("Format", e(entry["format"], 100))]
    if entry.get("size") is not None:
        rows.append(("Size", f"{int(entry['size']):,} bytes ({e(human_size(int(entry['size'])), 40)})"))
    if entry.get("sha256"):
        rows.append(("SHA-256", f"<span class='hash'>{e(entry['sha256'], 64)}</span>"))
    rows.append(("Verdict", _badge(entry["severity"])))
    hf = entry.get("huggingface") or {}
    if hf.get("repo_id"):
        refs = ", ".join(str(r) for r in hf.get("refs") or [])
        rows.append(("Hugging Face", f"{e(hf['repo_id'], 300)} @ <span "
                                     f"class='hash'>{e(hf.get('revision', ''), 64)}"
                                     f"</span>" + (f" ({e(refs, 200)})" if refs else "")))
    if entry.get("review"):
        rows.append(("Decision", _decision(entry["review"])))
    head = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f"<section class='file' id='file-{index}'><h2>{_badge(entry['severity'])} {e(entry['path'], 300)}"
            f"</h2>\n<table>{head}</table>\n<h3>Findings ({len(entry['findings'])})</h3>\n"
            f"{_findings_table(entry, titles)}</section>")


def _overview(files: list[dict[str, Any]]) -> str:
    rows = []
    for i, entry in enumerate(files):
        review = entry.get("review") or {}
        decided = {"approve": "<span class='approve'>approved</span>",
                   "reject": "<span class='reject'>rejected</span>"}.get(str(review.get("decision")), "")
        size = f"{int(entry['size']):,}" if entry.get("size") is not None else ""
        rows.append(f"<tr><td><a "
                    f"href='#file-{i}'>{e(entry['path'], 500)}</a></td><td>{e(entry['format'], 60)}</td>"
                    f"<td class='num'>{size}</td><td class='hash'>{e(entry.get('sha256') or '', 64)}</td>"
                    f"<td>{_badge(entry['severity'])}</td><td class='num'>{len(entry['findings'])}</td>"
                    f"<td>{decided}</td></tr>")
    return ("<table><tr><th>File</th><th>Format</th><th>Bytes</th><th>SHA-256</th><th>Verdict</th>"
            "<th>Findings</th><th>Decision</th></tr>\n" + "\n".join(rows) + "</table>")


def _policy_note(extra: dict[str, Any] | None, files: list[dict[str, Any]]) -> str:
    policy = (extra or {}).get("policy")
    changed = sum(1 for f in files for x in f["findings"] if x.get("suppressed_by") or x.get("overridden_by"))
    if not policy:
        return "<p>No policy file.</p>" if not changed else ""
    return (f"<p>Policy file {e(policy.get('path') or '', 500)}, digest <span class='hash'>"
            f"{e(policy.get('digest', ''), 64)}</span>: {changed} finding(s) suppressed or re-rated, "
            f"each marked "
            "below with the entry that did it.</p>")


def render(files: list[dict[str, Any]], extra: dict[str, Any] | None = None, *,
           title: str | None = None) -> str:
    """The page for these report entries (the JSON report's file dicts). `extra` as for the JSON
    report: {"policy": {"path", "digest"}}."""
    titles = _rule_titles()
    counts: dict[str, int] = {}
    for entry in files:
        counts[entry["severity"]] = counts.get(entry["severity"], 0) + 1
    worst = max((Severity.parse(f["severity"]) for f in files), default=Severity.NONE).label
    summary = ", ".join(f"{n} {WORD[level].lower()}" for level, n in
                        sorted(counts.items(), key=lambda kv: -Severity.parse(kv[0])))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    heading = title or (f"Airlock report: {files[0]['path']}" if len(files) == 1 else "Airlock review record")
    sections = "\n".join(_file_section(i, entry, titles) for i, entry in enumerate(files))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>{e(heading, 200)}</title>
<style>{STYLE}</style></head><body>
<h1>{e(heading, 300)}</h1>
<p class="sub">Airlock {e(__version__, 40)}, {when}. The files were read, never loaded or executed.</p>
<p>{len(files)} file(s): {e(summary or "none", 200)}. Worst verdict: {_badge(worst)}</p>
{_policy_note(extra, files)}
{_overview(files) if len(files) > 1 else ""}
{sections}
</body></html>
"""


def render_result(result: ScanResult, extra_fields: dict[str, Any] | None = None) -> str:
    """The page for one scan result (the desktop app's export); `extra_fields` join its entry
    (sha256, size, review) when the app knows them."""
    from airlock.core.report.json_report import file_dict

    entry = file_dict(result)
    if result.size is not None:
        entry.setdefault("size", result.size)
    entry.update(extra_fields or {})
    return render([entry])
