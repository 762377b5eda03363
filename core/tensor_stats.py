"""Statistics and a histogram of one tensor's values, read from the file (`airlock.core.tensors`).

Tensors above a size cap are sampled in evenly spaced runs, and the summary says so. The GUI's
statistics view runs `compute_stats` in a worker and draws the histogram; nothing here knows Qt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from airlock.core.dtypes import COMPLEX
from airlock.core.tensors import Read, TensorData, chunks, sample_ranges

SAMPLE_CAP = 4_000_000  # elements read per tensor; above it, evenly spaced runs are sampled
SAMPLE_RUNS = 64
BINS = 64

Stats = dict[str, Any]


def unsupported(t: TensorData) -> str | None:
    """Why there are no statistics for this tensor's values, or None."""
    if t.dtype.kind == COMPLEX:
        return f"dtype {t.dtype.code} holds complex values, which have no histogram"
    return None


def compute_stats(read: Read, file_size: int, t: TensorData, *,
                  progress: Callable[[float, str], object] | None = None,
                  cancelled: Callable[[], bool] | None = None, cap: int = SAMPLE_CAP) -> Stats | None:
    """Read (a sample of) the tensor and summarise it. Returns None if cancelled."""
    import numpy as np

    ranges = sample_ranges(t, cap, runs=SAMPLE_RUNS, available=t.available(file_size))
    parts = []
    for i, (begin, end) in enumerate(ranges):
        for chunk in chunks(read, t, start=begin, stop=end):
            if cancelled is not None and cancelled():
                return None
            parts.append(chunk.values.astype(np.float64))
        if progress is not None:
            progress((i + 1) / len(ranges), "reading tensor bytes")
    values = np.concatenate(parts) if parts else np.zeros(0)
    finite = values[np.isfinite(values)]
    counts, edges = np.histogram(finite, bins=BINS) if finite.size else (np.zeros(0), np.zeros(0))
    return {
        "elements": t.numel,
        "read": int(values.size),
        "sampled": len(ranges) > 1,
        "truncated": t.available(file_size) < t.numel,
        "min": float(finite.min()) if finite.size else math.nan,
        "max": float(finite.max()) if finite.size else math.nan,
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std()) if finite.size else math.nan,
        "zeros": int(np.count_nonzero(values == 0)),
        "nan": int(np.count_nonzero(np.isnan(values))),
        "posinf": int(np.count_nonzero(values == np.inf)),
        "neginf": int(np.count_nonzero(values == -np.inf)),
        "counts": counts.tolist(),
        "edges": edges.tolist(),
    }


def stats_summary(stats: Stats, t: TensorData) -> str:
    pct = 100.0 * stats["read"] / max(stats["elements"], 1)
    lines = [
        f"dtype {t.dtype.code}   shape {' × '.join(map(str, t.shape)) or 'scalar'}   "
        f"{stats['elements']:,} elements   file offset {t.offset:,}",
        f"min {stats['min']:.6g}   max {stats['max']:.6g}   "
        f"mean {stats['mean']:.6g}   std {stats['std']:.6g}",
        f"zeros {stats['zeros']:,}   NaN {stats['nan']:,}   "
        f"+Inf {stats['posinf']:,}   -Inf {stats['neginf']:,}",
    ]
    if stats["sampled"]:
        lines.append(f"Sampled: {stats['read']:,} of {stats['elements']:,} elements ({pct:.2g}%), read in "
                     f"{SAMPLE_RUNS} evenly spaced runs; counts above are over the sample.")
    if stats["truncated"]:
        lines.append("The file ends before this tensor does: statistics cover the bytes that exist.")
    return "\n".join(lines)
