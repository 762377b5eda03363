"""A Python source file read into a tree: decoded (PEP 263), parsed, checked, findings placed.

airlock.core.formats.python_code imports this only when it parses a file, so that scanning a pickle
pays nothing for the code checks.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from airlock.core.code import CODE, SYNTAX_ERROR
from airlock.core.code.locate import FileMap, Place, TextIndex
from airlock.core.code.reader import DecodeProblem, decode_source, parse_python
from airlock.core.code.report import emit, location, where
from airlock.core.code.rules import CodeNotParsed
from airlock.core.code.walker import Unit, analyse
from airlock.core.context import ScanContext
from airlock.core.findings import LimitExceeded, Severity
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import Node


def read_python(source: Source, ctx: ScanContext, root: Node) -> None:
    """The file's code node under `root`, with a node and a finding for each risky call."""
    try:
        decoded = decode_source(source.read(0, source.size))
    except DecodeProblem as exc:
        ctx.report(CodeNotParsed, f"not read as Python: {exc.message}", node=root, offset=0,
                   severity=Severity.HIGH if exc.runs else None)
        return
    text = decoded.text
    index = TextIndex(text, decoded.encoding, decoded.bom)
    code = root.child(
        CODE,
        "Python source",
        offset=0,
        length=source.size,
        member=source.member,
        attrs={"text": text, "lines": text.count("\n") + 1, "encoding": decoded.encoding},
    )
    files = FileMap(index)
    tree = parse_unit(text, ctx, code, "", lambda line, col: files.place(0, char_at(index, line, col)))
    if tree is not None:
        emit(analyse([Unit(0, text, tree)], ctx.tick), files, {0: code}, ctx)


def parse_unit(
    text: str, ctx: ScanContext, holder: Node, what: str, place_of: Callable[[int, int], Place]
) -> ast.Module | None:
    """`parse_python`, with every way it can fail turned into a finding (None then). A syntax error
    gets a node placed at its line; `place_of(line, column)` places a 1-based line and column."""
    try:
        return parse_python(text)
    except SyntaxError as exc:
        line, column = exc.lineno or 1, exc.offset or 1
        place = place_of(line, column)
        node = holder.child(
            SYNTAX_ERROR,
            f"line {line}: {safe_text(str(exc.msg), 100)}",
            offset=place.offset,
            length=1,
            member=holder.member,
            attrs={"location": location(place, place), "where": where(place)},
        )
        ctx.report(
            CodeNotParsed,
            f"{what}line {line}, column {column}: not valid Python 3 ({exc.msg}): its calls were not checked",
            node=node,
        )
    except (ValueError, UnicodeError) as exc:
        ctx.report(
            CodeNotParsed, f"{what}not valid Python 3 ({exc}): its calls were not checked", node=holder
        )
    except (RecursionError, MemoryError) as exc:
        ctx.report(
            LimitExceeded,
            f"{what}nested too deeply for Python's parser ({type(exc).__name__}): not analysed",
            node=holder,
        )
    return None


def char_at(index: TextIndex, line: int, column: int) -> int:
    """Character index of a 1-based line and code-point column, clamped to the text."""
    start = index.starts[min(max(line, 1), len(index.starts)) - 1]
    return min(start + max(column, 1) - 1, len(index.text))
