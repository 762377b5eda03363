"""A strided tensor's bytes in C order, in memory that does not depend on its shape or strides.

A view (shape, strides, storage offset) can touch a few elements spread across a huge storage (a
2×2 view with stride 2^28), repeat a few elements into a huge output (stride 0), or permute its
storage (a transposed matrix). Reading the whole span of storage a view covers, or a whole output
row, made a 16-byte output cost 1.08 GB and a stride-0 row 2.1 GB.

Here the output is cut into blocks of at most OUT_BLOCK bytes along its leading dimensions (down
to single elements if need be). A block is filled from storage windows of at most WINDOW bytes:
a part of it whose storage footprint fits a window, and is dense enough there to be worth reading
whole, is read in one piece and gathered by numpy; a larger or sparser part is split along its
dimension of largest stride, so that its reads go forward through the storage. A deflated storage
is inflated forward, once, as long as the reads go forward; a read behind the current position
(a permuted view larger than a window) starts the inflation again. Memory: WINDOW + OUT_BLOCK +
CHUNK, whatever the view.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from typing import Any

from airlock.core.convert.model import CHUNK, ConvertError  # output pieces for the writer; compressed reads
from airlock.core.tensor_spec import DTYPE_SIZES, STORED, TensorSpec

WINDOW = 16 * 1024 * 1024  # storage bytes read at once (a 2048×2048 f32 transposed fits whole)
OUT_BLOCK = 8 * 1024 * 1024  # output bytes gathered at once
SMALL_READ = 64 * 1024  # below this, one read of the whole footprint is cheaper than splitting
# A separate read costs about what copying this many more bytes does (a system call and a numpy
# gather, ~25 µs, against page-cache copies at several GB/s): up to this much unused data per read
# saved, a footprint is read whole (a 8192×8192 f32 transposed: 16 MiB windows, not 1 KiB runs).
SKIP_PER_READ = 64 * 1024

Dims = list[tuple[int, int]]  # (size, stride in elements), in output order


def gather(fh: io.RawIOBase, spec: TensorSpec) -> Iterator[memoryview]:
    """The bytes of a non-contiguous tensor in C order. Each view is valid until the next one."""
    import numpy as np

    itemsize = DTYPE_SIZES[spec.dtype]
    word = np.dtype({1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}[itemsize])
    # Size-1 dimensions change nothing in C order; dropping them keeps the recursion short.
    dims = [(d, s) for d, s in zip(spec.shape, spec.strides, strict=True) if d != 1]
    reader = _reader(fh, spec)
    window = _Window(reader, itemsize, word)
    out = np.empty(OUT_BLOCK // itemsize, dtype=word)
    for block, base in _blocks(dims, spec.storage_offset, OUT_BLOCK // itemsize):
        n = _numel(block)
        view = out[:n].reshape([d for d, _ in block])
        _fill(view, block, base, window)
        data = out[:n].data.cast("B")
        for i in range(0, len(data), CHUNK):
            yield data[i:i + CHUNK]
        del data, view


def _numel(dims: Dims) -> int:
    n = 1
    for d, _ in dims:
        n *= d
    return n


def _extent(dims: Dims) -> int:
    """Elements of storage from the first element the dims touch to the last, inclusive."""
    return 1 + sum((d - 1) * s for d, s in dims)


def _blocks(dims: Dims, base: int, limit: int) -> Iterator[tuple[Dims, int]]:
    """Consecutive pieces of the output in C order, each of at most `limit` elements."""
    if _numel(dims) <= limit:
        yield dims, base
        return
    (d0, s0), rest = dims[0], dims[1:]
    row = _numel(rest)
    if row <= limit:
        step = limit // row
        for i in range(0, d0, step):
            yield [(min(step, d0 - i), s0), *rest], base + i * s0
    else:
        for i in range(d0):
            yield from _blocks(rest, base + i * s0, limit)


def _runs(dims: Dims) -> int:
    """How many separate contiguous pieces of storage the dims touch (repeats not counted)."""
    run, pieces, contiguous = 1, 1, True
    for d, s in sorted(((d, s) for d, s in dims if s > 0 and d > 1), key=lambda ds: ds[1]):
        if contiguous and s == run:
            run *= d
        else:
            contiguous = False
            pieces *= d
    return pieces


def _read_whole(dims: Dims, itemsize: int) -> bool:
    """Worth reading the dims' whole storage footprint at once (it fits a window, and what it
    holds beyond the elements needed costs less than the separate reads it saves)."""
    span_bytes, need_bytes = _extent(dims) * itemsize, _numel(dims) * itemsize
    if span_bytes > WINDOW:
        return False
    waste = span_bytes - need_bytes
    return span_bytes <= SMALL_READ or waste <= 3 * need_bytes or waste <= SKIP_PER_READ * (_runs(dims) - 1)


def _fill(view: Any, dims: Dims, base: int, window: _Window) -> None:
    """Fill `view` (shape = the dims' sizes) with the elements the dims address from `base`."""
    import numpy as np

    if _read_whole(dims, window.itemsize):
        flat = window.load(base, base + _extent(dims))
        view[...] = np.lib.stride_tricks.as_strided(
            flat, shape=view.shape, strides=tuple(s * window.itemsize for _, s in dims), writeable=False)
        return
    # Split along the dimension of largest stride: its slices lie one after another in storage.
    # (span > 1 here, so some dimension has more than one element and a non-zero stride.)
    j = max((k for k in range(len(dims)) if dims[k][0] > 1), key=lambda k: dims[k][1])
    size, stride = dims[j]
    rest = dims[:j] + dims[j + 1:]
    rest_span = _extent(rest)
    group = 1
    if rest_span * window.itemsize <= WINDOW:
        group = max(1, min(size, (WINDOW // window.itemsize - rest_span) // max(stride, 1) + 1))
        while group > 1 and not _read_whole([*dims[:j], (group, stride), *dims[j + 1:]], window.itemsize):
            group //= 2  # too sparse to read whole: fewer slices at once
    lead = (slice(None),) * j
    for t in range(0, size, group):
        if group == 1:  # (the Ellipsis keeps a 0-d result a view, not a copied scalar)
            _fill(view[(*lead, t, ...)], rest, base + t * stride, window)
        else:
            g = min(group, size - t)
            _fill(view[(*lead, slice(t, t + g))], [*dims[:j], (g, stride), *dims[j + 1:]],
                  base + t * stride, window)


class _Window:
    """The one storage buffer: the last range read stays, so neighbouring blocks reuse it."""

    def __init__(self, reader: _StoredReader | _DeflatedReader, itemsize: int, word: Any) -> None:
        import numpy as np

        self.reader = reader
        self.itemsize = itemsize
        self.buf = np.empty(WINDOW // itemsize, dtype=word)
        self.lo = self.hi = 0  # element range held

    def load(self, lo: int, hi: int) -> Any:
        if not (self.lo <= lo and hi <= self.hi):
            self.reader.read_into(lo * self.itemsize, self.buf[:hi - lo].data.cast("B"))
            self.lo, self.hi = lo, hi
        return self.buf[lo - self.lo:hi - self.lo]


def _reader(fh: io.RawIOBase, spec: TensorSpec) -> _StoredReader | _DeflatedReader:
    ref = spec.storage
    if ref.compression == STORED:
        return _StoredReader(fh, ref.file_offset)
    return _DeflatedReader(fh, ref.file_offset, ref.compressed_size or 0)


class _StoredReader:
    def __init__(self, fh: io.RawIOBase, offset: int) -> None:
        self.fh = fh
        self.offset = offset

    def read_into(self, start: int, dest: memoryview) -> None:
        self.fh.seek(self.offset + start)
        filled = 0
        while filled < len(dest):
            got = self.fh.readinto(dest[filled:])
            if not got:
                raise ConvertError(f"the file ended while reading {len(dest)} bytes at offset "
                                   f"{self.offset + start}")
            filled += got


class _DeflatedReader:
    """Raw deflate read forward: skipping inflates and discards, going back starts over."""

    def __init__(self, fh: io.RawIOBase, offset: int, csize: int) -> None:
        self.fh = fh
        self.offset = offset
        self.csize = csize
        self._scratch = bytearray(CHUNK)
        self._restart()

    def _restart(self) -> None:
        self.inflater = zlib.decompressobj(-15)
        self.pos = 0  # uncompressed bytes produced so far
        self.read_in = 0  # compressed bytes consumed from the file
        self.tail = b""

    def read_into(self, start: int, dest: memoryview) -> None:
        if start < self.pos:
            self._restart()
        while self.pos < start:
            self.pos += len(self._inflate(min(start - self.pos, CHUNK)))
        filled = 0
        while filled < len(dest):
            piece = self._inflate(len(dest) - filled)
            dest[filled:filled + len(piece)] = piece
            filled += len(piece)
            self.pos += len(piece)

    def _inflate(self, most: int) -> bytes:
        while True:
            data = self.tail
            if not data:
                if self.read_in >= self.csize:
                    raise ConvertError(f"deflated data at offset {self.offset} ends after {self.pos} bytes")
                self.fh.seek(self.offset + self.read_in)
                want = min(self.csize - self.read_in, len(self._scratch))
                got = self.fh.readinto(memoryview(self._scratch)[:want])
                if not got:
                    raise ConvertError(f"the file ended inside deflated data at offset {self.offset}")
                self.read_in += got
                data = bytes(self._scratch[:got])
            try:
                out = self.inflater.decompress(data, most)
            except zlib.error as exc:
                raise ConvertError(f"deflated data at offset {self.offset} is corrupt: {exc}") from None
            self.tail = self.inflater.unconsumed_tail
            if out:
                return out
            if self.inflater.eof:
                raise ConvertError(f"deflated data at offset {self.offset} ends after {self.pos} bytes")


__all__ = ["OUT_BLOCK", "WINDOW", "gather"]
