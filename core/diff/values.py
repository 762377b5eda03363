"""A tensor's bytes hashed, and two tensors' values compared, reading each file in bounded pieces.

"Identical" is decided by hashing both byte spans with XXH3-128 (xxhash): fast enough to run at
disk speed, and what the converter's verification uses too. It says the bytes are the same, which
for the same dtype means the same values. It is not a cryptographic hash: `airlock hash` (SHA-256)
is the one to pin a file with.

The numeric comparison walks both tensors in step (`airlock.core.tensors.paired_chunks`: the same
flat indices on each side whatever the two dtypes, GGML blocks dequantised on the fly) and keeps
only running sums, so its memory is a chunk per side whatever the tensors' size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from airlock.core.errors import Cancelled, FormatError
from airlock.core.tensors import Chunk, Read, TensorData, paired_chunks, window

HASH_NAME = "xxh3-128"
READ_CHUNK = 8 * 1024 * 1024  # bytes per read while hashing (one buffer, reused)
COMPARE_CHUNK = 1 << 20  # elements per step of the numeric comparison (8 MiB of float64 a side)

CancelledFn = Callable[[], bool]


def hash_span(path: str, offset: int, length: int, *, cancelled: CancelledFn | None = None) -> str | None:
    """XXH3-128 of `length` bytes at `offset` of the file, or None when the file ends before them."""
    import xxhash

    hasher = xxhash.xxh3_128()
    buffer = bytearray(min(READ_CHUNK, max(length, 1)))
    view = memoryview(buffer)
    left = length
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        while left > 0:
            if cancelled is not None and cancelled():
                raise Cancelled("cancelled")
            n = fh.readinto(view[:min(left, len(buffer))])
            if not n:
                return None  # truncated: the span runs past the end of the file
            hasher.update(view[:n])
            left -= n
    return str(hasher.hexdigest())


def compare_values(read_a: Read, a: TensorData, read_b: Read, b: TensorData, *,
                   cancelled: CancelledFn | None = None, progress: Callable[[float], object] | None = None,
                   chunk: int = COMPARE_CHUNK) -> dict[str, Any]:
    """Difference statistics of two tensors with the same number of elements, B against A:
    `max_abs_diff`, `rel_l2` (‖B−A‖ / ‖A‖), `cosine`, `changed` (elements that differ; NaN on both
    sides counts as equal) and `changed_share`. Values are compared as float64 (complex: their
    magnitude of difference; cosine over the real parts)."""
    import numpy as np

    max_abs = 0.0
    sum_d2 = sum_a2 = sum_b2 = dot = 0.0
    changed = nan_mismatch = 0
    total = a.numel
    done = 0
    for ca, cb in _paired(read_a, a, read_b, b, chunk):
        if cancelled is not None and cancelled():
            raise Cancelled("cancelled")
        va, vb = ca.values, cb.values
        if np.iscomplexobj(va) or np.iscomplexobj(vb):
            diff_c = vb.astype(np.complex128) - va.astype(np.complex128)
            differs = diff_c != 0
            both_nan = np.isnan(va) & np.isnan(vb)
            d = np.abs(diff_c)
            va, vb = np.real(va).astype(np.float64), np.real(vb).astype(np.float64)
        else:
            va, vb = va.astype(np.float64), vb.astype(np.float64)
            with np.errstate(all="ignore"):
                d = np.abs(vb - va)
            differs = va != vb
            both_nan = np.isnan(va) & np.isnan(vb)
        differs &= ~both_nan
        changed += int(np.count_nonzero(differs))
        ok = np.isfinite(va) & np.isfinite(vb)
        nan_mismatch += int(np.count_nonzero(differs & ~ok))
        if not ok.all():
            va, vb, d = va[ok], vb[ok], d[ok]
        if d.size:
            max_abs = max(max_abs, float(d.max()))
        with np.errstate(all="ignore"):
            sum_d2 += float(np.dot(d, d))
            sum_a2 += float(np.dot(va, va))
            sum_b2 += float(np.dot(vb, vb))
            dot += float(np.dot(va, vb))
        done = cb.stop
        if progress is not None and total:
            progress(done / total)
    norm_a, norm_b = math.sqrt(sum_a2), math.sqrt(sum_b2)
    rel_l2 = 0.0 if sum_d2 == 0.0 else math.sqrt(sum_d2) / norm_a if norm_a else math.inf
    if norm_a and norm_b:
        cosine: float | None = max(-1.0, min(1.0, dot / (norm_a * norm_b)))
    else:
        cosine = 1.0 if norm_a == norm_b else None  # both all-zero: the same direction (none)
    return {
        "elements": total,
        "changed": changed,
        "changed_share": changed / total if total else 0.0,
        "max_abs_diff": max_abs,
        "rel_l2": rel_l2,
        "cosine": cosine,
        "non_finite_changed": nan_mismatch,  # elements where one side is NaN/Inf and they differ
    }


def _paired(read_a: Read, a: TensorData, read_b: Read, b: TensorData,
            chunk: int) -> Iterator[tuple[Chunk, Chunk]]:
    """Both tensors in step, in C order. A matrix stored transposed on one side only (a torch `.t()`
    view in a checkpoint, against its contiguous conversion) is read band by band: `rows` rows of the
    C-ordered side, and the same rows of the other, which are a short run in each of its stored rows."""
    if a.fortran == b.fortran or len(a.shape) != 2 or a.shape != b.shape:
        yield from paired_chunks(read_a, a, read_b, b, chunk=chunk)
        return
    import numpy as np

    m, n = a.shape
    rows = max(1, chunk // max(n, 1))
    for start in range(0, m, rows):
        count = min(rows, m - start)
        pair = [_band(read, t, start, count) for read, t in ((read_a, a), (read_b, b))]
        for values in pair:
            if values.size != count * n:  # the file ends inside the tensor
                raise FormatError(f"tensor {a.name}: the file ends before its values do", a.offset)
        yield Chunk(start * n, pair[0]), Chunk(start * n, np.asarray(pair[1]))


def _band(read: Read, t: TensorData, start: int, count: int) -> Any:
    """Rows start..start+count-1 of a matrix, flattened in C order."""
    import numpy as np

    m, n = t.shape
    if not t.fortran:
        return window(read, t, start * n, count * n)
    stored = replace(t, shape=(n, m), fortran=False)  # the file holds the transpose, row by row
    columns = [window(read, stored, j * m + start, count) for j in range(n)]
    return np.stack(columns).T.ravel() if columns else np.zeros(0, dtype=np.float64)
