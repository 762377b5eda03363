"""Streaming decompression of a gzip/bz2/xz source for tarfile's stream mode: bounded steps, every
byte produced charged to the scan's decompression budget (airlock.core.formats.tar reads through it)."""

from __future__ import annotations

import io
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.decompress import decompressor, kind_of, stream_errors
from airlock.core.source import Source

_CHUNK = 1 << 20
TAR_COMPRESSIONS = frozenset({"gzip", "bz2", "xz"})  # what tarfile opens itself ("r:gz", "r:bz2", "r:xz")


def compression(head: bytes) -> str | None:
    """The compression of a tar that tarfile would open, by core/decompress.py's magic bytes."""
    kind = kind_of(head)
    return kind if kind in TAR_COMPRESSIONS else None


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
        errors: tuple[type[Exception], ...] = (*stream_errors(self._kind), ValueError)
        while not out and not self._done and n:
            try:
                out = self._step(n)
            except errors as exc:
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
