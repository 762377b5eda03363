"""Verification of written SafeTensors files.

Two independent checks. Ours: the file is read back in chunks and every tensor's bytes are
hashed (xxh3-128: fast enough to stay within twice the time of a plain copy, unlike crc32 or
SHA-256) and compared with the digest of the bytes read from the source; the header must be
byte-identical to the one written. Theirs: the `safetensors` library must open the file (it
rejects holes, overlaps and bytes no tensor covers) and agree on every key, dtype, shape and
on the key order by data offset.
"""

from __future__ import annotations

import io
import os

from airlock.core.convert.model import CHUNK, VerificationFailed, WrittenFile
from airlock.core.convert.writer import Progress


def verify_file(written: WrittenFile, path: str | None = None, *, buf: memoryview | None = None,
                progress: Progress | None = None) -> str:
    """Raise VerificationFailed naming the first difference; return a one-line summary."""
    path = path or written.path
    _check_bytes(written, path, buf or memoryview(bytearray(CHUNK)), progress)
    _check_with_library(written, path)
    return f"{len(written.tensors)} tensors re-read and matched the source; safetensors agrees"


def _check_bytes(written: WrittenFile, path: str, buf: memoryview, progress: Progress | None) -> None:
    import xxhash

    name = os.path.basename(path)
    size = os.path.getsize(path)
    if size != written.size:
        raise VerificationFailed(f"{name}: {size} bytes on disk, {written.size} written")
    with io.FileIO(path, "r") as fh:
        header = _read_exact(fh, len(written.header), buf)
        if header != written.header:
            raise VerificationFailed(f"{name}: the header on disk differs from the header written")
        for t in written.tensors:
            if t.digest is None:
                raise VerificationFailed(f"{name}: no source digest for tensor {t.name!r}")
            fh.seek(t.start)
            h = xxhash.xxh3_128()
            remaining = t.end - t.start
            while remaining > 0:
                got = fh.readinto(buf[:min(remaining, len(buf))])
                if not got:
                    raise VerificationFailed(f"{name}: file ends inside tensor {t.name!r}")
                h.update(buf[:got])
                remaining -= got
                if progress is not None:
                    progress.step(got, f"verifying {t.name}")
            if h.digest() != t.digest:
                raise VerificationFailed(f"{name}: tensor {t.name!r} (bytes {t.start}-{t.end}) differs from "
                                         "the source")


def _read_exact(fh: io.FileIO, n: int, buf: memoryview) -> bytes:
    out = bytearray()
    while len(out) < n:
        got = fh.readinto(buf[:min(n - len(out), len(buf))])
        if not got:
            break
        out += buf[:got]
    return bytes(out)


def _check_with_library(written: WrittenFile, path: str) -> None:
    from safetensors import safe_open

    name = os.path.basename(path)
    try:
        handle = safe_open(path, framework="numpy")
    except Exception as exc:  # noqa: BLE001 - any refusal by the library is a verification failure
        raise VerificationFailed(f"{name}: the safetensors library refuses the file: {exc}") from None
    with handle as f:
        expected = [t.name for t in written.tensors]
        keys = list(f.keys())
        if sorted(keys) != sorted(expected):
            missing = sorted(set(expected) - set(keys))[:5]
            extra = sorted(set(keys) - set(expected))[:5]
            raise VerificationFailed(f"{name}: safetensors sees other keys (missing {missing}, "
                                     f"extra {extra})")
        order = list(f.offset_keys()) if hasattr(f, "offset_keys") else None
        if order is not None and order != expected:
            raise VerificationFailed(f"{name}: safetensors orders the tensors differently by offset")
        for t in written.tensors:
            piece = f.get_slice(t.name)
            dtype, shape = piece.get_dtype(), tuple(piece.get_shape())
            if dtype != t.dtype or shape != t.shape:
                raise VerificationFailed(f"{name}: tensor {t.name!r} reads back as {dtype} {list(shape)}, "
                                         f"written as {t.dtype} {list(t.shape)}")
