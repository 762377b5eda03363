"""A chat template's text with the dangerous expressions marked. The template is never rendered.

Which template is risky is decided by core (its findings); this view only points at the spots:
spans the template reader recorded (attrs["marks"]: [(start, end), ...]) when present, otherwise
the sandbox-escape tokens of THREATS.md wherever they appear.
"""

from __future__ import annotations

import re

from PySide6.QtWidgets import QWidget

from airlock.core.findings import Severity
from airlock.core.text import safe_text
from airlock.core.tree import Node
from airlock.gui.details.text_view import StatusTextView

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


class TemplateView(StatusTextView):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Template text", parent)

    def show_node(self, node: Node) -> None:
        text = template_text(node)
        if text is None:
            self.status.setText("This template node carries no text.")
            self.text.show_text("")
            return
        marks = template_marks(node, text)
        severity = node.severity if node.severity >= Severity.LOW else Severity.MEDIUM
        if marks and node.severity >= Severity.HIGH:
            summary = f"{len(marks)} dangerous expression(s) marked. The template is parsed, never rendered."
        elif marks:
            summary = f"{len(marks)} expression(s) worth a look are marked. The template is never rendered."
        else:
            summary = "Template text (parsed by Airlock, never rendered)."
        self.status.setText(f"{safe_text(node.label, 120)}: {len(text):,} characters. {summary}")
        self.text.show_text(text, marks, severity)
