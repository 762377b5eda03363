"""Issues → tree nodes and findings, placed in the file (line, column, byte offset; notebook cell).

One node per risky call (several findings may sit on it), under the node that holds the code's
text (the module, or the notebook cell). Each node carries:
    attrs["location"]  the position for reports: line/column in the file as stored, and for
                       notebooks cell (0-based index), cell_line and cell_column (1-based);
    attrs["span"]      (start, end) character offsets in the parent's text, for the code view.
"""

from __future__ import annotations

import ast
from typing import Any, Protocol

from airlock.core.code import IMPORT
from airlock.core.code.checks import Issue
from airlock.core.code.locate import Place, TextIndex
from airlock.core.context import ScanContext
from airlock.core.text import safe_text
from airlock.core.tree import CALL, Node

MAX_SNIPPET = 120


class Mapper(Protocol):
    def unit_index(self, unit: int) -> TextIndex: ...

    def place(self, unit: int, char: int) -> Place: ...

    def shown(self, unit: int, char: int) -> int: ...


def location(place: Place, end: Place) -> dict[str, Any]:
    loc: dict[str, Any] = {
        "line": place.line,
        "column": place.column,
        "end_line": end.line,
        "end_column": end.column,
    }
    if place.cell is not None:
        loc.update(cell=place.cell, cell_line=place.cell_line, cell_column=place.cell_column)
    return loc


def where(place: Place) -> str:
    if place.cell is not None:
        return f"cell {place.cell + 1}, line {place.cell_line}, column {place.cell_column}"
    return f"line {place.line}, column {place.column}"


def emit(issues: list[Issue], mapper: Mapper, holders: dict[int, Node], ctx: ScanContext) -> None:
    """Attach every issue to a node under its unit's holder (the code or cell node)."""
    nodes: dict[int, Node] = {}
    for issue in sorted(issues, key=_order):
        ctx.tick()
        node = nodes.get(id(issue.node))
        if node is None:
            node = nodes[id(issue.node)] = _node(issue, mapper, holders[issue.unit])
        ctx.report(issue.rule, f"{node.attrs['where']}: {issue.message}", node=node, severity=issue.severity)


def _order(issue: Issue) -> tuple[int, int, int]:
    return issue.unit, getattr(issue.node, "lineno", 0), getattr(issue.node, "col_offset", 0)


def _node(issue: Issue, mapper: Mapper, holder: Node) -> Node:
    index = mapper.unit_index(issue.unit)
    start = index.index(getattr(issue.node, "lineno", 1), getattr(issue.node, "col_offset", 0))
    end_line = getattr(issue.node, "end_lineno", None)
    end = index.index(end_line, getattr(issue.node, "end_col_offset", 0) or 0) if end_line else start
    end = max(end, start)
    first, last = mapper.place(issue.unit, start), mapper.place(issue.unit, end)
    snippet = safe_text(" ".join(index.text[start : min(end, start + MAX_SNIPPET * 2)].split()), MAX_SNIPPET)
    kind = IMPORT if isinstance(issue.node, ast.stmt) else CALL
    at = f"line {first.cell_line}" if first.cell is not None else f"line {first.line}"
    return holder.child(
        kind,
        f"{at}: {snippet}",
        offset=first.offset,
        length=max(last.offset - first.offset, 1),
        attrs={
            "location": location(first, last),
            "where": where(first),
            "span": (mapper.shown(issue.unit, start), mapper.shown(issue.unit, end)),
        },
    )
