"""Stand-alone chat templates: `chat_template.jinja` next to a model's config, and the `*.jinja`
files inference stacks ship (llama.cpp's models/templates/).

transformers saves a model's template as `chat_template.jinja` and renders it on every
`apply_chat_template`, as it does the one inside `tokenizer_config.json`; a walk to Python
internals there is the CVE-2024-34359 class. Recognised by content (Jinja markers and the words
every chat template uses) and by name: transformers loads `chat_template.jinja` (and the `*.jinja`
of a model folder) whatever it holds, so such a file is claimed when it is text, and analysed on
top of its own format when another format claims it (`check_by_name`, called by the scan). Parsed by
airlock.core.templates, never rendered.
"""

from __future__ import annotations

from airlock.core.context import ScanContext
from airlock.core.findings import LimitExceeded
from airlock.core.formats.contract import file_node
from airlock.core.formats.model_folder_context import is_named_template
from airlock.core.source import Source
from airlock.core.tree import TEMPLATE, Node

NAME = "chat_template"
EXTENSIONS = (".jinja", ".jinja2", ".j2")

MAX_TEMPLATE_BYTES = 1024 * 1024  # real templates are a few KiB; the longest tool-use ones ~30 KiB
_SNIFF_BYTES = 64 * 1024  # long templates define macros first: the chat words can come late
_MARKERS = (b"{%", b"{{")
_CHAT_WORDS = (b"add_generation_prompt", b"messages", b"bos_token", b"eos_token")


def sniff(head: bytes, size: int) -> int:
    return _score(head)


def sniff_source(source: Source) -> int:
    head = source.head()
    if _is_jinja(head) and source.size > len(head) and not _score(head):
        score = _score(source.read(0, _SNIFF_BYTES))  # read further only for text that looks like Jinja
    else:
        score = _score(head)
    if not score and b"\0" not in head and _by_name(source):
        return _SCORE  # loaded by name: any text is its template, however it starts
    return score


def _by_name(source: Source) -> bool:
    name = source.member or source.name
    return name.endswith(".jinja") and is_named_template(source)


def _is_jinja(text: bytes) -> bool:
    return b"\0" not in text and any(m in text for m in _MARKERS)


_SCORE = 15  # below every binary format and JSON: only text no other format claims is read as a template


def _score(text: bytes) -> int:
    return _SCORE if _is_jinja(text) and any(w in text for w in _CHAT_WORDS) else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    if _within_budget(source, ctx, root):
        node = root.child(TEMPLATE, "chat template", offset=0, length=source.size, member=source.member,
                          attrs={"size": source.size})
        _analyze(source, ctx, node)
    return root


def check_by_name(source: Source, ctx: ScanContext, root: Node) -> None:
    """Analyse a file that a loader renders by its name (`chat_template.jinja`, a model folder's
    `*.jinja`) when its content sniffed as another format: a name adds checks, never replaces them."""
    if root.attrs.get("format") != NAME and is_named_template(source) and _within_budget(source, ctx, root):
        _analyze(source, ctx, _by_name_node(root, source))


def _by_name_node(root: Node, source: Source) -> Node:
    """Where a template found by name goes: under the file's root (a detached node when the root's
    children are built lazily by its format; the findings still count for the file)."""
    node = Node(TEMPLATE, "chat template (by name)", offset=0, length=source.size, member=source.member,
                attrs={"size": source.size})
    return node if root.is_lazy else root.add(node)


def _within_budget(source: Source, ctx: ScanContext, root: Node) -> bool:
    if source.size > MAX_TEMPLATE_BYTES:
        ctx.report(LimitExceeded, f"chat template of {source.size:,} bytes is over the "
                   f"{MAX_TEMPLATE_BYTES:,}-byte budget: not analysed", node=root, offset=0)
        return False
    return True


def _analyze(source: Source, ctx: ScanContext, node: Node) -> None:
    from airlock.core.templates import analyze_template  # jinja2 only for templates

    text = source.read(0, source.size).decode("utf-8", "replace")
    analyze_template(text, ctx, node)
