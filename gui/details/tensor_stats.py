"""Statistics and a histogram of one tensor's values, read from the file bytes in a worker.

A tensor node says where its bytes are (attrs["data_offset"], absolute in the file, or a
converter TensorSpec in attrs["spec"]), its dtype and shape. Tensors above a size cap are
sampled in evenly spaced runs, and the view says so. numpy and matplotlib load only when used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from airlock.core.text import safe_text
from airlock.core.tree import Node
from airlock.gui import theme
from airlock.gui.details.locate import resolve
from airlock.gui.workers import FunctionWorker, pool

SAMPLE_CAP = 4_000_000  # elements read per tensor; above it, evenly spaced runs are sampled
SAMPLE_RUNS = 64
BINS = 64

_NAMES = {
    "FLOAT": "F32", "FLOAT32": "F32", "HALF": "F16", "FLOAT16": "F16", "BFLOAT16": "BF16",
    "DOUBLE": "F64", "FLOAT64": "F64", "LONG": "I64", "INT64": "I64", "INT": "I32", "INT32": "I32",
    "SHORT": "I16", "INT16": "I16", "INT8": "I8", "UINT8": "U8", "BYTE": "U8", "UINT16": "U16",
    "UINT32": "U32", "UINT64": "U64", "BOOL": "BOOL", "FLOAT8_E4M3FN": "F8_E4M3", "FLOAT8_E5M2": "F8_E5M2",
}
_SIMPLE = {"F64": "f8", "F32": "f4", "F16": "f2", "I64": "i8", "I32": "i4", "I16": "i2", "I8": "i1",
           "U64": "u8", "U32": "u4", "U16": "u2", "U8": "u1", "BOOL": "u1"}
_SPECIAL = {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}
_NUMPY_STYLE = re.compile(r"^([<>|=]?)([fiub])(\d{1,2})$")


@dataclass(frozen=True)
class TensorRef:
    offset: int        # absolute, in the file
    dtype: str         # normalised code: F32, BF16, I8, ... or a GGUF quant type name (Q4_K ...)
    shape: tuple[int, ...]
    numel: int
    unit_elems: int    # elements per unit read: 1, or a quantisation block
    unit_bytes: int
    big_endian: bool = False

    @property
    def units(self) -> int:
        return -(-self.numel // self.unit_elems)

    @property
    def nbytes(self) -> int:
        return self.units * self.unit_bytes


def normalise_dtype(text: str) -> tuple[str, bool] | None:
    """(code, big_endian) for dtype spellings of SafeTensors, torch, numpy and GGUF, else None."""
    raw = text.strip()
    m = _NUMPY_STYLE.match(raw)
    if m:
        order, kind, size = m.groups()
        code = {"f": "F", "i": "I", "u": "U", "b": "BOOL"}[kind] + ("" if kind == "b" else str(int(size) * 8))
        return (code, order == ">") if code in _SIMPLE else None
    upper = raw.upper().removeprefix("TORCH.")
    code = _NAMES.get(upper, upper)
    if code in _SIMPLE or code in _SPECIAL:
        return code, False
    return (code, False) if _gguf_quant(code) is not None else None


def _gguf_quant(code: str) -> tuple[int, int] | None:
    if not re.match(r"^(?:I?Q\d|TQ\d|MXFP4|NVFP4)", code):
        return None
    try:
        import gguf
        qtype = gguf.GGMLQuantizationType[code]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
    except (ImportError, KeyError):
        return None
    return int(block), int(size)


def tensor_ref(node: Node) -> TensorRef | str:
    """Where this tensor's bytes are, or why statistics cannot be computed."""
    attrs = node.attrs
    dtype_text = attrs.get("st_dtype") or attrs.get("dtype")  # torch nodes carry both spellings
    shape = attrs.get("shape")
    if not isinstance(dtype_text, str) or not isinstance(shape, tuple | list):
        return "this node has no dtype and shape"
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        return "the shape is not a list of sizes"
    dims = tuple(int(d) for d in shape)
    numel = math.prod(dims)
    offset = attrs.get("data_offset")
    spec = attrs.get("spec")
    if not isinstance(offset, int) and spec is not None and hasattr(spec, "storage"):
        if getattr(spec.storage, "compression", 0) not in (0, None):
            return "the tensor's storage is compressed in the archive"
        if not spec.is_contiguous:
            return "the tensor is a non-contiguous view of its storage"
        offset = int(spec.storage.file_offset) + int(spec.storage_offset) * int(spec.storage.itemsize)
        member = None
    else:
        member = node.member
    if not isinstance(offset, int) and isinstance(node.offset, int) and attrs.get("contiguous") is not False \
            and isinstance(node.length, int) and node.length == attrs.get("size") and node.length > 0:
        offset = node.offset  # the node's byte span is exactly the tensor's data (torch zip, npy)
    if not isinstance(offset, int):
        return "the format reader did not record where this tensor's bytes are (data_offset)"
    if member is not None:
        loc = resolve(node, offset, from_member=member)
        if loc.offset is None:
            return loc.note
        offset = loc.offset
    norm = normalise_dtype(dtype_text)
    if norm is None:
        return f"dtype {safe_text(dtype_text, 40)} is not supported by the statistics view"
    code, big = norm
    if code in _SIMPLE:
        unit_elems, unit_bytes = 1, int(_SIMPLE[code][1])
    elif code in _SPECIAL:
        unit_elems, unit_bytes = 1, _SPECIAL[code]
    else:
        quant = _gguf_quant(code)
        if quant is None:
            return f"dtype {code} is not supported"
        unit_elems, unit_bytes = quant
    return TensorRef(offset, code, dims, numel, unit_elems, unit_bytes, big)


