"""A chat template's text (or a model card's) with the risky spots marked, and its drift from the
closest known template. Nothing is rendered.

Which template is risky is decided by core (its findings); this view only points at the spots:
spans the template reader recorded (attrs["marks"]: sandbox escapes, injected text, hidden
Unicode, content rewrites) when present, otherwise the sandbox-escape tokens of THREATS.md
wherever they appear. Below the text, the unified diff core computed against the closest
catalogued template (attrs["drift"]), with added lines marked.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from airlock.core.findings import Severity
from airlock.core.text import safe_text
from airlock.core.tree import Node
from airlock.gui.details.text_view import MarkedText, StatusTextView

ESCAPE_TOKENS = re.compile(
    r"__(?:class|subclasses|globals|init|builtins|mro|base|bases|import|dict|getattribute|code|func)__"
    r"|\b(?:popen|system|eval|exec|subprocess|os\.)\b"
)


def template_text(node: Node) -> str | None:
    for key in ("text", "template", "value"):
        value = node.attrs.get(key)
        if isinstance(value, str):
            return value
    return None


def template_marks(node: Node, text: str) -> list[tuple[int, int]]:
    recorded = node.attrs.get("marks")
    if isinstance(recorded, list | tuple):
        pairs = (m for m in recorded if isinstance(m, list | tuple) and len(m) == 2)
        spans = [(s, e) for s, e in pairs
                 if isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(text)]
        if spans:
            return spans
    return [(m.start(), m.end()) for m in ESCAPE_TOKENS.finditer(text)][:500]


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

    def show_node(self, node: Node) -> None:
        text = template_text(node)
        if text is None:
            self.status.setText("This node carries no text.")
            self.text.show_text("")
            self.drift_panel.setVisible(False)
            return
        marks = template_marks(node, text)
        severity = node.severity if node.severity >= Severity.LOW else Severity.MEDIUM
        what = "template" if node.kind == "template" else "text"
        parts = [f"{safe_text(node.label, 120)}: {len(text):,} characters."]
        if marks and node.severity >= Severity.HIGH:
            parts.append(f"{len(marks)} dangerous spot(s) marked.")
        elif marks:
            parts.append(f"{len(marks)} spot(s) worth a look are marked.")
        known = node.attrs.get("known_template")
        if isinstance(known, str):
            parts.append(f"Known template: {safe_text(known, 80)}.")
        parts.append(f"The {what} is read by Airlock, never rendered.")
        self.status.setText(" ".join(parts))
        self.text.show_text(text, marks, severity)
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
