"""Model cards: the README.md (or other Markdown) that ships with a model, checked for hidden text.

A model card is what a person reads before using a model; it is also what agents and retrieval
pipelines feed to language models. Invisible Unicode there (tag characters spelling an
instruction, zero-width characters, bidi overrides) or look-alike special tokens say one thing to
the reader and another to a model: airlock.core.hidden_text reports them (medium).

Content decides the format: a card reads as UTF-8 text (formats/inert.py), or as YAML when it
starts with Hugging Face's `---` front matter (formats/yaml_config.py). After either, the scan calls
`check` for a file named like a card (`*.md`, README), which adds the card's text to the tree (for
the GUI's Text tab, with the hidden runs marked) and reports hidden text.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from airlock.core.findings import LimitExceeded
from airlock.core.source import Source
from airlock.core.tree import TEXT, Node

if TYPE_CHECKING:  # the context calls back into the dispatcher, which calls us: a type only here
    from airlock.core.context import ScanContext

EXTENSIONS = (".md", ".markdown")
TEXT_FORMATS = frozenset({"text", "yaml"})  # what a card's content reads as
MAX_CARD_BYTES = 8 * 1024 * 1024  # real cards are a few KiB to a few hundred KiB
_NAMES = ("readme", "model_card", "modelcard")


def is_model_card(name: str) -> bool:
    stem, ext = os.path.splitext(os.path.basename(name).lower())
    return ext in EXTENSIONS or stem in _NAMES


def check(source: Source, ctx: ScanContext, root: Node) -> None:
    """Hidden text in a model card (UTF-8 text the caller already recognised)."""
    if not is_model_card(source.member or source.name):
        return
    if source.size > MAX_CARD_BYTES:
        ctx.report(LimitExceeded, f"model card of {source.size:,} bytes is over the {MAX_CARD_BYTES:,}-byte "
                   "budget: not checked for hidden text", node=root, offset=0)
        return
    from airlock.core.hidden_text import report_hidden

    text = source.read(0, source.size).decode("utf-8", "replace")
    node = root.child(TEXT, "model card", offset=0, length=source.size, member=source.member,
                      attrs={"text": text, "lines": text.count("\n") + 1})
    spans = report_hidden(text, ctx, node, what="model card")
    if spans:
        node.attrs["marks"] = spans
