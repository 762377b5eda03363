"""What "escaped and elided" means, checked on a scan result: used by the hostile-text tests and by
the scanning worker of the property tests (so every fuzzed file is checked too).

Every node label, every string attribute, every line of the text report and every string of the
JSON and SARIF documents must be printable (no control, bidi, zero-width or surrogate characters)
and bounded. A template node's `text` attribute holds the raw template for the GUI's template view,
and a code or cell node's `text` the raw source for the code view; both views show it as plain
text, escaped line by line: these attributes are bounded, not escaped. So are a template's `drift`
diff and a model card's `text` (shown in the Template/Text tab).
"""

from __future__ import annotations

import json
from typing import Any

MAX_LABEL = 2_000  # a node label is a few escaped, elided previews
MAX_LINE = 20_000  # a report line or JSON string: a message with a few previews
MAX_NODES = 20_000
# (node kind, attribute) shown verbatim in a plain-text view: a template's raw text and its drift diff,
# Python code and notebook cells, TorchScript code (each line escaped, joined by newlines:
# core/formats/torchscript_code.py), and a model card's text.
RAW_ATTRS = {("template", "text"), ("template", "drift"), ("code", "text"), ("cell", "text"), ("text", "text")}
MAX_RAW = 10 * 1024**2


def unsafe(s: str) -> list[str]:
    return sorted({repr(c) for c in s if not c.isprintable()})


# Reported gaps, tolerated where `known_gaps=True` (the fuzzing worker) so that one known bug does
# not mask every other finding; test_hostile_text.py keeps an xfail(strict) test for each.
KNOWN_GAPS: set[tuple[str, str]] = set()  # (node kind, attr); none open: pickle's callable/written fixed
# Fields that must stay exact for machines: the JSON `path` is the argument as given (JSON escapes it).
EXACT_KEYS = frozenset({"path"})
# SARIF rule help in Markdown: Airlock's own text (never from a file), paragraphs separated by newlines.
SARIF_OWN_TEXT = frozenset({"markdown"})


def problems(result: Any, *, known_gaps: bool = False) -> list[str]:
    """Everything shown for this result that is not escaped or not elided."""
    from airlock.core.report import json_report, sarif, text

    out: list[str] = []
    for i, node in enumerate(result.root.walk(expand_lazy=True)):
        if i > MAX_NODES:
            break
        if unsafe(node.label):
            out.append(f"label {node.label[:120]!r} shows {unsafe(node.label)}")
        if len(node.label) > MAX_LABEL:
            out.append(f"label of {len(node.label):,} chars: {node.label[:80]!r}")
        for key, value in node.attrs.items():
            if not isinstance(value, str):
                continue
            if (node.kind, key) in RAW_ATTRS:
                if len(value) > MAX_RAW:
                    out.append(f"raw attr {key} of {len(value):,} chars")
            elif unsafe(value) and not (known_gaps and (node.kind, key) in KNOWN_GAPS):
                out.append(f"{node.kind} attr {key}={value[:120]!r} shows {unsafe(value)}")
    entry = json_report.file_dict(result)
    for line in text.render([entry], colour=False).splitlines():
        if unsafe(line):
            out.append(f"text report line {line[:160]!r} shows {unsafe(line)}")
        if len(line) > MAX_LINE:
            out.append(f"text report line of {len(line):,} chars: {line[:120]!r}")
    for name, rendered in (("JSON", json_report.render([entry])), ("SARIF", sarif.render([entry]))):
        try:
            rendered.encode("utf-8", "strict")
            doc = json.loads(rendered)
        except ValueError as exc:
            out.append(f"{name} is not valid UTF-8 JSON: {exc}")
            continue
        for s in strings(doc, EXACT_KEYS if name == "JSON" else SARIF_OWN_TEXT):
            if unsafe(s):
                out.append(f"{name} string {s[:120]!r} shows {unsafe(s)}")
            if len(s) > MAX_LINE:
                out.append(f"{name} string of {len(s):,} chars: {s[:80]!r}")
    return out


def strings(value: Any, skip: frozenset[str] = frozenset()) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in skip for s in (*strings(k), *strings(v, skip))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v, skip)]
    return []
