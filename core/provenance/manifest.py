"""SHA256SUMS manifests, as GNU `sha256sum` writes and `sha256sum -c` reads them.

A line is `<64 hex><space><space or *><name>`: two spaces for text mode, ` *` for binary mode (the
same bytes on POSIX). A name holding a backslash, newline or carriage return is escaped (`\\\\`,
`\\n`, `\\r`) and its line starts with a backslash. The BSD form `SHA256 (name) = <hex>`
(`sha256sum --tag`) is read too. Names are bytes: a manifest may name files in any encoding.
"""

from __future__ import annotations

import re

from airlock.core.errors import AirlockError

MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a manifest of a million files is ~100 MB; this is plenty
_GNU = re.compile(rb"([0-9a-fA-F]{64}) ([ *])(.+)", re.DOTALL)
_BSD = re.compile(rb"SHA256 \((.+)\) = ([0-9a-fA-F]{64})", re.DOTALL)


class ManifestError(AirlockError):
    """A manifest line that does not parse: names the file and the line."""


class Entry:
    __slots__ = ("binary", "line", "name", "sha256")

    def __init__(self, sha256: str, name: bytes, binary: bool, line: int) -> None:
        self.sha256 = sha256
        self.name = name  # raw bytes, relative to the manifest's folder unless absolute
        self.binary = binary
        self.line = line

    def __repr__(self) -> str:
        return f"Entry({self.sha256[:12]}…, {self.name!r}, binary={self.binary}, line={self.line})"


def escape_name(name: bytes) -> tuple[bytes, bool]:
    """The name as sha256sum writes it, and whether the line needs its leading backslash."""
    if not any(c in name for c in b"\\\n\r"):
        return name, False
    return name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r"), True


def _unescape(name: bytes, where: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(name):
        c = name[i]
        if c != 0x5C:  # backslash
            out.append(c)
            i += 1
            continue
        nxt = name[i + 1 : i + 2]
        if nxt == b"\\":
            out += b"\\"
        elif nxt == b"n":
            out += b"\n"
        elif nxt == b"r":
            out += b"\r"
        else:
            raise ManifestError(f"{where}: unknown escape {bytes(name[i : i + 2])!r} in the file name")
        i += 2
    return bytes(out)


def format_line(sha256: str, name: bytes, binary: bool = False) -> bytes:
    """One line `sha256sum` would print (with its newline)."""
    escaped, flagged = escape_name(name)
    mode = b" *" if binary else b"  "
    return (b"\\" if flagged else b"") + sha256.encode("ascii") + mode + escaped + b"\n"


def parse(data: bytes, source: str) -> list[Entry]:
    """Every entry of a manifest; raises ManifestError naming `source` and the line that does not
    parse. Blank lines are skipped, as sha256sum does."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    entries = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw[:-1] if raw.endswith(b"\r") and not raw.startswith(b"\\") else raw
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        escaped = line.startswith(b"\\")
        body = line[1:] if escaped else line
        match = _GNU.fullmatch(body)
        if match is not None:
            digest, mode, name = match.group(1), match.group(2), match.group(3)
            binary = mode == b"*"
        else:
            bsd = _BSD.fullmatch(body)
            if bsd is None:
                shown = line[:80].decode("utf-8", "backslashreplace")
                raise ManifestError(f"{where}: not a SHA-256 manifest line (expected '<64 hex digits>  "
                                    f"<file>' "
                                    f"or 'SHA256 (<file>) = <64 hex digits>'), found {shown!r}")
            name, digest, binary = bsd.group(1), bsd.group(2), True
        if escaped:
            name = _unescape(name, where)
        if b"\0" in name:
            raise ManifestError(f"{where}: the file name holds a NUL byte")
        entries.append(Entry(digest.decode("ascii").lower(), name, binary, number))
    return entries
