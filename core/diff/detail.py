"""One changed tensor looked at closely: both sides' statistics and histograms, and the difference
statistics, for the desktop app's diff tab (which runs this in a worker and only draws the result).

Each side's histogram is tensor_stats' own (64 bins over its own range); for drawing them over each
other they are re-binned onto shared edges spanning both ranges, each bin's count placed at its
centre (a drawing aid: the statistics themselves are exact, or sampled and said so).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airlock.core.diff.side import open_side
from airlock.core.diff.values import compare_values
from airlock.core.errors import Cancelled
from airlock.core.tensor_stats import BINS, compute_stats

CancelledFn = Callable[[], bool]


def tensor_detail(path_a: str, name_a: str, path_b: str, name_b: str, *,
                  progress: Callable[[float, str], object] | None = None,
                  cancelled: CancelledFn | None = None) -> dict[str, Any] | None:
    """{"a": stats, "b": stats, "diff": statistics or None, "why": text or None, "edges": shared
    bin edges, "counts_a"/"counts_b": counts in them}, or None when cancelled. Each side's file is
    scanned again (header only) to find the tensor; nothing is loaded."""
    import numpy as np

    a = open_side(path_a)
    try:
        b = open_side(path_b)
        try:
            ta, tb = a.tensors.get(name_a), b.tensors.get(name_b)
            if ta is None or tb is None or ta.data is None or tb.data is None:
                missing = "A" if ta is None or ta.data is None else "B"
                t = ta if missing == "A" else tb
                return {"why": f"the tensor's values in {missing} cannot be read: "
                               f"{t.why if t is not None else 'no such tensor'}"}
            out: dict[str, Any] = {"why": None, "diff": None}
            try:
                out["a"] = compute_stats(a.read, a.size, ta.data, cancelled=cancelled)
                if progress is not None:
                    progress(0.3, "statistics of A")
                out["b"] = compute_stats(b.read, b.size, tb.data, cancelled=cancelled)
                if progress is not None:
                    progress(0.6, "statistics of B")
                if out["a"] is None or out["b"] is None:
                    return None
                if ta.data.numel == tb.data.numel:
                    out["diff"] = compare_values(a.read, ta.data, b.read, tb.data, cancelled=cancelled)
                else:
                    out["why"] = (f"A has {ta.data.numel:,} values and B {tb.data.numel:,}: no element-wise "
                                  "difference")
            except Cancelled:
                return None
            except (ValueError, OSError) as exc:  # a truncated file: FormatError is a ValueError
                return {"why": f"the values cannot be read: {exc}"}
            lows = [s["edges"][0] for s in (out["a"], out["b"]) if s["edges"]]
            highs = [s["edges"][-1] for s in (out["a"], out["b"]) if s["edges"]]
            if lows:
                edges = np.linspace(min(lows), max(highs), BINS + 1)
                for key in ("a", "b"):
                    s = out[key]
                    centres = [(lo + hi) / 2 for lo, hi in zip(s["edges"][:-1], s["edges"][1:], strict=True)]
                    counts, _ = np.histogram(centres, bins=edges, weights=s["counts"]) if centres else \
                        (np.zeros(BINS), None)
                    out[f"counts_{key}"] = [float(c) for c in counts]
                out["edges"] = [float(e) for e in edges]
            if progress is not None:
                progress(1.0, "done")
            return out
        finally:
            b.close()
    finally:
        a.close()
