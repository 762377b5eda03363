"""Jupyter notebooks (.ipynb): every code cell parsed with `ast` (never run) and checked for calls that
load models unsafely, the cells forming one module in order (an import in one cell resolves names in
later ones). IPython magics are blanked line by line (airlock.core.code.magics).

A finding names the cell, its line in the cell, and the line of the raw .ipynb that holds it (what
code scanning annotates); see airlock.core.code.locate.
"""

from __future__ import annotations

from airlock.core.code import rules  # noqa: F401 - rules register their ids
from airlock.core.context import ScanContext
from airlock.core.formats.contract import file_node, over_size_budget
from airlock.core.source import Source
from airlock.core.tree import Node

NAME = "notebook"
EXTENSIONS = (".ipynb",)

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024  # outputs (images, tables) make notebooks large; code stays small


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
    root = file_node(source, ctx)
    if over_size_budget(source, ctx, root, "notebook", MAX_NOTEBOOK_BYTES):
        return root
    from airlock.core.code.notebooks import read_cells  # the code checks only when code is read

    read_cells(source, ctx, root)
    return root
