"""A Jupyter notebook's JSON, with the position of every source string in the raw file.

Jupyter reads a notebook with `json.loads`; so does this module (same values, same "last duplicate
key wins"). A second pass over the same text, a token scanner that never builds values, records
where each cell's source strings start, so a finding can name the line of the `.ipynb` as stored.
Both nbformat 4 (`cells[].source`) and 3 (`worksheets[].cells[].input`) are read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

from airlock.core.errors import FormatError

END = "<end>"  # a path's last element for where a cell object ends
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]|[^\s\[\]{}:,"]+', re.DOTALL)


class Piece:
    """One source string: its value and the index of its opening quote in the raw text."""

    __slots__ = ("raw", "text")

    def __init__(self, text: str, raw: int) -> None:
        self.text = text
        self.raw = raw


class Cell:
    __slots__ = ("cell_type", "index", "language", "pieces", "raw", "raw_end")

    def __init__(self, index: int, cell_type: str, pieces: list[Piece], raw: int, language: str | None,
                 raw_end: int | None = None) -> None:
        self.index = index  # 0-based position among the notebook's cells
        self.cell_type = cell_type
        self.pieces = pieces
        self.raw = raw  # index of the cell object's "{" in the raw text
        self.raw_end = raw if raw_end is None else raw_end  # just after its "}"
        self.language = language  # nbformat 3 cells name their own language

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)


class Notebook:
    __slots__ = ("cells", "language", "nbformat")

    def __init__(self, cells: list[Cell], language: str | None, nbformat: object) -> None:
        self.cells = cells
        self.language = language
        self.nbformat = nbformat


def read_notebook(raw: str, tick: Callable[[], None]) -> Notebook:
    """Raises FormatError (with a character offset) for what Jupyter would refuse to open."""
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", exc.pos
        ) from None
    if not isinstance(doc, dict):
        raise FormatError(f"a notebook is a JSON object, not {type(doc).__name__}", 0)
    positions = _source_positions(raw, tick)
    prefix: tuple[Any, ...]
    if isinstance(doc.get("cells"), list):
        cell_list, prefix = doc["cells"], ("cells",)
    elif (
        isinstance(doc.get("worksheets"), list)
        and doc["worksheets"]
        and isinstance(doc["worksheets"][0], dict)
    ):
        cell_list, prefix = doc["worksheets"][0].get("cells"), ("worksheets", 0, "cells")
        if not isinstance(cell_list, list):
            raise FormatError("nbformat 3 worksheet without a cells list", 0)
    else:
        raise FormatError("no `cells` list (nbformat 4) or `worksheets` (nbformat 3)", 0)
    cells = []
    for i, entry in enumerate(cell_list):
        tick()
        if not isinstance(entry, dict):
            raise FormatError(
                f"cell {i} is {type(entry).__name__}, not an object", positions.get((*prefix, i), 0)
            )
        key = "source" if prefix == ("cells",) else "input"
        cell_type = entry.get("cell_type")
        if not isinstance(cell_type, str):
            raise FormatError(f"cell {i} has no cell_type", positions.get((*prefix, i), 0))
        cells.append(
            Cell(
                i,
                cell_type,
                _pieces(entry.get(key, ""), positions, (*prefix, i, key), i),
                positions.get((*prefix, i), 0),
                _str(entry.get("language")),
                positions.get((*prefix, i, END)),
            )
        )
    meta: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    language = None
    for holder, key in (("kernelspec", "language"), ("language_info", "name")):
        section = meta.get(holder)
        if isinstance(section, dict) and isinstance(section.get(key), str):
            language = section[key]
            break
    return Notebook(cells, language, doc.get("nbformat"))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _pieces(
    value: Any, positions: dict[tuple[Any, ...], int], path: tuple[Any, ...], index: int
) -> list[Piece]:
    strings = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if strings is None or not all(isinstance(s, str) for s in strings):
        raise FormatError(
            f"cell {index}'s source is not a string or a list of strings", positions.get(path[:-1], 0)
        )
    out = []
    for j, text in enumerate(strings):
        where = path if isinstance(value, str) else (*path, j)
        raw = positions.get(where)
        if raw is None:
            raise FormatError(f"cell {index}: source string {j} not located in the file", 0)
        out.append(Piece(text, raw))
    return out


def _source_positions(raw: str, tick: Callable[[], None]) -> dict[tuple[Any, ...], int]:
    """Path → index in `raw` of every cell object and every string under a cell's source/input.

    `raw` is valid JSON here (json.loads accepted it), so the scanner only tracks structure."""
    positions: dict[tuple[Any, ...], int] = {}
    path: list[Any] = []
    # One frame per open container: [is_object, key or index, expecting_key]
    frames: list[list[Any]] = []
    for n, match in enumerate(_TOKEN.finditer(raw)):
        if n & 0xFFF == 0:
            tick()
        token = match.group()
        first = token[0]
        if first in ",:":
            if first == "," and frames:
                frame = frames[-1]
                if frame[0]:
                    frame[2] = True
                else:
                    frame[1] += 1
                    path[-1] = frame[1]
            continue
        if first in "]}":
            frames.pop()
            path.pop()
            if len(path) in (2, 4) and _wanted(tuple(path)):
                positions[(*path, END)] = match.end()  # the end of a cell object
            continue
        if frames and frames[-1][0] and frames[-1][2]:  # an object key
            key = scanstring(raw, match.start() + 1)[0]
            frames[-1][1] = key
            frames[-1][2] = False
            path[-1] = key
            continue
        here = tuple(path)
        if _wanted(here):
            positions[here] = match.start()
        if first in "[{":
            frames.append([first == "{", 0, True])
            path.append(0 if first == "[" else None)
    return positions


def _wanted(path: tuple[Any, ...]) -> bool:
    """A cell object, or a source string (or list element) of a cell, v4 or v3."""
    if path[:1] == ("worksheets",) and len(path) >= 3 and path[2] == "cells":
        path = path[2:]
    elif path[:1] != ("cells",):
        return False
    return len(path) == 2 or (len(path) in (3, 4) and path[2] in ("source", "input"))


def raw_index(raw: str, quote: int, i: int) -> int:
    """Index in `raw` of character `i` of the JSON string whose opening quote is at `quote`."""
    pos = quote + 1
    end = raw.find('"', pos)
    if "\\" not in raw[pos : end if end >= 0 else len(raw)]:
        return pos + i  # no escapes before the closing quote: one raw character per character
    for _ in range(i):
        if raw[pos] != "\\":
            pos += 1
        elif raw[pos + 1] != "u":
            pos += 2
        elif _is_pair(raw, pos):
            pos += 12  # a surrogate pair is one character once decoded (as json combines it)
        else:
            pos += 6
    return pos


def _is_pair(raw: str, pos: int) -> bool:
    if not 0xD800 <= int(raw[pos + 2 : pos + 6], 16) <= 0xDBFF or raw[pos + 6 : pos + 8] != "\\u":
        return False
    return 0xDC00 <= int(raw[pos + 8 : pos + 12], 16) <= 0xDFFF
