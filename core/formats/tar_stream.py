"""Streaming decompression of a gzip/bz2/xz source for tarfile's stream mode: bounded steps, every
byte produced charged to the scan's decompression budget (airlock.core.formats.tar reads through it)."""

from __future__ import annotations

import io
import zlib
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.source import Source

_CHUNK = 1 << 20


def compression(head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    return None



def decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "bz2":
        import bz2

        return bz2.BZ2Decompressor()
    import lzma

    return lzma.LZMADecompressor(lzma.FORMAT_XZ)


class DecompressingReader(io.RawIOBase):
    """The decompressed bytes of a gzip/bz2/xz source as a read-only stream, produced on demand in
    bounded steps (`max_length`), each charged to the scan's decompression budget. Concatenated
    members are read on, as gzip.open / bz2.open / lzma.open (and so tarfile) read them."""

    def __init__(self, source: Source, kind: str, ctx: ScanContext) -> None:
        super().__init__()
        self._source = source
        self._kind = kind
        self._ctx = ctx
        self._dec = decompressor(kind)
        self._pos = 0  # next compressed byte to feed
        self._carry = b""  # input left over from the previous member
        self._done = False
        self.produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        n = len(target)
        out = b""
        while not out and not self._done and n:
            try:
                out = self._step(n)
            except (zlib.error, OSError, EOFError, ValueError, _lzma_error(self._kind)) as exc:
                raise OSError(f"corrupt {self._kind} stream after {self.produced:,} bytes: {exc}") from None
        if out:
            self._ctx.charge_decompressed(len(out), f"{self._kind}-compressed tar")
            self._ctx.tick(64)
            target[: len(out)] = out
            self.produced += len(out)
        return len(out)

    def _input(self) -> bytes:
        if self._carry:
            data, self._carry = self._carry, b""
            return data
        data = self._source.read(self._pos, _CHUNK)
        self._pos += len(data)
        return data

    def _step(self, n: int) -> bytes:
        dec = self._dec
        if self._kind == "gzip":
            data = dec.unconsumed_tail or self._input()
            if not data:
                raise EOFError(f"truncated {self._kind} stream")
            out = bytes(dec.decompress(data, n))
        else:
            data = self._input() if dec.needs_input else b""
            if dec.needs_input and not data:
                raise EOFError(f"truncated {self._kind} stream")
            out = bytes(dec.decompress(data, max_length=n))
        if dec.eof:
            self._next_member(dec.unused_data)
        return out

    def _next_member(self, rest: bytes) -> None:
        rest = rest + self._carry
        while True:  # gzip and xz allow zero padding between members
            rest = rest.lstrip(b"\0")
            if rest or self._pos >= self._source.size:
                break
            rest = self._source.read(self._pos, _CHUNK)
            self._pos += len(rest)
        if not rest or compression(rest[:8]) != self._kind:
            self._done = True
            return
        self._dec = decompressor(self._kind)
        self._carry = rest


def _lzma_error(kind: str) -> type[Exception]:
    if kind != "xz":
        return OSError
    import lzma

    return lzma.LZMAError
