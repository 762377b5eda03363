"""Python source → syntax tree, never → code. The only place Airlock calls `ast.parse`.

`ast.parse` builds a tree and never a code object that could run; it does raise the `compile`
audit event, so the no-execution proof (tests/noexec_child.py) accepts that event only when its
caller is `ast.parse` called from this module.

Text is decoded the way CPython decodes a source file (PEP 263): UTF-8, a UTF-8 BOM, or a coding
cookie on the first two lines. Only codecs that are already loaded are used: looking up another one
imports a module, and a file must not be able to make Airlock import anything.
"""

from __future__ import annotations

import ast
import re
import threading
import warnings

FILENAME = "<airlock-code-reader>"

_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_BLANK_OR_COMMENT = re.compile(rb"^[ \t\f]*(?:[#\r\n]|$)")
# Codec names CPython accepts for the encodings Airlock decodes (its get_normal_name also folds
# "utf-8-*" and "latin-1-*" variants), mapped to a codec that is already loaded.
_CODECS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "latin-1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso-latin-1": "latin-1",
    "latin1": "latin-1",
    "l1": "latin-1",
    "iso8859-1": "latin-1",
    "ascii": "ascii",
    "us-ascii": "ascii",
    "cp1252": "cp1252",
    "windows-1252": "cp1252",
}
_PARSE_LOCK = threading.Lock()  # warnings.catch_warnings() is process-wide state


class SourceText:
    """Decoded source: its text, the codec, and how many bytes precede the text (a BOM)."""

    __slots__ = ("bom", "encoding", "text")

    def __init__(self, text: str, encoding: str, bom: int) -> None:
        self.text = text
        self.encoding = encoding
        self.bom = bom


class DecodeProblem(ValueError):
    """Why Airlock cannot read the bytes as source. `runs`: CPython would still decode and run them
    (a codec Airlock does not load), rather than refuse them."""

    def __init__(self, message: str, runs: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.runs = runs


def declared_encoding(data: bytes) -> str | None:
    """The coding cookie of the first two lines (the second only after a blank or comment line)."""
    first, _, rest = data.partition(b"\n")
    match = _COOKIE.match(first)
    if match is None and _BLANK_OR_COMMENT.match(first):
        match = _COOKIE.match(rest.partition(b"\n")[0])
    return match.group(1).decode("ascii", "replace") if match else None


def decode_source(data: bytes) -> SourceText:
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    cookie = declared_encoding(data[bom:])
    encoding = "utf-8"
    if cookie is not None:
        name = cookie.lower().replace("_", "-")
        for prefix in ("utf-8-", "latin-1-", "iso-8859-1-", "iso-latin-1-"):
            if name.startswith(prefix):
                name = prefix[:-1]
        if name not in _CODECS:
            raise DecodeProblem(f"the file declares the encoding {cookie!r}, which Airlock does not decode "
                                "(only UTF-8, Latin-1, ASCII and cp1252): Python may decode and run what "
                                "Airlock could not read", runs=True)
        encoding = _CODECS[name]
        if bom and encoding != "utf-8":
            raise DecodeProblem(f"a UTF-8 byte order mark with a {cookie!r} coding cookie "
                                "(CPython refuses it)")
    try:
        text = data[bom:].decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, bom + exc.start) + 1
        raise DecodeProblem(f"not valid {encoding} at byte {bom + exc.start} (line {line}): CPython would "
                            "refuse this file") from None
    return SourceText(text, encoding, bom)


def parse_python(text: str) -> ast.Module:
    """The syntax tree of `text`. Raises SyntaxError/ValueError for text that is not Python, and
    RecursionError/MemoryError for nesting CPython's parser cannot build."""
    with _PARSE_LOCK, warnings.catch_warnings():
        # Invalid escape sequences warn while parsing; under -W error they would become errors.
        warnings.simplefilter("ignore")
        return ast.parse(text, FILENAME)
