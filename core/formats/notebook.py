"""Jupyter notebooks (.ipynb): every code cell parsed with `ast` (never run) and checked for calls that
load models unsafely, the cells forming one module in order (an import in one cell resolves names in
later ones). IPython magics are blanked line by line (airlock.core.code.magics).

A finding names the cell, its line in the cell, and the line of the raw .ipynb that holds it (what
code scanning annotates); see airlock.core.code.locate.
"""

from __future__ import annotations

from airlock.core.code import CELL
from airlock.core.code.locate import CellMap, NotebookMap, Place, TextIndex
from airlock.core.code.magics import CellText, rewrite
from airlock.core.code.nbjson import Piece, read_notebook
from airlock.core.code.reader import MAX_SOURCE_BYTES, parse_python
from airlock.core.code.report import emit
from airlock.core.code.walker import Unit, analyse
from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import LimitExceeded, NotInspected
from airlock.core.formats.python_code import char_at, parse_unit
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import FILE, Node

NAME = "notebook"
EXTENSIONS = (".ipynb",)

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024  # outputs (images, tables) make notebooks large; code stays small
PYTHON_LANGUAGES = frozenset({"python", "python3", "python2", "ipython", "ipython3", "py"})


def sniff(head: bytes, size: int) -> int:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text[:1] != b"{":
        return 0
    if b'"cells"' in head and (b'"cell_type"' in head or b'"nbformat"' in head):
        return 70  # above any JSON object (20) and a SafeTensors index (60-90 needs "weight_map")
    if b'"worksheets"' in head and b'"nbformat"' in head:
        return 70
    return 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = ctx.current or Node(FILE, source.name, offset=0, length=source.size, member=source.member)
    if source.size > MAX_NOTEBOOK_BYTES:
        ctx.report(
            LimitExceeded,
            f"notebook of {source.size:,} bytes is over the {MAX_NOTEBOOK_BYTES:,}-byte budget: not analysed",
            node=root,
            offset=0,
        )
        return root
    data = source.read(0, source.size)
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        raw = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"not UTF-8 at byte {bom + exc.start} (Jupyter reads notebooks as UTF-8 JSON)", bom + exc.start
        ) from None
    notebook = read_notebook(raw, ctx.tick)
    raw_index = TextIndex(raw, "utf-8", bom)
    root.attrs.update(cells=len(notebook.cells), nbformat=safe_text(str(notebook.nbformat), 20))
    language = (notebook.language or "python").lower()
    if language not in PYTHON_LANGUAGES:
        ctx.report(
            NotInspected,
            f"a {safe_text(notebook.language or '', 40)} notebook: its cells are not "
            "Python and were not analysed",
            node=root,
            offset=0,
        )
        return root
    units: list[Unit] = []
    holders: dict[int, Node] = {}
    maps: dict[int, CellMap] = {}
    total = 0
    for cell in notebook.cells:
        ctx.tick()
        if cell.cell_type != "code":
            continue
        text = cell.text
        total += len(text)
        if total > MAX_SOURCE_BYTES:
            ctx.report(
                LimitExceeded,
                f"more than {MAX_SOURCE_BYTES:,} characters of code: cells from "
                f"{cell.index + 1} on were not analysed",
                node=root,
                offset=0,
            )
            break
        offset = raw_index.byte_offset(cell.raw)
        first = safe_text(next((line.strip() for line in text.splitlines() if line.strip()), ""), 60)
        node = root.child(
            CELL,
            f"cell {cell.index + 1}: {first}" if first else f"cell {cell.index + 1} (empty)",
            offset=offset,
            length=max(raw_index.byte_offset(cell.raw_end) - offset, 1),
            member=source.member,
            attrs={"index": cell.index, "text": text, "lines": text.count("\n") + 1},
        )
        if cell.language is not None and cell.language.lower() not in PYTHON_LANGUAGES:
            ctx.report(
                NotInspected,
                f"cell {cell.index + 1} is {safe_text(cell.language, 40)}, not Python: not analysed",
                node=node,
            )
            continue
        parsed = _parse_cell(text, cell.index, cell.pieces, ctx, node, raw_index, maps)
        if parsed is not None:
            units.append(parsed)
            holders[cell.index] = node
    emit(analyse(units, ctx.tick), NotebookMap(raw_index, maps), holders, ctx)
    return root


def _parse_cell(
    text: str,
    index: int,
    pieces: list[Piece],
    ctx: ScanContext,
    node: Node,
    raw_index: TextIndex,
    maps: dict[int, CellMap],
) -> Unit | None:
    try:
        tree = parse_python(text)
        shown = CellText(text)
    except (SyntaxError, ValueError, UnicodeError, RecursionError, MemoryError):
        shown = rewrite(text)  # IPython magics: blank them and try again
        if shown.not_python is not None:
            ctx.report(NotInspected, f"cell {index + 1}: {shown.not_python}; not analysed", node=node)
            return None
        cell_map = CellMap(index, pieces, shown)
        mapper = NotebookMap(raw_index, {index: cell_map})

        def place_of(line: int, column: int) -> Place:
            return mapper.place(index, char_at(cell_map.parsed, line, column))

        parsed_tree = parse_unit(shown.text, ctx, node, f"cell {index + 1}, ", place_of)
        if parsed_tree is None:
            return None
        tree = parsed_tree
    maps[index] = CellMap(index, pieces, shown)
    return Unit(index, shown.text, tree)
