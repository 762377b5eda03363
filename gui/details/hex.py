"""A paged hex view: one page of bytes at a time, read from the file with pread (never a memory map)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from airlock.core.errors import AirlockError
from airlock.core.findings import Severity
from airlock.gui import theme

ROW = 16  # bytes per row when the view is wide enough
ROW_WIDTHS = (16, 8)  # the widest that fits; 8 fits the narrowest the page bar allows (~420 px)
PAGE = 4096  # bytes per page: 256 rows of 16, cheap to render (a multiple of every row width)
MAX_MARK = 1024  # a long node is marked by its first bytes: a wall of colour shows nothing
_ADDR = 10  # "0000abcd  " prefix width
_HEX_START = _ADDR

Reader = Callable[[int, int], bytes]


def ascii_start(row: int) -> int:
    """The column where the text column begins: after `row` "xx" separated by spaces, then two spaces."""
    return _ADDR + row * 3 - 1 + 2


def row_chars(row: int) -> int:
    """Characters in one full row of `row` bytes."""
    return ascii_start(row) + row


def format_rows(data: bytes, base: int, row: int = ROW) -> str:
    """Classic hex dump rows. Only printable ASCII is shown as itself; everything else is '.'."""
    lines = []
    for i in range(0, len(data), row):
        chunk = data[i : i + row]
        hexes = " ".join(f"{b:02x}" for b in chunk).ljust(row * 3 - 1)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{base + i:08x}  {hexes}  {text}")
    return "\n".join(lines)


class HexView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._reader: Reader | None = None
        self._size = 0
        self.page_start = 0
        self._mark: tuple[int, int] | None = None
        self.row = ROW  # bytes per row, chosen from the width (see _fit_row)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setFont(theme.monospace_font())
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setAccessibleName("Hex view")
        self.text.installEventFilter(self)  # resized: re-fit the row width
        self.prev_button = QPushButton("◀ Previous page")
        self.next_button = QPushButton("Next page ▶")
        self.goto = QLineEdit(placeholderText="Go to offset (decimal or 0x…)")
        self.goto.setMaximumWidth(220)
        self.position = QLabel()
        self.position.setTextFormat(Qt.TextFormat.PlainText)
        self.note = QLabel()
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        self.note.setWordWrap(True)
        self.prev_button.clicked.connect(self.previous_page)
        self.next_button.clicked.connect(self.next_page)
        self.goto.returnPressed.connect(self._goto_typed)
        bar = QHBoxLayout()
        bar.addWidget(self.prev_button)
        bar.addWidget(self.next_button)
        bar.addWidget(self.goto)
        bar.addWidget(self.position, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addLayout(bar)
        layout.addWidget(self.text, 1)
        self.clear("No file")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.text and event.type() == QEvent.Type.Resize:
            self._fit_row()
        return super().eventFilter(watched, event)

    def row_that_fits(self) -> int:
        """The widest row (16 or 8 bytes) whose full text fits the view without horizontal scrolling.
        The vertical scroll bar's width is always reserved, so showing it never flips the choice back."""
        metrics = self.text.fontMetrics()
        margin = 2 * self.text.document().documentMargin() + 2 * self.text.frameWidth()
        room = self.text.width() - margin - self.text.verticalScrollBar().sizeHint().width() - 2
        for row in ROW_WIDTHS:
            if metrics.horizontalAdvance("0" * row_chars(row)) <= room:
                return row
        return ROW_WIDTHS[-1]

    def _fit_row(self) -> None:
        row = self.row_that_fits()
        if row == self.row:
            return
        top = self.text.firstVisibleBlock().blockNumber() * self.row  # keep the first visible byte in view
        self.row = row
        if self._reader is not None:
            self._render(self.page_start)
            if self._mark is not None and self.page_start <= self._mark[0] < self.page_start + PAGE:
                self._scroll_to(self._mark[0])  # the marked bytes stay in view
            else:
                self._scroll_to_row(top // row)

    def clear(self, note: str = "") -> None:
        self._reader, self._size, self._mark = None, 0, None
        self.text.setPlainText("")
        self.note.setText(note)
        self.note.setVisible(bool(note))
        self._update_controls()

    def set_source(self, reader: Reader | None, size: int) -> None:
        self._reader, self._size = reader, size
        self.page_start = 0
        self._mark = None

    def show_at(self, offset: int | None, length: int | None = None, note: str = "", *,
                whole: bool = False) -> None:
        """Show the page holding `offset` with [offset, offset+length) marked (its first MAX_MARK bytes
        unless `whole`: a call is marked from the name it calls through the opcode calling it)."""
        self.note.setText(note)
        self.note.setVisible(bool(note))
        if self._reader is None or offset is None or not 0 <= offset <= max(self._size - 1, 0):
            self._mark = None
            self._render(0 if offset is None or self._reader is None else self.page_start)
            return
        cap = self._size if whole else MAX_MARK
        self._mark = (offset, max(1, min(length or 1, cap))) if length != 0 else None
        start = offset - offset % PAGE
        # Keep some bytes before the mark visible when it sits at the top of a page.
        if offset - start < 64 and start >= PAGE:
            start -= PAGE // 2
        self._render(start)
        self._scroll_to(offset)

    def next_page(self) -> None:
        if self.page_start + PAGE < self._size:
            self._render(self.page_start + PAGE)

    def previous_page(self) -> None:
        if self.page_start > 0:
            self._render(max(0, self.page_start - PAGE))

    def _goto_typed(self) -> None:
        text = self.goto.text().strip().replace(",", "").replace("_", "")
        try:
            offset = int(text, 16) if text.lower().startswith("0x") else int(text)
        except ValueError:
            self.note.setText(f"not an offset: {text[:40]!r}")
            self.note.setVisible(True)
            return
        self.show_at(min(max(offset, 0), max(self._size - 1, 0)), 1)

    def _render(self, start: int) -> None:
        self.page_start = max(0, start)
        if self._reader is None:
            self.text.setPlainText("")
            self._update_controls()
            return
        try:
            data = self._reader(self.page_start, min(PAGE, max(self._size - self.page_start, 0)))
        except (AirlockError, OSError) as exc:  # the file shrank or went away since the scan
            data = b""
            self.note.setText(f"cannot read the file any more: {exc}")
            self.note.setVisible(True)
        self.text.setPlainText(format_rows(data, self.page_start, self.row))
        self._highlight()
        self._update_controls()

    def _highlight(self) -> None:
        selections = []
        if self._mark is not None:
            mark_start, mark_len = self._mark
            color = QColor(theme.BADGE[Severity.HIGH])
            color.setAlpha(90)
            fmt = QTextCharFormat()
            fmt.setBackground(color)
            doc = self.text.document()
            end = min(mark_start + mark_len, self.page_start + PAGE)
            row, text_start = self.row, ascii_start(self.row)
            for pos in range(max(mark_start, self.page_start), end):
                rel = pos - self.page_start
                block = doc.findBlockByNumber(rel // row)
                col = rel % row
                for at, width in ((_HEX_START + col * 3, 2), (text_start + col, 1)):
                    cursor = QTextCursor(block)
                    cursor.setPosition(block.position() + at)
                    cursor.setPosition(block.position() + at + width, QTextCursor.MoveMode.KeepAnchor)
                    sel = QTextEdit.ExtraSelection()
                    sel.cursor = cursor
                    sel.format = fmt
                    selections.append(sel)
        self.text.setExtraSelections(selections)

    def _scroll_to(self, offset: int) -> None:
        row = (offset - self.page_start) // self.row
        block = self.text.document().findBlockByNumber(max(row - 4, 0))
        cursor = QTextCursor(block)
        self.text.setTextCursor(cursor)
        self.text.centerCursor()

    def _scroll_to_row(self, row: int) -> None:
        self.text.setTextCursor(QTextCursor(self.text.document().findBlockByNumber(row)))
        self.text.verticalScrollBar().setValue(row)

    @property
    def marked(self) -> tuple[int, int] | None:
        return self._mark

    def _update_controls(self) -> None:
        has = self._reader is not None and self._size > 0
        self.prev_button.setEnabled(has and self.page_start > 0)
        self.next_button.setEnabled(has and self.page_start + PAGE < self._size)
        self.goto.setEnabled(has)
        if has:
            end = min(self.page_start + PAGE, self._size)
            self.position.setText(f"bytes {self.page_start:,}–{end - 1:,} of {self._size:,}")
        else:
            self.position.setText("")
