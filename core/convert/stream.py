"""Reading one tensor's bytes from its source file, in order, in chunks.

Bytes are read with `readinto` into one reused buffer, never through a memory map: mapped
pages that have been touched count as resident memory, and a multi-gigabyte checkpoint would
then look (and, under pressure, behave) like it is held in RAM. Deflated zip members are
inflated incrementally. A non-contiguous tensor is gathered into C order by core/convert/gather.py,
in fixed buffers whatever its shape and strides.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from airlock.core.convert.model import ConvertError
from airlock.core.tensor_spec import DEFLATED, DTYPE_SIZES, STORED, TensorSpec

if TYPE_CHECKING:
    from airlock.core.convert.model import OutTensor

# Measured here: a 256 KiB buffer copies 2 GiB as fast as cp, steadily; 1-4 MiB buffers made the
# page-cache writes 2-8x slower and erratic.


def element_span(spec: TensorSpec) -> tuple[int, int]:
    """[first, last + 1) element indices of the storage that the view touches (0, 0 if empty)."""
    if spec.numel == 0:
        return 0, 0
    last = spec.storage_offset + sum((d - 1) * s for d, s in zip(spec.shape, spec.strides, strict=True))
    return spec.storage_offset, last + 1


def check_spec(name: str, spec: TensorSpec, file_size: int) -> None:
    """Reject a description that points outside its storage or its storage outside the file."""
    where = f"tensor {name!r}"
    if spec.dtype not in DTYPE_SIZES:
        raise ConvertError(f"{where}: dtype {spec.dtype} has no SafeTensors equivalent")
    if len(spec.shape) != len(spec.strides):
        raise ConvertError(f"{where}: {len(spec.shape)} dimensions but {len(spec.strides)} strides")
    if any(d < 0 for d in spec.shape) or any(s < 0 for s in spec.strides) or spec.storage_offset < 0:
        raise ConvertError(f"{where}: negative size, stride or storage offset")
    ref = spec.storage
    itemsize = DTYPE_SIZES[spec.dtype]
    _, stop = element_span(spec)
    if stop * itemsize > ref.nbytes:
        raise ConvertError(f"{where}: the view needs {stop * itemsize} bytes of storage {ref.key!r} "
                           f"but it has {ref.nbytes}")
    stored = ref.nbytes if ref.compression == STORED else ref.compressed_size
    if ref.compression not in (STORED, DEFLATED) or stored is None:
        raise ConvertError(f"{where}: storage {ref.key!r} uses unsupported compression {ref.compression}")
    if ref.file_offset < 0 or ref.file_offset + stored > file_size:
        raise ConvertError(f"{where}: storage {ref.key!r} at offset {ref.file_offset} ({stored} bytes) "
                           f"runs past the end of the file ({file_size} bytes)")


def read_range(fh: io.RawIOBase, spec: TensorSpec, start: int, length: int,
               buf: memoryview) -> Iterator[memoryview]:
    """Bytes [start, start + length) of the storage behind `spec`, as views into `buf`."""
    ref = spec.storage
    if ref.compression == STORED:
        yield from _read_stored(fh, ref.file_offset + start, length, buf)
    else:
        yield from _read_deflated(fh, ref.file_offset, ref.compressed_size or 0, start, length, buf)


def _read_stored(fh: io.RawIOBase, offset: int, length: int, buf: memoryview) -> Iterator[memoryview]:
    fh.seek(offset)
    remaining = length
    while remaining > 0:
        want = min(remaining, len(buf))
        got = fh.readinto(buf[:want])
        if not got:
            raise ConvertError(f"the file ended while reading {length} bytes at offset {offset}")
        remaining -= got
        yield buf[:got]


def _read_deflated(fh: io.RawIOBase, offset: int, csize: int, start: int, length: int,
                   buf: memoryview) -> Iterator[memoryview]:
    inflater = zlib.decompressobj(-15)
    fh.seek(offset)
    left_in = csize
    skip, remaining = start, length
    pending = b""
    # Compressed input is read into the second half of the buffer; output is bounded by CHUNK.
    half = len(buf) // 2
    inbuf = buf[half:]
    while remaining > 0:
        if not pending:
            if left_in <= 0:
                raise ConvertError(f"deflated data at offset {offset} ends before {start + length} bytes")
            got = fh.readinto(inbuf[:min(left_in, len(inbuf))])
            if not got:
                raise ConvertError(f"the file ended inside deflated data at offset {offset}")
            left_in -= got
            pending = bytes(inbuf[:got])
        try:
            out = inflater.decompress(pending, max(half, 1))
        except zlib.error as exc:
            raise ConvertError(f"deflated data at offset {offset} is corrupt: {exc}") from None
        pending = inflater.unconsumed_tail
        if inflater.eof and not out and remaining > 0:
            raise ConvertError(f"deflated data at offset {offset} ends before {start + length} bytes")
        if skip:
            cut = min(skip, len(out))
            out, skip = out[cut:], skip - cut
        if out:
            piece = out[:remaining]
            remaining -= len(piece)
            yield memoryview(piece)


def tensor_chunks(fh: io.RawIOBase, spec: TensorSpec, buf: memoryview) -> Iterator[memoryview]:
    """The tensor's bytes in C order. Views are only valid until the next one is requested."""
    itemsize = DTYPE_SIZES[spec.dtype]
    if spec.numel == 0:
        return
    if spec.is_contiguous:
        yield from read_range(fh, spec, spec.storage_offset * itemsize, spec.nbytes, buf)
        return
    from airlock.core.convert.gather import gather

    yield from gather(fh, spec)


def out_chunks(fh: io.RawIOBase | None, tensor: OutTensor, buf: memoryview) -> Iterator[memoryview]:
    if tensor.producer is not None:
        for piece in tensor.producer():
            yield memoryview(piece)
        return
    assert tensor.spec is not None and fh is not None
    yield from tensor_chunks(fh, tensor.spec, buf)
