"""Where a position in parsed code is in the file on disk.

`ast` gives 1-based lines and 0-based columns counted in UTF-8 bytes of the line. Reports want the
line of the file as stored, a column in Unicode code points (SARIF `columnKind: unicodeCodePoints`)
and a byte offset (the hex view). For a `.py` file the text is the file; for a notebook, a cell's
line is a stretch of a JSON string in the `.ipynb`, so its position is mapped through the string's
escapes to the raw file's line and column.
"""

from __future__ import annotations

import bisect
import itertools
import re

from airlock.core.code.magics import CellText
from airlock.core.code.nbjson import Piece, raw_index

NEWLINE = re.compile(r"\r\n|\r|\n")  # CPython's newlines (others, e.g. \f or U+2028, are not)


class TextIndex:
    """Line starts of a text, and byte offsets of its characters in the encoded file."""

    def __init__(self, text: str, encoding: str = "utf-8", base: int = 0) -> None:
        self.text = text
        self.encoding = encoding
        self.base = base  # bytes before the text in the file (a BOM)
        self._starts: list[int] | None = None
        self._byte_starts: list[int] | None = None

    @property
    def starts(self) -> list[int]:
        """Index of the first character of each line (computed when first asked: most files need none)."""
        if self._starts is None:
            self._starts = [0]
            self._starts.extend(m.end() for m in NEWLINE.finditer(self.text))
        return self._starts

    def index(self, line: int, col_utf8: int) -> int:
        """Character index of an ast position (line 1-based, column in UTF-8 bytes)."""
        line = min(max(line, 1), len(self.starts))
        start = self.starts[line - 1]
        segment = self.text[start : start + col_utf8]
        if segment.isascii():
            return start + len(segment)
        return start + len(segment.encode("utf-8", "surrogatepass")[:col_utf8].decode("utf-8", "ignore"))

    def line_col(self, index: int) -> tuple[int, int]:
        """(1-based line, 0-based code-point column) of a character index."""
        line = bisect.bisect_right(self.starts, index)
        return line, index - self.starts[line - 1]

    def byte_offset(self, index: int) -> int:
        if self._byte_starts is None:
            offsets, total = [], self.base
            bounds = [*self.starts, len(self.text)]
            for a, b in itertools.pairwise(bounds):
                offsets.append(total)
                total += _encoded_len(self.text[a:b], self.encoding)
            offsets.append(total)
            self._byte_starts = offsets
        line, col = self.line_col(index)
        start = self.starts[line - 1]
        return self._byte_starts[line - 1] + _encoded_len(self.text[start : start + col], self.encoding)


def _encoded_len(text: str, encoding: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode(encoding, "surrogatepass" if encoding == "utf-8" else "replace"))


class Place:
    """A position as reports show it. Lines and columns are 1-based; columns in code points."""

    __slots__ = ("cell", "cell_column", "cell_line", "column", "line", "offset")

    def __init__(
        self,
        line: int,
        column: int,
        offset: int,
        cell: int | None = None,
        cell_line: int | None = None,
        cell_column: int | None = None,
    ) -> None:
        self.line = line
        self.column = column
        self.offset = offset
        self.cell = cell
        self.cell_line = cell_line
        self.cell_column = cell_column


class FileMap:
    """A `.py` file: unit 0's text is the file's text."""

    def __init__(self, index: TextIndex) -> None:
        self.file = index

    def unit_index(self, unit: int) -> TextIndex:
        return self.file

    def place(self, unit: int, char: int) -> Place:
        line, col = self.file.line_col(char)
        return Place(line, col + 1, self.file.byte_offset(char))

    def shown(self, unit: int, char: int) -> int:
        return char


class CellMap:
    """One notebook cell: its original text, the text given to the parser (magics blanked, same
    lines, with per-line column shifts) and the JSON strings it came from."""

    def __init__(self, index: int, pieces: list[Piece], parsed: CellText) -> None:
        self.index = index
        self.pieces = pieces
        self.piece_starts: list[int] = []
        total = 0
        for piece in pieces:
            self.piece_starts.append(total)
            total += len(piece.text)
        self.original = TextIndex("".join(p.text for p in pieces))
        self.parsed = TextIndex(parsed.text)
        self.shifts = parsed.shifts

    def original_char(self, parsed_char: int) -> int:
        """A character index in the parsed text → the same character in the cell's own text."""
        line, col = self.parsed.line_col(parsed_char)
        start = self.original.starts[min(line, len(self.original.starts)) - 1]
        return start + col + self.shifts.get(line, 0)

    def raw(self, cell_char: int, raw_text: str) -> int:
        """A character of the cell's text → its index in the raw .ipynb text."""
        if not self.pieces:
            return 0
        k = max(bisect.bisect_right(self.piece_starts, cell_char) - 1, 0)
        piece = self.pieces[k]
        return raw_index(raw_text, piece.raw, min(cell_char - self.piece_starts[k], len(piece.text)))


class NotebookMap:
    def __init__(self, raw: TextIndex, cells: dict[int, CellMap]) -> None:
        self.raw = raw
        self.cells = cells

    def unit_index(self, unit: int) -> TextIndex:
        return self.cells[unit].parsed

    def place(self, unit: int, char: int) -> Place:
        cell = self.cells[unit]
        own = cell.original_char(char)
        raw = cell.raw(own, self.raw.text)
        line, col = self.raw.line_col(raw)
        cell_line, cell_col = cell.original.line_col(own)
        return Place(line, col + 1, self.raw.byte_offset(raw), cell.index, cell_line, cell_col + 1)

    def shown(self, unit: int, char: int) -> int:
        """A character of the parsed cell → the same one in the cell's own text (the view shows that)."""
        return self.cells[unit].original_char(char)
