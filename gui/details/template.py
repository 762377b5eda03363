"""A chat template's text (or a model card's), word-wrapped, with what the findings point at marked,
and its drift from the closest known template. Nothing is rendered.

Which template is risky is decided by core (its findings); this view only shows where they point:
spans the reader recorded (attrs["marks"]: sandbox escapes, injected text, hidden Unicode, content
rewrites) when present, else the expression each finding quotes on the line it names ("chat template
line 3: `x.__class__` …"), else that whole line. A template no finding points into has no marks,
however it reads. Below the text, the unified diff core computed against the closest catalogued
template (attrs["drift"]), with added lines marked.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QSplitter, QVBoxLayout, QWidget

from airlock.core.findings import Severity
from airlock.core.text import safe_text
from airlock.core.tree import Node
from airlock.gui.details.text_view import MarkedText, StatusTextView

_WHERE = re.compile(r"\bline (\d+)\b(?:[^`]*`(.+?)`)?", re.DOTALL)
MAX_MARKS = 500


def template_text(node: Node) -> str | None:
    for key in ("text", "template", "value"):
        value = node.attrs.get(key)
        if isinstance(value, str):
            return value
    return None


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts += [m.end() for m in re.finditer("\n", text)]
    return starts


def _line_span(text: str, starts: list[int], line: int) -> tuple[int, int] | None:
    if not 1 <= line <= len(starts):
        return None
    start = starts[line - 1]
    end = starts[line] - 1 if line < len(starts) else len(text)
    body = text[start:end]
    lead = len(body) - len(body.lstrip())
    trail = len(body.rstrip())
    return (start + lead, start + trail) if trail > lead else None


def template_marks(node: Node, text: str) -> list[tuple[int, int]]:
    """Spans of `text` that the node's findings point at (see the module docstring)."""
    recorded = node.attrs.get("marks")
    if isinstance(recorded, list | tuple):
        pairs = (m for m in recorded if isinstance(m, list | tuple) and len(m) == 2)
        spans = [(s, e) for s, e in pairs
                 if isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(text)]
        if spans:
            return spans
    starts = _line_starts(text)
    marks: set[tuple[int, int]] = set()
    pointed: set[int] = set()
    for finding in node.findings:
        where = _WHERE.search(str(getattr(finding, "message", "")))
        if where is None:
            continue
        line = int(where.group(1))
        span = _line_span(text, starts, line)
        if span is None:
            continue
        pointed.add(line)
        expr = where.group(2)
        at = text.find(expr, span[0], span[1]) if expr else -1
        marks.add((at, at + len(expr)) if expr and at >= 0 else span)
    lines = node.attrs.get("findings_lines")
    for line in lines if isinstance(lines, list) else []:
        if isinstance(line, int) and line not in pointed and (span := _line_span(text, starts, line)):
            marks.add(span)
    return sorted(marks)[:MAX_MARKS]


def drift_marks(diff: str) -> list[tuple[int, int]]:
    """The added lines of a unified diff ("+…", not the "+++" header), as spans to mark."""
    spans = []
    pos = 0
    for line in diff.splitlines(keepends=True):
        if line.startswith("+") and not line.startswith("+++"):
            spans.append((pos, pos + len(line.rstrip("\n"))))
        pos += len(line)
    return spans


class TemplateView(StatusTextView):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Template text", parent)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.removeWidget(self.text)
        self.drift_label = QLabel()
        self.drift_label.setTextFormat(Qt.TextFormat.PlainText)
        self.drift_label.setWordWrap(True)
        self.drift = MarkedText()
        self.drift.setAccessibleName("Drift from the closest known template")
        lower = QWidget()
        box = QVBoxLayout(lower)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.drift_label)
        box.addWidget(self.drift, 1)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(self.text)
        self.split.addWidget(lower)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        layout.addWidget(self.split, 1)
        self.drift_panel = lower
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)  # templates are long lines

    def show_node(self, node: Node) -> None:
        text = template_text(node)
        if text is None:
            self.status.setText("This node carries no text.")
            self.text.show_text("")
            self.drift_panel.setVisible(False)
            return
        marks = template_marks(node, text)
        worst = max((f.severity for f in node.findings), default=Severity.NONE)
        what = "template" if node.kind == "template" else "text"
        parts = [f"{safe_text(node.label, 120)}: {len(text):,} characters."]
        if marks and worst >= Severity.HIGH:
            parts.append(f"{len(marks)} dangerous expression(s) marked.")
        elif marks:
            parts.append(f"{len(marks)} spot(s) a finding points at are marked.")
        else:
            parts.append("No finding points into it.")
        known = node.attrs.get("known_template")
        if isinstance(known, str):
            parts.append(f"Known template: {safe_text(known, 80)}.")
        parts.append(f"The {what} is read by Airlock, never rendered.")
        self.status.setText(" ".join(parts))
        self.text.show_text(text, marks, worst if worst >= Severity.LOW else Severity.MEDIUM)
        self._show_drift(node)

    def _show_drift(self, node: Node) -> None:
        diff = node.attrs.get("drift")
        closest = node.attrs.get("closest_template")
        if not isinstance(diff, str) or not diff:
            self.drift_panel.setVisible(False)
            self.drift.show_text("")
            return
        added = sum(1 for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in diff.splitlines() if line.startswith("-") and not line.startswith("---"))
        family = safe_text(closest, 80) if isinstance(closest, str) else "the closest known template"
        self.drift_label.setText(f"Drift from {family}: {added} line(s) added (marked), {removed} removed. "
                                 "Lines are tags and text runs, whitespace collapsed.")
        self.drift_panel.setVisible(True)
        self.drift.show_text(diff, drift_marks(diff), Severity.MEDIUM)
