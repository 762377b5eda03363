"""Make any string from a file safe to show: control and bidi characters escaped, length capped.

Every label, value preview and message built from file content goes through `safe_text`, so
no view (terminal, GUI, HTML, SARIF) can be tricked by what a file contains.
"""

from __future__ import annotations

import os

DEFAULT_MAX = 200


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    if text.isprintable():  # also true for printable non-ASCII ("…", "é"): nothing to escape
        return text
    # str.isprintable() is False for control (Cc), format (Cf: bidi overrides, zero-width),
    # separator, surrogate, private-use and unassigned characters: all of them are escaped.
    return "".join(ch if ch.isprintable() or ch == " " else _escape_char(ch) for ch in text)


def safe_text(value: str | bytes | bytearray | memoryview, max_chars: int = DEFAULT_MAX) -> str:
    """Escape and elide. Bytes are decoded as UTF-8 with invalid bytes shown as \\xNN."""
    if isinstance(value, str):
        unit, total = "chars", len(value)
        text = value[: max_chars + 1]
        cut = total > len(text)
    else:
        unit, total = "bytes", len(value)
        raw = bytes(value[: max_chars * 4 + 4])
        text = raw.decode("utf-8", errors="backslashreplace")
        cut = total > len(raw)
    text = escape(text)
    if len(text) > max_chars or cut:
        return f"{text[:max_chars]}… ({total:,} {unit})"
    return text


def safe_path(path: str | bytes, max_chars: int = DEFAULT_MAX) -> str:
    """A file name to show: its bytes that are not UTF-8 (which Python carries as lone
    surrogates) appear as \\xNN, like any other undecodable bytes, then escaped and elided."""
    return safe_text(os.fsencode(path), max_chars)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n:,} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
