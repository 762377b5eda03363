"""File names in reports: valid for names made of any bytes.

POSIX file names are bytes; Python hands them over as str with the bytes that are not UTF-8
smuggled in as lone surrogates (U+DC80-U+DCFF, PEP 383). Written as they are, a JSON report holds
`\\udcff` escapes that strict parsers reject and SARIF's URI encoder raises. So a report gives
`path` as valid UTF-8 (U+FFFD where a byte is not) plus, only then, the exact bytes as
`path_bytes_b64`; SARIF percent-encodes the bytes into its URIs; text shows them as `\\xNN`.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any
from urllib.parse import quote

PATH_BYTES_KEY = "path_bytes_b64"


def path_fields(path: str) -> dict[str, str]:
    """`{"path": …}` for a report entry, with `path_bytes_b64` when the name is not UTF-8."""
    raw = os.fsencode(path)
    try:
        return {"path": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"path": raw.decode("utf-8", "replace"), PATH_BYTES_KEY: base64.b64encode(raw).decode("ascii")}


def entry_path_bytes(entry: dict[str, Any]) -> bytes:
    """The exact bytes of a report entry's file name."""
    encoded = entry.get(PATH_BYTES_KEY)
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:
            pass
    return os.fsencode(str(entry["path"]))


def uri(raw: bytes) -> str:
    """A relative or absolute URI reference for a file name, every byte outside the unreserved
    set percent-encoded (RFC 3986; a colon too, or `a:b.pkl` would read as a URI scheme).
    Windows separators become slashes and a drive keeps its colon; elsewhere a backslash is an
    ordinary character of the name and is encoded like one."""
    if os.sep == "\\":
        raw = raw.replace(b"\\", b"/")
        if raw[1:2] == b":" and raw[:1].isalpha():
            return raw[:2].decode("ascii") + quote(raw[2:], safe="/._-~")
    return quote(raw, safe="/._-~")


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """Each lone surrogate replaced by U+FFFD: what a strict JSON or UTF-8 reader accepts."""
    return _SURROGATE.sub("\ufffd", text)


def clean_strings(value: Any) -> Any:
    """A copy of a JSON value with every string made valid Unicode (keys too)."""
    if isinstance(value, str):
        return without_surrogates(value)
    if isinstance(value, dict):
        return {clean_strings(k): clean_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_strings(v) for v in value]
    return value
