"""Python source or a notebook cell, with its risky calls marked. The code is shown, never run.

Which call is risky is decided by core (airlock.core.code): each call node carries the span it
covers in its module's or cell's text (attrs["span"]); this view only marks those spans.
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from airlock.core.code import CELL, CODE
from airlock.core.findings import Severity
from airlock.core.text import safe_text
from airlock.core.tree import Node
from airlock.gui.details.text_view import StatusTextView


def code_holder(node: Node) -> Node | None:
    """The module or cell node whose text shows this node, if any."""
    current: Node | None = node
    while current is not None:
        if current.kind in (CODE, CELL) and isinstance(current.attrs.get("text"), str):
            return current
        current = current.parent
    return None


def _span(node: Node, size: int) -> tuple[int, int] | None:
    span = node.attrs.get("span")
    if isinstance(span, list | tuple) and len(span) == 2 and all(isinstance(v, int) for v in span):
        start, end = span
        if 0 <= start <= end <= size:
            return (start, max(end, start + 1))
    return None


class CodeView(StatusTextView):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Code", parent)

    def show_node(self, node: Node) -> None:
        holder = code_holder(node)
        if holder is None:
            self.status.setText("This node carries no code.")
            self.text.show_text("")
            return
        text: str = holder.attrs["text"]
        risky = [c for c in holder.children() if c.severity > Severity.INFO]
        targets = [node] if node is not holder else risky
        marks = [span for span in (_span(t, len(text)) for t in targets) if span is not None]
        worst = max((t.severity for t in targets), default=Severity.NONE)
        what = safe_text(holder.label, 120)
        if node is not holder:
            summary = f"{safe_text(node.label, 160)} ({node.severity.label})"
        elif marks:
            summary = f"{len(marks)} risky call(s) marked"
        else:
            summary = "no risky call"
        self.status.setText(f"{what}: {summary}. The code is read with Python's parser, never run.")
        self.text.show_text(text, marks, worst if worst > Severity.INFO else Severity.MEDIUM)