def _decode(raw: bytes, ref: TensorRef) -> Any:
    import numpy as np

    code = ref.dtype
    if code in _SIMPLE:
        dt = np.dtype(_SIMPLE[code]).newbyteorder(">" if ref.big_endian else "<")
        return np.frombuffer(raw, dtype=dt).astype(np.float64)
    if code == "BF16":
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if code == "F8_E5M2":  # the top byte of an IEEE half
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.uint16) << 8).view(np.float16).astype(np.float64)
    if code == "F8_E4M3":
        return _e4m3_table()[np.frombuffer(raw, dtype=np.uint8)]
    if code == "F8_E8M0":
        b = np.frombuffer(raw, dtype=np.uint8).astype(np.float64)
        return np.where(b == 255, np.nan, np.exp2(b - 127))
    import gguf

    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, ref.unit_bytes)
    return gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[code]).astype(np.float64).ravel()


def _e4m3_table() -> Any:
    import numpy as np

    b = np.arange(256)
    sign = np.where(b >> 7, -1.0, 1.0)
    exp = (b >> 3) & 0xF
    mant = b & 7
    val = np.where(exp == 0, mant / 8 * 2.0**-6, (1 + mant / 8) * np.exp2(exp - 7.0))
    val = sign * val
    val[(exp == 15) & (mant == 7)] = np.nan  # E4M3FN: no infinities, one NaN pattern
    return val


