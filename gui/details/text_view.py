"""Plain text from a file, shown line by line with control and bidi characters escaped, and marks."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QTextEdit, QVBoxLayout, QWidget

from airlock.core.findings import Severity
from airlock.core.text import escape
from airlock.gui import theme

MAX_CHARS = 400_000  # a view, not an editor: longer texts are cut and the cut is said


def multiline(text: str, max_chars: int = MAX_CHARS) -> tuple[str, list[int]]:
    """Escape each line (keeping line breaks) and return the text with a map old→new offsets.

    The map lets marks computed on the original text land on the escaped one.
    """
    cut = len(text) > max_chars
    body = text[:max_chars]
    plain = body.replace("\n", "").replace("\t", "")
    if plain.isascii() and plain.isprintable():
        suffix = f"\n… cut: {len(text) - max_chars:,} more characters not shown" if cut else ""
        return body + suffix, list(range(len(body) + 1))
    out: list[str] = []
    mapping: list[int] = []
    pos = 0
    for ch in body:
        mapping.append(pos)
        piece = ch if ch in "\n\t" else escape(ch)
        out.append(piece)
        pos += len(piece)
    mapping.append(pos)
    result = "".join(out)
    if cut:
        result += f"\n… cut: {len(text) - max_chars:,} more characters not shown"
    return result, mapping


class MarkedText(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setFont(theme.monospace_font())
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.marks: list[tuple[int, int]] = []

    def show_text(self, text: str, marks: list[tuple[int, int]] | None = None,
                  severity: Severity = Severity.CRITICAL) -> None:
        """`marks` are (start, end) character spans in `text` (before escaping)."""
        shown, mapping = multiline(text)
        self.setPlainText(shown)
        limit = len(mapping) - 1
        self.marks = [(mapping[min(s, limit)], mapping[min(e, limit)]) for s, e in marks or [] if e > s]
        color = QColor(theme.BADGE[severity])
        color.setAlpha(120)
        fmt = QTextCharFormat()
        fmt.setBackground(color)
        fmt.setFontUnderline(True)
        selections = []
        for start, end in self.marks:
            cursor = QTextCursor(self.document())
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            sel = QTextEdit.ExtraSelection()
            sel.cursor = cursor
            sel.format = fmt
            selections.append(sel)
        self.setExtraSelections(selections)
        if self.marks:
            cursor = QTextCursor(self.document())
            cursor.setPosition(self.marks[0][0])
            self.setTextCursor(cursor)
            self.centerCursor()


class StatusTextView(QWidget):
    """A plain-text status line above a MarkedText: the decompiled and template views."""

    def __init__(self, accessible_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setWordWrap(True)
        self.text = MarkedText()
        self.text.setAccessibleName(accessible_name)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status)
        layout.addWidget(self.text, 1)
