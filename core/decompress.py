"""Decompressed data as a `Source`, under the scan's per-file decompression budget.

One pass decompresses a stream chunk by chunk and charges every byte to the file's budget
(`ScanContext.charge_decompressed`: one budget for the file across every nesting level, so a
gzip in a gzip in a zip cannot multiply it). Up to `IN_MEMORY_BYTES` the bytes are kept, once,
and parsers read them in place. A longer stream is not kept whole: its first `IN_MEMORY_BYTES`
and its last `TAIL_BYTES` are, and a read elsewhere decompresses again from the start (parsers
read such a stream forward, so the pickle machine costs one more pass). Past the budget, the
stream stops: the caller gets the bytes read so far and a `LimitExceeded` to report. Nothing is
written to disk.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.source import MemorySource, Source

IN_MEMORY_BYTES = 64 * 1024**2
TAIL_BYTES = 1 << 20
CHUNK = 1 << 20

Opener = Callable[[], Iterable[bytes]]


class Decompressed:
    """The result of the first pass: a source of the bytes (all of them, or those before `error`),
    where the compressed data ended in its container (when known), and the CRC-32 if asked."""

    __slots__ = ("crc", "end", "error", "source", "total")

    def __init__(self, source: Source, end: int | None, error: FormatError | LimitExceeded | None,
                 crc: int | None, total: int) -> None:
        self.source = source
        self.end = end
        self.error = error
        self.crc = crc
        self.total = total  # bytes the first pass produced (more than source.size past the budget)

    def done(self) -> None:
        """The scan is over: later reads (a view expanding a node) no longer check its clock."""
        if isinstance(self.source, StreamSource):
            self.source.check = None


def decompress(opener: Opener, ctx: Any, *, name: str, member: str | None, path: str | None,
               what: str, declared: int | None = None, crc: bool = False) -> Decompressed:
    """Run the first pass over `opener()`'s chunks. `declared`: the size a container's directory
    gives (a zip member); more than that is an error, as it is to the loader."""
    cap: int | None = None  # past the budget before it starts: only this much is read, for a look
    over: LimitExceeded | None = None
    if declared is not None:
        budget = ctx.limits.max_decompressed_bytes
        left = max(budget - ctx.decompressed_bytes, 0)
        if declared > left:
            # Not inflated whole, but its first bytes are read: a bomb often opens with its payload.
            cap = min(IN_MEMORY_BYTES, left)
            over = LimitExceeded(f"{what} declares {declared:,} bytes, more than the {left:,} left of the "
                                 f"per-file decompression budget ({budget:,}); not inspected further")
    kept = bytearray()
    previous = last = b""  # the last two chunks: the tail, once the stream is longer than kept
    total = 0
    checksum = 0
    error: FormatError | LimitExceeded | None = None
    stream = opener()
    try:
        for chunk in stream if cap != 0 else ():
            if cap is not None:
                chunk = chunk[: cap - total]
            past_declared = declared is not None and total + len(chunk) > declared
            if past_declared:
                chunk = chunk[: declared - total]  # type: ignore[operator]
            ctx.charge_decompressed(len(chunk), what)
            total += len(chunk)
            if crc:
                checksum = zlib.crc32(chunk, checksum)
            room = IN_MEMORY_BYTES - len(kept)
            if room > 0:
                kept += chunk[:room] if room < len(chunk) else chunk
            if total > IN_MEMORY_BYTES:
                previous, last = last, chunk
            if past_declared:
                raise FormatError(f"{what} inflates past the {declared:,} bytes its directory entry "
                                  "declares; the loader refuses it", None)
            ctx.check()
            if cap is not None and total >= cap:
                break
        if over is not None:
            raise over
    except (FormatError, LimitExceeded) as exc:
        error = exc
    if error is None and declared is not None and total != declared:
        error = FormatError(f"{what} inflates to {total:,} bytes, but its directory entry declares "
                            f"{declared:,}", None)
    end = getattr(stream, "end", None) if error is None else None
    if total <= IN_MEMORY_BYTES or isinstance(error, LimitExceeded):
        source: Source = MemorySource(kept, name=name, member=member, path=path)
    else:
        tail = (previous + last)[-TAIL_BYTES:]
        source = StreamSource(opener, total, kept, tail, name=name, member=member, path=path)
        source.check = ctx.check
    return Decompressed(source, end, error, checksum if crc else None, total)


class ChargedBelow:
    """The scan context `decompress` gets for chunks a decoder below it has already charged to the
    budget (a compressed tar's stream, a 7z folder): the same limits, clock and running total, no
    second charge for the same bytes."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    @property
    def limits(self) -> Any:
        return self._ctx.limits

    @property
    def decompressed_bytes(self) -> int:
        return int(self._ctx.decompressed_bytes)

    def charge_decompressed(self, nbytes: int, what: str = "") -> None:
        """Charged by the decoder that produced them."""

    def check(self) -> None:
        self._ctx.check()


def skip_then(chunks: Iterable[bytes], skip: int, size: int) -> Iterator[bytes]:
    """The `size` bytes after the first `skip` of a chunked stream (a member read again from the
    start of its container's stream); fewer if the stream ends first."""
    left = size
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        piece = chunk[skip : skip + left]
        skip = 0
        left -= len(piece)
        yield piece
        if left <= 0:
            return


class StreamSource(Source):
    """A decompressed stream too long to keep: its head and tail are held, every other read
    decompresses forward from the last read, or again from the start for a read behind it."""

    streamed = True

    def __init__(self, opener: Opener, size: int, head: bytes | bytearray, tail: bytes, *, name: str,
                 member: str | None, path: str | None) -> None:
        super().__init__(name=name, size=size, member=member, path=path)
        self._opener = opener
        self._kept = memoryview(head)
        self._tail = tail
        self._tail_at = size - len(tail)
        self._chunks: Iterator[bytes] | None = None
        self._chunk = b""
        self._chunk_at = 0  # stream offset of _chunk
        self.check: Callable[[], None] | None = None
        self.restarts = 0

    def _read(self, offset: int, n: int) -> bytes:
        end = offset + n
        if end <= len(self._kept):
            return bytes(self._kept[offset:end])
        if offset >= self._tail_at:
            return self._tail[offset - self._tail_at : end - self._tail_at]
        if self._chunks is None or offset < self._chunk_at:
            self._chunks = iter(self._opener())
            self._chunk, self._chunk_at = b"", 0
            self.restarts += 1
        parts = []
        pos = offset
        while pos < end:
            rel = pos - self._chunk_at
            if rel < len(self._chunk):
                piece = self._chunk[rel : end - self._chunk_at]
                parts.append(piece)
                pos += len(piece)
                continue
            self._chunk_at += len(self._chunk)
            self._chunk = next(self._chunks, b"")
            if not self._chunk:
                raise FormatError(f"decompressed data ended at {self._chunk_at:,} bytes, before the "
                                  f"{self.size:,} the first pass produced", self._chunk_at)
            if self.check is not None:
                self.check()
        return b"".join(parts)


# The compressed formats.


def kind_of(head: bytes) -> str | None:
    """The compression a stream starts with, by its magic bytes."""
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


def decompressor(kind: str) -> Any:
    """A fresh decompressor object for one stream (member) of `kind`."""
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "zlib":
        return zlib.decompressobj()
    if kind == "deflate":  # raw deflate: zip members
        return zlib.decompressobj(-zlib.MAX_WBITS)
    # bz2, lzma and lz4 are imported for their own files only: every scan's start-up would pay.
    if kind == "bz2":
        import bz2

        return bz2.BZ2Decompressor()
    if kind in ("xz", "lzma"):
        import lzma

        return lzma.LZMADecompressor(lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)
    if kind == "lz4":
        import lz4.frame

        return lz4.frame.LZ4FrameDecompressor()
    raise FormatError(f"unknown compression {kind!r}", 0)


_ZLIB_KINDS = frozenset({"gzip", "zlib", "deflate"})
# Formats whose readers (gzip.open, bz2.open, lzma.open, lz4.frame) go on to the next member.
MULTI_MEMBER = frozenset({"gzip", "bz2", "xz", "lz4"})


def stream_errors(kind: str) -> tuple[type[Exception], ...]:
    """What a decompressor of `kind` raises on a corrupt stream."""
    if kind in ("xz", "lzma"):
        import lzma

        return (OSError, EOFError, zlib.error, RuntimeError, lzma.LZMAError)
    return (OSError, EOFError, zlib.error, RuntimeError)


class Inflater:
    """The decompressed chunks (at most CHUNK bytes each) of the stream at the start of `raw`.

    For gzip, bz2, xz and lz4, a member that ends is followed by the next one, as their readers
    do (gzip.open skips zero padding between members): a pickle split across members is what the
    loader reads. `end` is where the compressed data ended, once iterated. A corrupt or truncated
    stream raises FormatError after yielding what came before the break: a loader reading through
    gzip.open unpickles those bytes, and runs their calls, before it sees the error."""

    def __init__(self, raw: Source, kind: str) -> None:
        self.raw = raw
        self.kind = kind
        self.end: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        raw, kind = self.raw, self.kind
        errors = stream_errors(kind)
        pos = produced = 0
        while True:
            dec = decompressor(kind)
            try:
                while not getattr(dec, "eof", False):
                    if kind in _ZLIB_KINDS:
                        # zlib keeps input it could not expand yet (max_length) in unconsumed_tail.
                        if dec.unconsumed_tail:
                            out = dec.decompress(dec.unconsumed_tail, CHUNK)
                        elif pos < raw.size:
                            data = raw.read(pos, CHUNK)
                            pos += len(data)
                            out = dec.decompress(data, CHUNK)
                        else:
                            out = dec.flush(CHUNK) if not dec.eof else b""
                            if not out:
                                break
                    elif not dec.needs_input:
                        out = dec.decompress(b"", max_length=CHUNK)
                    elif pos < raw.size:
                        data = raw.read(pos, CHUNK)
                        pos += len(data)
                        out = dec.decompress(data, max_length=CHUNK)
                    else:
                        break
                    if out:
                        produced += len(out)
                        yield bytes(out)
            except errors as exc:
                raise FormatError(f"{kind} stream is corrupt after {produced:,} bytes: {exc}", pos) from None
            if not getattr(dec, "eof", True):
                raise FormatError(f"truncated {kind} stream: ended after {produced:,} decompressed bytes",
                                  pos)
            pos -= len(getattr(dec, "unused_data", b"") or b"")
            self.end = pos
            if kind not in MULTI_MEMBER:
                return
            nxt = _skip_zeros(raw, pos) if kind == "gzip" else pos
            if nxt >= raw.size:
                self.end = raw.size
                return
            if kind_of(raw.read(nxt, 64)) != kind:
                return
            pos = nxt


def _skip_zeros(raw: Source, pos: int) -> int:
    """gzip readers skip zero padding between and after members."""
    while pos < raw.size:
        chunk = raw.read(pos, 64 * 1024)
        stripped = chunk.lstrip(b"\0")
        pos += len(chunk) - len(stripped)
        if stripped:
            break
    return pos