def compute_stats(read: Any, file_size: int, ref: TensorRef, *, progress: Any = None,
                  cancelled: Any = None, cap: int = SAMPLE_CAP) -> dict[str, Any] | None:
    """Read (a sample of) the tensor and summarise it. Runs in a worker; returns None if cancelled."""
    import numpy as np

    available = max(0, min(ref.nbytes, file_size - ref.offset)) // ref.unit_bytes
    cap_units = max(1, cap // ref.unit_elems)
    if available <= cap_units:
        runs = [(0, available)]
    else:
        run_len = max(1, cap_units // SAMPLE_RUNS)
        starts = np.linspace(0, available - run_len, SAMPLE_RUNS).astype(np.int64)
        runs = [(int(s), run_len) for s in starts]
    parts = []
    for i, (start, count) in enumerate(runs):
        if cancelled is not None and cancelled():
            return None
        raw = read(ref.offset + start * ref.unit_bytes, count * ref.unit_bytes)
        raw = raw[: len(raw) - len(raw) % ref.unit_bytes]
        parts.append(_decode(raw, ref))
        if progress is not None:
            progress((i + 1) / len(runs), "reading tensor bytes")
    values = np.concatenate(parts) if parts else np.zeros(0)
    values = values[: ref.numel]
    finite = values[np.isfinite(values)]
    counts, edges = np.histogram(finite, bins=BINS) if finite.size else (np.zeros(0), np.zeros(0))
    read_elems = int(values.size)
    return {
        "elements": ref.numel,
        "read": read_elems,
        "sampled": len(runs) > 1,
        "truncated": available * ref.unit_bytes < ref.nbytes,
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


def stats_summary(stats: dict[str, Any], ref: TensorRef) -> str:
    pct = 100.0 * stats["read"] / max(stats["elements"], 1)
    lines = [
        f"dtype {ref.dtype}   shape {' × '.join(map(str, ref.shape)) or 'scalar'}   "
        f"{stats['elements']:,} elements   file offset {ref.offset:,}",
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


class TensorStatsView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setFont(theme.monospace_font())
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addWidget(self.summary)
        self._layout.addWidget(self.bar)
        self._canvas: Any = None
        self._figure: Any = None
        self._token = 0
        self.worker: FunctionWorker | None = None
        self.stats: dict[str, Any] | None = None
        self.show_message("Select a tensor to see its statistics.")

    def show_message(self, text: str) -> None:
        self._token += 1
        self._cancel_worker()
        self.stats = None
        self.bar.setVisible(False)
        self.summary.setText(text)
        if self._canvas is not None:
            self._canvas.setVisible(False)

    def show_tensor(self, node: Node, read: Any, file_size: int) -> None:
        ref = tensor_ref(node)
        if isinstance(ref, str):
            self.show_message(f"Statistics not available: {ref}.")
            return
        self.show_message(f"Computing statistics for {safe_text(node.label, 120)}…")
        self.bar.setVisible(True)
        self.bar.setValue(0)
        token = self._token
        worker = FunctionWorker(compute_stats, read, file_size, ref)
        worker.signals.progress.connect(lambda f, _m, t=token: self._progress(t, f))
        worker.signals.returned.connect(lambda stats, t=token: self._done(t, ref, stats))
        worker.signals.errored.connect(lambda msg, t=token: t == self._token and self.show_message(
            f"Statistics failed: {safe_text(msg, 300)}"))
        self.worker = worker
        pool().start(worker)

    def _progress(self, token: int, fraction: float) -> None:
        if token == self._token:
            self.bar.setValue(int(fraction * 100))

    def _cancel_worker(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.worker = None

    def _done(self, token: int, ref: TensorRef, stats: dict[str, Any] | None) -> None:
        if token != self._token or stats is None:
            return
        self.stats = stats
        self.bar.setVisible(False)
        self.summary.setText(stats_summary(stats, ref))
        self._plot(stats)

    def _plot(self, stats: dict[str, Any]) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        if self._canvas is None:
            self._figure = Figure(figsize=(5, 2.6), layout="constrained")
            self._canvas = FigureCanvasQTAgg(self._figure)
            self._canvas.setMinimumHeight(180)
            self._layout.addWidget(self._canvas, 1)
        dark = theme.is_dark()
        fg, bg = ("#e6e9ee", "#16191d") if dark else ("#111827", "#ffffff")
        fig = self._figure
        fig.clear()
        fig.set_facecolor(bg)
        ax = fig.add_subplot()
        ax.set_facecolor(bg)
        counts, edges = stats["counts"], stats["edges"]
        if counts:
            widths = [b - a for a, b in pairwise(edges)]
            ax.bar(edges[:-1], counts, width=widths, align="edge", color="#3b82f6", edgecolor="none")
            nonzero = [c for c in counts if c]
            if nonzero and max(nonzero) / min(nonzero) > 1000:
                ax.set_yscale("log")
        ax.set_xlabel("value" + (" (sample)" if stats["sampled"] else ""), color=fg)
        ax.set_ylabel("count", color=fg)
        ax.tick_params(colors=fg)
        for spine in ax.spines.values():
            spine.set_color(fg)
        self._canvas.setVisible(True)
        self._canvas.draw_idle()
