"""Model cards: the README.md (or other Markdown) that ships with a model, read as text.

A model card is what a person reads before using a model; it is also what agents and retrieval
pipelines feed to language models. Invisible Unicode there (tag characters spelling an
instruction, zero-width characters, bidi overrides) or look-alike special tokens say one thing
to the reader and another to a model: airlock.core.hidden_text reports them (medium).

Markdown has no magic bytes, so this module claims UTF-8 text without NUL bytes whose name ends
in `.md` (or is README / MODEL_CARD), and sniffs below every other text format: a `.md` file
holding a pickle, JSON or a chat template is read as what it holds.
"""

from __future__ import annotations

import os

from airlock.core.context import ScanContext
from airlock.core.findings import LimitExceeded
from airlock.core.source import Source
from airlock.core.tree import FILE, TEXT, Node

NAME = "model_card"
EXTENSIONS = (".md", ".markdown")

MAX_CARD_BYTES = 8 * 1024 * 1024  # real cards are a few KiB to a few hundred KiB
_NAMES = ("readme", "model_card", "modelcard")


def sniff(head: bytes, size: int) -> int:
    return 0  # needs the name: see sniff_source


def sniff_source(source: Source) -> int:
    base = os.path.basename(source.member or source.name).lower()
    stem, ext = os.path.splitext(base)
    if ext not in EXTENSIONS and stem not in _NAMES:
        return 0
    head = source.head()
    if b"\0" in head:
        return 0
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut by the end of the head
            return 0
    return 12


def parse(source: Source, ctx: ScanContext) -> Node:
    root = ctx.current or Node(FILE, source.name, offset=0, length=source.size, member=source.member)
    if source.size > MAX_CARD_BYTES:
        ctx.report(LimitExceeded, f"model card of {source.size:,} bytes is over the {MAX_CARD_BYTES:,}-byte "
                   "budget: not checked for hidden text", node=root, offset=0)
        return root
    from airlock.core.hidden_text import report_hidden

    text = source.read(0, source.size).decode("utf-8", "replace")
    node = root.child(TEXT, "model card", offset=0, length=source.size, member=source.member,
                      attrs={"text": text, "lines": text.count("\n") + 1})
    spans = report_hidden(text, ctx, node, what="model card")
    if spans:
        node.attrs["marks"] = spans
    return root
