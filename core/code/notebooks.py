"""A notebook read into a tree of cells: its JSON read with positions, each code cell parsed (magics
blanked when needed), all cells checked as one module, findings placed in the raw .ipynb.

airlock.core.formats.notebook imports this only when it parses a notebook.
"""

from __future__ import annotations

from airlock.core.code import CELL, MAX_SOURCE_BYTES
from airlock.core.code.files import char_at, parse_unit
from airlock.core.code.locate import CellMap, NotebookMap, Place, TextIndex
from airlock.core.code.magics import CellText, rewrite
from airlock.core.code.nbjson import Piece, read_notebook
from airlock.core.code.reader import parse_python
from airlock.core.code.report import emit
from airlock.core.code.walker import Unit, analyse
from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import InertContent, LimitExceeded, NotInspected
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import Node

PYTHON_LANGUAGES = frozenset({"python", "python3", "python2", "ipython", "ipython3", "py"})


def read_cells(source: Source, ctx: ScanContext, root: Node) -> None:
    """A node per code cell under `root`, with a node and a finding for each risky call."""
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
        return
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
            rule = InertContent if shown.inert else NotInspected
            ctx.report(rule, f"cell {index + 1}: {shown.not_python}; not analysed", node=node)
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
