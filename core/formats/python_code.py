"""Python source files: parsed with `ast` (never imported, never run) and checked for calls that load
models unsafely (airlock.core.code).

Recognised by content (an import, a def/class header, a python shebang...) and, for text that no
other format claims, by a `.py` name: a file Python would import is read as Python. Text that is not
valid Python gets a medium finding (it was not checked), never a pass.
"""

from __future__ import annotations

import os
import re

from airlock.core.code import MAX_SOURCE_BYTES, rules  # noqa: F401 - rules register their ids
from airlock.core.context import ScanContext
from airlock.core.formats.contract import file_node, over_size_budget
from airlock.core.source import Source
from airlock.core.tree import Node

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
    if score or b"\0" in head or source.size == 0:
        return score  # an empty file is the scanner's to report (never "no findings")
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
    root = file_node(source, ctx)
    if over_size_budget(source, ctx, root, "Python source", MAX_SOURCE_BYTES):
        return root
    from airlock.core.code.files import read_python  # the code checks only when code is read

    read_python(source, ctx, root)
    return root
