"""Python source files: parsed with `ast` (never imported, never run) and checked for calls that load
models unsafely (airlock.core.code).

Recognised by content (an import, a def/class header, a python shebang...) and, for text that no
other format claims, by a `.py` name: a file Python would import is read as Python. Text that is not
valid Python gets a medium finding (it was not checked), never a pass.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable

from airlock.core.code import CODE, SYNTAX_ERROR
from airlock.core.code.locate import FileMap, Place, TextIndex
from airlock.core.code.reader import MAX_SOURCE_BYTES, DecodeProblem, decode_source, parse_python
from airlock.core.code.report import emit, location, where
from airlock.core.code.rules import CodeNotParsed
from airlock.core.code.walker import Unit, analyse
from airlock.core.context import ScanContext
from airlock.core.findings import LimitExceeded, Severity
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import FILE, Node

NAME = "python"
EXTENSIONS = (".py", ".pyw", ".pyi")
DOCUMENT_EXTENSIONS = (".md", ".markdown", ".rst", ".txt", ".html", ".htm", ".tex", ".adoc")

_STRONG = re.compile(
    rb"^(?:from[ \t]+\.*[\w.]*[ \t]+import[ \t(]"
    rb"|import[ \t]+[\w.]+(?:[ \t]+as[ \t]+\w+)?"
    rb"(?:[ \t]*,[ \t]*[\w.]+(?:[ \t]+as[ \t]+\w+)?)*[ \t]*(?:#.*)?\r?$"
    rb"|(?:async[ \t]+)?def[ \t]+\w+[ \t]*\(.*(?:\)[ \t]*(?:->[^:\n]+)?:[ \t]*(?:#.*)?|[(,])\r?$"
    rb"|class[ \t]+\w+[ \t]*(?:\([^)\n]*\))?[ \t]*:"
    rb"|if[ \t]+__name__[ \t]*==[ \t]*['\"]__main__['\"][ \t]*:)",
    re.MULTILINE,
)
# Lines no Python module starts with, but Kotlin, Scala, Java, C#, C, JavaScript... do.
_FOREIGN = re.compile(
    rb"^(?:package|fun|val|var|let|const|object|trait|namespace|using|function|public|"
    rb"private|#include|//|/\*)[ \t]",
    re.MULTILINE,
)


def sniff(head: bytes, size: int) -> int:
    return _score(head)


def sniff_source(source: Source) -> int:
    head = source.head()
    name = os.path.basename(source.member or source.name).lower()
    if name.endswith(DOCUMENT_EXTENSIONS) and not head.startswith(b"#!"):
        return 0  # prose with code samples (a README's ```python block starts lines with `import`)
    score = _score(head)
    if score or b"\0" in head:
        return score
    # Text no other format claims, named like a module Python imports: read it as Python (a file that
    # is not valid Python, or not valid UTF-8, then gets a finding instead of passing unread).
    return 5 if name.endswith(EXTENSIONS) else 0


def _score(head: bytes) -> int:
    if not head or b"\0" in head:
        return 0
    if head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]:
        return 60
    if _FOREIGN.search(head) or b"```" in head:
        return 0
    return 35 if _STRONG.search(head) else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = ctx.current or Node(FILE, source.name, offset=0, length=source.size, member=source.member)
    if source.size > MAX_SOURCE_BYTES:
        ctx.report(
            LimitExceeded,
            f"Python source of {source.size:,} bytes is over the {MAX_SOURCE_BYTES:,}-byte "
            "budget: not analysed",
            node=root,
            offset=0,
        )
        return root
    try:
        decoded = decode_source(source.read(0, source.size))
    except DecodeProblem as exc:
        ctx.report(CodeNotParsed, f"not read as Python: {exc.message}", node=root, offset=0,
                   severity=Severity.HIGH if exc.runs else None)
        return root
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
    return root


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
