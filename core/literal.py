"""A tiny reader for Python literals: dict, list, tuple, str, bytes, int, True/False/None.

The `.npy` header is the repr of a dict, which numpy reads with `ast.literal_eval`. That calls
`compile()`, which Airlock never does on file content (and which an audit hook would flag), so
this module reads the same subset by hand. It accepts what `literal_eval` accepts for these
types (nested containers, parenthesised values, signs, `0x`/`0o`/`0b` and `_` in integers,
quote styles and escapes, string prefixes, adjacent string concatenation, comments) and
rejects everything else with the position of the first character it could not read.
"""

from __future__ import annotations

from typing import Any

from airlock.core.errors import FormatError

MAX_DEPTH = 64
MAX_INT_DIGITS = 4300  # CPython's default int/str conversion limit

_ESCAPES = {"\n": "", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t", "v": "\v"}
_NAMES = {"True": True, "False": False, "None": None}
_IDENT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class LiteralError(FormatError):
    """The text is not a literal of the supported kinds. `offset` is a character index."""


def read_literal(text: str, *, allow_long_suffix: bool = False) -> Any:
    """The value of `text`, which must hold exactly one literal (surrounding blanks are fine).

    `allow_long_suffix` accepts Python 2 longs (`3L`), as numpy does for version 1/2 headers.
    """
    reader = _Reader(text, allow_long_suffix)
    reader.blank(newlines=True)
    value = reader.value(0)
    reader.blank(newlines=True)
    if reader.pos != len(text):
        reader.fail("unexpected text after the literal")
    return value


class _Reader:
    def __init__(self, text: str, allow_long: bool) -> None:
        self.text = text
        self.pos = 0
        self.allow_long = allow_long
        self.nest = 0  # open brackets: line breaks only separate tokens inside them, as in Python

    def fail(self, message: str) -> None:
        near = self.text[self.pos : self.pos + 20]
        raise LiteralError(f"{message} at character {self.pos} (near {near!r})", self.pos)

    def blank(self, newlines: bool | None = None) -> None:
        if newlines is None:
            newlines = self.nest > 0
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch in " \t\f" or (newlines and ch in "\r\n"):
                self.pos += 1
            elif ch == "\\" and text.startswith("\\\n", self.pos):
                self.pos += 2  # explicit line join
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            else:
                break

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            self.fail(f"literal nested deeper than {MAX_DEPTH}")
        self.blank()
        ch = self.peek()
        if ch == "{":
            return self.dict_(depth)
        if ch == "[":
            return self.sequence("]", depth)
        if ch == "(":
            return self.paren(depth)
        if ch in "+-" or ch.isdigit():
            return self.number()
        if ch in "'\"" or (ch.isalpha() and self._string_prefix() is not None):
            return self.strings()
        if ch.isalpha() or ch == "_":
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] in _IDENT:
                self.pos += 1
            word = self.text[start : self.pos]
            if word in _NAMES:
                return _NAMES[word]
            self.pos = start
            self.fail(f"name {word!r} is not a literal")
        self.fail("expected a literal" if ch else "unexpected end of text")

    # Containers

    def dict_(self, depth: int) -> dict[Any, Any]:
        self.pos += 1
        self.nest += 1
        out: dict[Any, Any] = {}
        while True:
            self.blank()
            if self.peek() == "}":
                self.pos += 1
                self.nest -= 1
                return out
            key_at = self.pos
            key = self.value(depth + 1)
            self.blank()
            if self.peek() != ":":
                self.fail("expected ':' in a dict")
            self.pos += 1
            item = self.value(depth + 1)
            try:
                out[key] = item  # the last duplicate wins, as in Python
            except TypeError:
                self.pos = key_at
                self.fail("unhashable dict key")
            self.blank()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                self.fail("expected ',' or '}' in a dict")

    def sequence(self, close: str, depth: int) -> list[Any]:
        self.pos += 1
        self.nest += 1
        items: list[Any] = []
        while True:
            self.blank()
            if self.peek() == close:
                self.pos += 1
                self.nest -= 1
                return items
            items.append(self.value(depth + 1))
            self.blank()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != close:
                self.fail(f"expected ',' or {close!r}")

    def paren(self, depth: int) -> Any:
        """`()` and `(a,)` are tuples; `(a)` is just `a`."""
        start, nest = self.pos, self.nest
        self.pos += 1
        self.nest += 1
        self.blank()
        if self.peek() == ")":
            self.pos += 1
            self.nest = nest
            return ()
        first = self.value(depth + 1)
        self.blank()
        if self.peek() == ")":
            self.pos += 1
            self.nest = nest
            return first
        self.pos, self.nest = start, nest
        return tuple(self.sequence(")", depth))

    # Numbers

    def number(self) -> int:
        sign = 1
        if self.peek() in ("+", "-"):  # literal_eval allows one unary sign on a number
            sign = -1 if self.peek() == "-" else 1
            self.pos += 1
            self.blank()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _IDENT:
            self.pos += 1
        word = self.text[start : self.pos]
        if self.peek() == ".":
            self.pos = start
            self.fail("floats and complex numbers are not supported here")
        if self.allow_long and word[-1:] in ("L", "l"):
            word = word[:-1]
        value = _parse_int(word)
        if value is None:
            self.pos = start
            self.fail(f"{word!r} is not an integer literal")
        return sign * value  # type: ignore[operator]

    # Strings

    def _string_prefix(self) -> str | None:
        text, pos = self.text, self.pos
        end = pos
        while end < len(text) and end - pos < 2 and text[end].isalpha():
            end += 1
        prefix = text[pos:end].lower()
        if end < len(text) and text[end] in "'\"" and prefix in ("r", "u", "b", "br", "rb"):
            return prefix
        return None

    def strings(self) -> str | bytes:
        """One string literal, or several adjacent ones concatenated (all str or all bytes)."""
        parts: list[str | bytes] = []
        while True:
            self.blank()
            ch = self.peek()
            if not ch or not (ch in "'\"" or (ch.isalpha() and self._string_prefix() is not None)):
                break
            parts.append(self.string())
        if all(isinstance(p, str) for p in parts):
            return "".join(p for p in parts if isinstance(p, str))
        if all(isinstance(p, bytes) for p in parts):
            return b"".join(p for p in parts if isinstance(p, bytes))
        self.fail("cannot mix bytes and str literals")
        return ""  # unreachable

    def string(self) -> str | bytes:
        prefix = self._string_prefix() or ""
        self.pos += len(prefix)
        raw, is_bytes = "r" in prefix, "b" in prefix
        quote = self.text[self.pos]
        if self.text.startswith(quote * 3, self.pos):
            quote *= 3
        self.pos += len(quote)
        out: list[str] = []
        text, n = self.text, len(self.text)
        while True:
            if self.pos >= n:
                self.fail("unterminated string")
            if text.startswith(quote, self.pos):
                self.pos += len(quote)
                break
            ch = text[self.pos]
            if ch == "\n" and len(quote) == 1:
                self.fail("newline inside a string")
            if ch == "\\":
                if raw:
                    out.append(text[self.pos : self.pos + 2])
                    self.pos += 2
                    continue
                out.append(self.escape(is_bytes))
                continue
            if is_bytes and ord(ch) > 0x7F:
                self.fail("non-ASCII character in a bytes literal")
            out.append(ch)
            self.pos += 1
        value = "".join(out)
        if is_bytes:
            return value.encode("latin-1")
        return value

    def escape(self, is_bytes: bool) -> str:
        text = self.text
        self.pos += 1
        ch = text[self.pos : self.pos + 1]
        if ch in _ESCAPES:
            self.pos += 1
            return _ESCAPES[ch]
        if ch and ch in "01234567":
            end = self.pos
            while end < len(text) and end - self.pos < 3 and text[end] in "01234567":
                end += 1
            code = int(text[self.pos : end], 8)
            self.pos = end
            return chr(code & 0xFF) if is_bytes else chr(code)
        widths = {"x": 2} if is_bytes else {"x": 2, "u": 4, "U": 8}
        if ch in widths:
            digits = text[self.pos + 1 : self.pos + 1 + widths[ch]]
            if len(digits) != widths[ch] or any(c not in "0123456789abcdefABCDEF" for c in digits):
                self.fail(f"truncated \\{ch} escape")
            code = int(digits, 16)
            if code > 0x10FFFF:
                self.fail("escape beyond the last Unicode code point")
            self.pos += 1 + widths[ch]
            return chr(code)
        if ch == "N" and not is_bytes:
            self.fail("\\N{...} escapes are not supported")
        return "\\"  # an unknown escape keeps its backslash, as in Python


def _parse_int(word: str) -> int | None:
    if not word or word.startswith("_") or word.endswith("_") or "__" in word:
        return None
    bases = {"0x": 16, "0o": 8, "0b": 2}
    base = bases.get(word[:2].lower(), 10)
    digits = word[2:] if base != 10 else word
    digits = digits.lstrip("_") if base != 10 else digits
    if not digits or len(digits) > MAX_INT_DIGITS:
        return None
    if base == 10 and len(digits) > 1 and digits[0] == "0" and digits.strip("0_"):
        return None  # "012" is a syntax error in Python 3
    allowed = "0123456789abcdefABCDEF"[: base if base <= 10 else 22] + "_"
    if any(c not in allowed for c in digits):
        return None
    return int(digits.replace("_", ""), base)
