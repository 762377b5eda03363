"""`airlock diff --format html`: the diff as one self-contained page, in the look of the review record
(airlock.core.report.html: its style, its escaping, no script, a Content-Security-Policy that loads
nothing). The same content as the text and JSON reports: every tensor with its status and
statistics, metadata, template diffs, pickle imports and calls, operators, B's findings, and why
the exit code is what it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airlock.core import __version__
from airlock.core.diff.render import stats_line
from airlock.core.report.html import STYLE, e

DIFF_STYLE = """
.identical { color: #6b7280; } .changed, .dtype-changed, .shape-changed { color: #b45309; font-weight: bold; }
.added { color: #15803d; font-weight: bold; } .removed, .not-compared { color: #991b1b; font-weight: bold; }
.renamed { color: #1d4ed8; font-weight: bold; } .security { color: #991b1b; } .errors { color: #991b1b; }
pre.diff { background: #f9fafb; border: 1px solid #e5e7eb; padding: .5em; }
"""


def _shape(side: dict[str, Any] | None) -> str:
    return e(f"{side['dtype']} [{', '.join(map(str, side['shape']))}]") if side else ""


def _tensor_rows(pair: dict[str, Any]) -> str:
    rows = []
    for t in pair["tensors"]:
        status = t["status"]
        change = stats_line(t["stats"]) if "stats" in t else ""
        if status == "renamed":
            change = f"was {t['from']}; same bytes"
        if t.get("note"):
            change += f" ({t['note']})"
        rows.append(f"<tr><td class='hash'>{e(t['name'], 300)}</td>"
                    f"<td class='{status.replace(' ', '-')}'>{e(status)}</td><td>{_shape(t.get('a'))}</td>"
                    f"<td>{_shape(t.get('b'))}</td><td>{e(change, 600)}</td></tr>")
    if not rows:
        return ""
    return ("<table><tr><th>tensor</th><th>status</th><th>A</th><th>B</th><th>change</th></tr>"
            + "".join(rows) + "</table>")


def _list(title: str, items: list[str]) -> str:
    if not items:
        return ""
    return f"<p><b>{e(title)}</b>: " + ", ".join(f"<code>{e(i, 200)}</code>" for i in items) + "</p>"


def _pair(index: int, pair: dict[str, Any]) -> str:
    a, b = pair.get("a"), pair.get("b")
    parts = [f"<div class='file' id='pair-{index}'>",
             f"<h2>{e(a or '(none)', 300)} ↔ {e(b or '(none)', 300)}</h2>",
             f"<p class='sub'>{e(pair['format'][0] or '-')} → {e(pair['format'][1] or '-')}; "
             f"B's verdict: {e(pair['severity'][1] or '-')}</p>", _tensor_rows(pair)]
    if "file_identical" in pair:
        same = "identical" if pair["file_identical"] else "changed (the bytes differ)"
        parts.append(f"<p>content: {same}</p>")
    meta = pair["metadata"]
    rows = [f"<tr><td class='added'>added</td><td>{e(k, 200)}</td><td></td><td>{e(v)}</td></tr>"
            for k, v in meta["added"].items()]
    rows += [f"<tr><td class='removed'>removed</td><td>{e(k, 200)}</td><td>{e(v)}</td><td></td></tr>"
             for k, v in meta["removed"].items()]
    rows += [f"<tr><td class='changed'>changed</td><td>{e(k, 200)}</td><td>{e(old)}</td>"
             f"<td>{e(new)}</td></tr>"
             for k, (old, new) in meta["changed"].items()]
    if rows:
        parts.append("<table><tr><th>metadata</th><th>key</th><th>A</th><th>B</th></tr>" + "".join(rows)
                     + "</table>")
    for t in pair["templates"]:
        cls = t["status"].replace(" ", "-")
        parts.append(f"<p>chat template <code>{e(t['key'], 200)}</code>: "
                     f"<span class='{cls}'>{e(t['status'])}</span></p>")
        if t.get("diff"):
            parts.append(f"<pre class='diff'>{e(t['diff'], 200_000)}</pre>")
    parts += [_list("pickle imports B adds", pair["imports_added"]),
              _list("pickle imports B drops", pair["imports_removed"]),
              _list("pickle calls B adds", pair["calls_added"]),
              _list("operators B adds", pair["operators"]["added"]),
              _list("operators B drops", pair["operators"]["removed"])]
    for f in pair["findings_b"]:
        parts.append(f"<p class='security'>B finding {e(f['severity'])} {e(f['rule'])}: "
                     f"{e(f['message'], 600)}</p>")
    for err in pair["errors"]:
        parts.append(f"<p class='errors'>{e(err, 600)}</p>")
    parts.append("</div>")
    return "\n".join(p for p in parts if p)


def render_html(doc: dict[str, Any]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    counts = ", ".join(f"{n:,} {s}" for s, n in doc["tensor_counts"].items() if n) or "no tensors"
    if doc["errors"]:
        verdict = "<p class='errors'><b>exit 2</b>: the diff is not complete:</p><ul>" + "".join(
            f"<li>{e(x, 600)}</li>" for x in doc["errors"]) + "</ul>"
    else:
        verdict = ""
    if doc["security"]:
        verdict += "<p class='security'><b>exit 1</b>: security-relevant changes in B:</p><ul>" + "".join(
            f"<li>{e(x, 600)}</li>" for x in doc["security"]) + "</ul>"
    if not doc["errors"] and not doc["security"]:
        verdict = ("<p><b>exit 0</b>: nothing security-relevant is new in B (no new imports or calls off "
                   "the allowlist, no new templates or operators, no finding at or above "
                   f"{e(doc['fail_on'])}).</p>")
    sections = "\n".join(_pair(i, p) for i, p in enumerate(doc["pairs"]))
    heading = f"Airlock diff: {doc['a']} ↔ {doc['b']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>{e(heading, 200)}</title>
<style>{STYLE}{DIFF_STYLE}</style></head><body>
<h1>{e(heading, 300)}</h1>
<p class="sub">Airlock {e(__version__, 40)}, {when}. A is the reference (reviewed), B the candidate. Both were
read, never loaded or executed; tensors were compared by {e(doc['hash'])} of their bytes first, values only
where the bytes differ.</p>
<p>Tensors: {e(counts)}.</p>
{verdict}
{sections}
</body></html>
"""
