"""Invisible and deceptive text: what a reader of a template, config or model card cannot see.

A model reads every code point; a person reviewing the file in an editor sees none of these:
- Unicode tag characters (U+E0000–E007F) mirror ASCII one to one ("ASCII smuggling"): a whole
  instruction can ride, invisible, inside an innocent-looking string;
- variation selectors past the first one after a character carry one byte each (the same trick
  with emoji);
- zero-width characters (ZWSP, word joiner, soft hyphen, invisible operators...) split or hide words;
- bidi controls reorder what is shown, so the text displayed is not the text stored;
- special tokens spelled with look-alike letters from another script (`<|im_stаrt|>` with a
  Cyrillic а) look like the real token but are not: the model sees plain text where the reader
  sees structure, or the reverse.

Legitimate uses stay quiet: the tag sequences of subdivision flags (🏴 + tags), a zero-width
joiner inside an emoji sequence or between letters of scripts that need it, a single variation
selector after a character, a byte-order mark at the very start.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from airlock.core.findings import Rule, Severity
from airlock.core.text import safe_text

if TYPE_CHECKING:
    from airlock.core.context import ScanContext
    from airlock.core.tree import Node


class HiddenTagCharacters(Rule):
    id = "HID001"
    severity = Severity.MEDIUM
    title = "Invisible Unicode tag characters"
    help = ("Unicode tag characters (U+E0000–E007F) are invisible but spell ASCII text a model reads "
            "(\"ASCII smuggling\"); the finding shows the decoded text. High in chat templates.")


class HiddenZeroWidth(Rule):
    id = "HID002"
    severity = Severity.MEDIUM
    title = "Zero-width or invisible characters"
    help = ("Zero-width and other invisible characters hide or split words a reviewer reads. "
            "High in chat templates.")


class HiddenBidi(Rule):
    id = "HID003"
    severity = Severity.MEDIUM
    title = "Bidirectional control characters"
    help = ("Bidi controls make the text shown differ from the text stored (Trojan Source). "
            "High in chat templates.")


class ConfusableToken(Rule):
    id = "HID004"
    severity = Severity.MEDIUM
    title = "Special token spelled with look-alike characters"
    help = ("A special-token-shaped string mixes letters of several scripts (a Cyrillic or Greek letter "
            "among Latin ones): it reads like a real token but is not one. High in chat templates.")


TAG_FIRST, TAG_LAST, TAG_CANCEL = 0xE0000, 0xE007F, 0xE007F
BLACK_FLAG = 0x1F3F4  # subdivision flags: 🏴 + tag letters + CANCEL TAG
ZERO_WIDTH = frozenset({0x200B, 0x2060, 0x180E, 0x2061, 0x2062, 0x2063, 0x2064, 0x00AD, 0x034F,
                        0x115F, 0x1160, 0x3164, 0xFFA0, 0x17B4, 0x17B5, 0x2028, 0x2029, 0xFEFF})
JOINERS = frozenset({0x200C, 0x200D})  # ZWNJ/ZWJ: needed by Persian, Indic scripts and emoji
BIDI_CONTROLS = frozenset({0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069})
BIDI_MARKS = frozenset({0x200E, 0x200F, 0x061C})  # common in right-to-left prose, not in markup
_FAST = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u2028-\u202e"
                   "\u2060-\u2064\u2066-\u2069\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e01ef]")
# Special-token shapes: <|...|>, <｜...｜>, <...>, [...] without spaces.
TOKEN_SHAPES = re.compile(r"<[|｜][^\s<>]{1,64}[|｜]>|<[^\s<>]{1,64}>|\[[^\s\[\]]{2,40}\]")
MAX_SPANS = 200  # spans kept per kind; the count is still exact


class Hidden:
    """One run of hidden characters: where, what kind, how many, and what it decodes to."""

    __slots__ = ("count", "decoded", "end", "kind", "start")

    def __init__(self, kind: str, start: int, end: int, count: int, decoded: str = "") -> None:
        self.kind = kind  # "tag", "variation", "zero-width", "bidi", "confusable"
        self.start = start
        self.end = end
        self.count = count
        self.decoded = decoded


def _is_emoji(ch: str) -> bool:
    code = ord(ch)
    return code >= 0x1F000 or 0x2600 <= code <= 0x27BF or code in (0x2764, 0xFE0F, 0x20E3)


def _needs_joiner(ch: str) -> bool:
    # Letters and marks of scripts written with ZWJ/ZWNJ (Arabic, Persian, Indic...): not ASCII.
    return not ch.isascii() and (ch.isalpha() or unicodedata.category(ch).startswith("M"))


def find_hidden(text: str, *, marks_too: bool = False) -> list[Hidden]:
    """Every run of hidden characters in `text`, in order. `marks_too` also reports LRM/RLM/ALM,
    which right-to-left prose uses legitimately but markup never needs."""
    found: list[Hidden] = []
    if text.isascii():
        return found
    n = len(text)
    pos = 0
    while True:
        m = _FAST.search(text, pos)
        if m is None:
            break
        i = m.start()
        code = ord(text[i])
        if TAG_FIRST <= code <= TAG_LAST:
            j = i
            while j < n and TAG_FIRST <= ord(text[j]) <= TAG_LAST:
                j += 1
            flag = i > 0 and ord(text[i - 1]) == BLACK_FLAG and ord(text[j - 1]) == TAG_CANCEL and j - i <= 7
            if not flag:
                decoded = "".join(chr(ord(c) - TAG_FIRST) for c in text[i:j]
                                  if 0x20 <= ord(c) - TAG_FIRST < 0x7F)
                found.append(Hidden("tag", i, j, j - i, decoded))
            pos = j
            continue
        if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:
            j = i
            while j < n and (0xFE00 <= ord(text[j]) <= 0xFE0F or 0xE0100 <= ord(text[j]) <= 0xE01EF):
                j += 1
            # One selector picks a glyph variant (emoji presentation); a run of them carries bytes.
            if j - i > 1 or code >= 0xE0100:
                data = bytes(_selector_byte(ord(c)) for c in text[i:j])
                found.append(Hidden("variation", i, j, j - i, data.decode("utf-8", "backslashreplace")))
            pos = j
            continue
        if code in BIDI_CONTROLS or (marks_too and code in BIDI_MARKS):
            found.append(Hidden("bidi", i, i + 1, 1, unicodedata.name(text[i], f"U+{code:04X}")))
        elif code in JOINERS:
            before = text[i - 1] if i else ""
            after = text[i + 1] if i + 1 < n else ""
            legit = bool(before and after) and (
                (_is_emoji(before) and _is_emoji(after)) or _needs_joiner(before) or _needs_joiner(after))
            if not legit:
                found.append(Hidden("zero-width", i, i + 1, 1, unicodedata.name(text[i], "")))
        elif code in ZERO_WIDTH and not (code == 0xFEFF and i == 0):
            found.append(Hidden("zero-width", i, i + 1, 1, unicodedata.name(text[i], f"U+{code:04X}")))
        pos = i + 1
    return _merge(found)


def _selector_byte(code: int) -> int:
    return code - 0xFE00 if code <= 0xFE0F else code - 0xE0100 + 16


def _merge(found: list[Hidden]) -> list[Hidden]:
    """Adjacent single characters of one kind become one run (a ZWSP between every letter)."""
    merged: list[Hidden] = []
    for h in found:
        last = merged[-1] if merged else None
        if last is not None and last.kind == h.kind and h.kind in ("zero-width", "bidi") \
                and h.start - last.end <= 1:
            last.end = h.end
            last.count += h.count
            if h.decoded not in last.decoded:
                last.decoded = f"{last.decoded}, {h.decoded}" if last.decoded else h.decoded
        else:
            merged.append(h)
    return merged


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    if first in ("FULLWIDTH", "HALFWIDTH", "MATHEMATICAL", "MODIFIER", "SMALL", "SUBSCRIPT", "SUPERSCRIPT"):
        return first  # styled Latin letters: look-alikes of the plain ones
    return first or "UNKNOWN"


def confusable_tokens(text: str) -> list[Hidden]:
    """Special-token-shaped strings whose letters come from more than one script."""
    found: list[Hidden] = []
    if text.isascii():
        return found
    for m in TOKEN_SHAPES.finditer(text):
        token = m.group()
        if token.isascii():
            continue
        scripts = {_script(ch) for ch in token if ch.isalpha()}
        if len(scripts) > 1:
            odd = [f"{ch!r} {unicodedata.name(ch, '?')}" for ch in token
                   if ch.isalpha() and _script(ch) != "LATIN"]
            found.append(Hidden("confusable", m.start(), m.end(), len(odd), "; ".join(dict.fromkeys(odd))))
    return found


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def describe(h: Hidden, text: str) -> str:
    shown = safe_text(text[max(0, h.start - 20):h.start], 40)
    where = f"line {line_of(text, h.start)}, after '{shown}'" if shown else f"line {line_of(text, h.start)}"
    if h.kind == "tag":
        return f"{h.count} invisible Unicode tag character(s) at {where} spell {safe_text(h.decoded, 300)!r}"
    if h.kind == "variation":
        return (f"{h.count} variation selectors in a row at {where} carry hidden bytes: "
                f"{safe_text(h.decoded, 300)!r}")
    if h.kind == "bidi":
        return f"{h.count} bidi control character(s) ({safe_text(h.decoded, 160)}) at {where}"
    if h.kind == "confusable":
        token = safe_text(text[h.start:h.end], 80)
        return f"special token {token!r} at {where} mixes scripts: {safe_text(h.decoded, 200)}"
    return f"{h.count} invisible character(s) ({safe_text(h.decoded, 160)}) at {where}"


_RULES: dict[str, type[Rule]] = {"tag": HiddenTagCharacters, "variation": HiddenTagCharacters,
                                 "zero-width": HiddenZeroWidth, "bidi": HiddenBidi,
                                 "confusable": ConfusableToken}


def report_hidden(text: str, ctx: ScanContext, node: Node, *, what: str, severity: Severity | None = None,
                  tokens: bool = True, marks_too: bool = False) -> list[tuple[int, int]]:
    """Report hidden text in `text` (a template, a config value, a model card) on `node`; returns
    the character spans found, for views that mark them. One finding per kind, naming every run."""
    runs = find_hidden(text, marks_too=marks_too)
    if tokens:
        runs += confusable_tokens(text)
    by_kind: dict[str, list[Hidden]] = {}
    for h in runs:
        by_kind.setdefault(h.kind, []).append(h)
    for kind, items in by_kind.items():
        shown = "; ".join(describe(h, text) for h in items[:5])
        more = f"; and {len(items) - 5} more" if len(items) > 5 else ""
        ctx.report(_RULES[kind], f"{safe_text(what, 120)}: {shown}{more}", node=node, severity=severity)
    return [(h.start, h.end) for h in runs[:MAX_SPANS]]


MAX_JSON_STRINGS = 200_000  # strings looked at in one config
MAX_JSON_CHARS = 16 * 1024 * 1024


def report_hidden_in_json(data: object, ctx: ScanContext, node: Node, *, what: str,
                          skip_keys: frozenset[str] = frozenset()) -> None:
    """Hidden text in every string of a parsed JSON config (keys included), one finding per kind
    naming where each run sits. `skip_keys` are analysed elsewhere (chat templates)."""
    by_kind: dict[str, list[str]] = {}
    stack: list[tuple[str, object]] = [("", data)]
    seen = chars = 0
    while stack and seen < MAX_JSON_STRINGS and chars < MAX_JSON_CHARS:
        path, value = stack.pop()
        ctx.tick(1024)
        if isinstance(value, dict):
            for key, item in value.items():
                if key in skip_keys:
                    continue
                where = f"{path}.{key}" if path else str(key)
                stack.append((f"{where} (key)", key))
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str):
            seen += 1
            chars += len(value)
            if value.isascii():
                continue
            for h in find_hidden(value, marks_too=False) + confusable_tokens(value):
                by_kind.setdefault(h.kind, []).append(f"{safe_text(path, 80)}: {describe(h, value)}")
    for kind, items in by_kind.items():
        more = f"; and {len(items) - 5} more" if len(items) > 5 else ""
        ctx.report(_RULES[kind], f"{what}: {'; '.join(items[:5])}{more}", node=node)
