"""gzip / bz2 / xz / lzma / zlib / lz4-wrapped files: decompressed with a size cap, then sniffed again.

joblib's compressed dumps are such files; after decompression the joblib module recognises them.
"""

from __future__ import annotations

import zlib
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Malformed, TrailingData
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import DATA, FILE, Node

NAME = "compressed"
# joblib keeps .joblib / .pkl on its compressed dumps, so those names do not disagree with the content.
EXTENSIONS = (".gz", ".bz2", ".xz", ".lzma", ".z", ".zlib", ".lz4", ".joblib", ".jbl", ".pkl")

_CHUNK = 1 << 20


def _kind(head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:4] == b"\x04\x22\x4d\x18":
        return "lz4"
    if head[:3] == b"\x5d\x00\x00":
        return "lzma"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        try:
            zlib.decompressobj().decompress(head, 64)
        except zlib.error:
            return None
        return "zlib"
    return None


def sniff(head: bytes, size: int) -> int:
    kind = _kind(head)
    if kind is None:
        return 0
    return 60 if kind in ("zlib", "lzma") else 85


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "zlib":
        return zlib.decompressobj()
    # bz2 and lzma are imported for their own files only: every scan's start-up would pay for them.
    if kind == "bz2":
        import bz2

        return bz2.BZ2Decompressor()
    if kind in ("xz", "lzma"):
        import lzma

        return lzma.LZMADecompressor(lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)
    import lz4.frame  # imported only for lz4 files

    return lz4.frame.LZ4FrameDecompressor()


# Formats whose readers (gzip.open, bz2.open, lzma.open, lz4.frame) go on to the next member.
_MULTI_MEMBER = frozenset({"gzip", "bz2", "xz", "lz4"})


def decompress(source: Source, kind: str, cap: int, ctx: ScanContext) -> bytes:
    """Stream-decompress with a hard cap on the output, checking the clock between chunks.

    Concatenated members are all read, as `gzip.open(...).read()` reads them: a pickle split
    across members, or a second pickle in a second member, is what the loader sees.
    """
    data, _, error = decompress_members(source, kind, cap, ctx)
    if error is not None:
        raise error
    return data


def decompress_members(source: Source, kind: str, cap: int, ctx: ScanContext
                       ) -> tuple[bytes, int, FormatError | None]:
    """(bytes of every member, offset where the members end, the corruption that stopped it).

    A corrupt or truncated stream still yields what came before the break: a loader reading
    through `gzip.open` unpickles those bytes, and runs their calls, before it sees the error.
    """
    out = bytearray()
    pos = 0
    while True:
        try:
            pos = _decompress_one(source, kind, pos, cap, out, ctx)
        except FormatError as exc:
            return bytes(out), source.size, exc
        if kind not in _MULTI_MEMBER:
            return bytes(out), pos, None
        nxt = pos
        if kind == "gzip":  # gzip readers skip zero padding between and after members
            while nxt < source.size and source.buffer[nxt] == 0:
                nxt += 1
        if nxt >= source.size:
            return bytes(out), source.size, None
        if _kind(source.read(nxt, 64)) != kind:
            return bytes(out), pos, None
        pos = nxt


def _decompress_one(source: Source, kind: str, start: int, cap: int, out: bytearray, ctx: ScanContext) -> int:
    """Decompress one member starting at `start` into `out`; returns where its compressed bytes end."""
    dec = _decompressor(kind)
    pos = start
    try:
        while pos < source.size and not getattr(dec, "eof", False):
            ctx.check()
            chunk = source.read(pos, _CHUNK)
            pos += len(chunk)
            # max_length bounds what one call may produce, so a bomb cannot expand past the cap.
            out += _step(dec, kind, chunk, cap - len(out) + 1)
            while len(out) <= cap and _pending(dec, kind):
                more = _step(dec, kind, b"", cap - len(out) + 1)
                if not more:
                    break
                out += more
            if len(out) > cap:
                raise LimitExceeded(f"{kind} data expands past {cap:,} bytes (decompression bomb?)", start)
    except (OSError, EOFError, zlib.error, RuntimeError, _lzma_error(kind)) as exc:
        raise FormatError(f"{kind} stream is corrupt after {len(out):,} bytes: {exc}", pos) from None
    if not getattr(dec, "eof", True):
        raise FormatError(f"truncated {kind} stream: ended after {len(out):,} decompressed bytes", pos)
    unused = getattr(dec, "unused_data", None) or b""
    return pos - len(unused)


def _lzma_error(kind: str) -> type[Exception]:
    if kind not in ("xz", "lzma"):
        return OSError  # already caught: no need to import lzma for it
    import lzma

    return lzma.LZMAError


def _step(dec: Any, kind: str, data: bytes, max_length: int) -> bytes:
    if kind in ("gzip", "zlib"):
        # zlib keeps input it could not expand yet in unconsumed_tail; feed it back first.
        return bytes(dec.decompress(dec.unconsumed_tail + data, max(max_length, 1)))
    return bytes(dec.decompress(data, max_length=max(max_length, 1)))


def _pending(dec: Any, kind: str) -> bool:
    if getattr(dec, "eof", False):
        return False  # bz2/lzma refuse any call after the end of the stream
    if kind in ("gzip", "zlib"):
        return bool(dec.unconsumed_tail)
    return not getattr(dec, "needs_input", True)


def parse(source: Source, ctx: ScanContext) -> Node:
    root = ctx.current or Node(FILE, source.name, offset=0, length=source.size, member=source.member)
    kind = _kind(source.head(64)) or "unknown"
    root.attrs["compression"] = kind
    data, end, error = decompress_members(source, kind, ctx.limits.max_decompressed_bytes, ctx)
    if error is not None:
        ctx.report(Malformed, f"malformed {kind}: {error.message}; what came before is read below",
                   node=root, offset=error.offset, member=source.member)
    member = f"{source.member}!{kind}" if source.member else f"<{kind} content>"
    inner = Source.from_bytes(data, name=member, member=member, path=source.path)
    if data or error is None:
        ctx.parse_nested(inner, root, label=f"{kind}-decompressed ({len(data):,} bytes)")
    if end < source.size:
        size = source.size - end
        node = root.child(DATA, f"trailing bytes ({size:,})", offset=end, length=size, member=source.member,
                          attrs={"preview": safe_text(source.read(end, 32), 48)})
        ctx.report(TrailingData, f"{size:,} bytes after the end of the {kind} data; readers ignore or "
                   "reject them, but they can hide content", node=node, offset=end)
        where = f"{source.member or ''}<bytes after the {kind} data at {end}>"
        ctx.parse_nested(Source.from_bytes(source.read(end, size), name=where, member=where,
                                           path=source.path), node, label="trailing content")
    return root
