"""GGML block types that gguf's own `gguf.quants` does not dequantise, decoded here from ggml's layout.

- Q1_0 (type 41, 128 values in 18 bytes): an fp16 scale `d`, then one sign bit per value, least
  significant bit first; a set bit is `+d`, a clear one `-d` (ggml-quants.c `dequantize_row_q1_0`).
- Q8_K (type 15, 256 values in 292 bytes): a float32 scale `d`, 256 int8 quants, then 16 int16 sums
  of 16 quants each (for dot products; not needed for the values): `d * q`
  (`dequantize_row_q8_K`).

Q8_1 is not here: it is ggml's intermediate type for dot products, never dequantised by ggml
itself, and gguf-py's block size for it (40 bytes, float32 scales) is not ggml's (36, fp16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def _q1_0(blocks: np.ndarray) -> np.ndarray:
    import numpy as np

    d = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n, 1)
    bits = np.unpackbits(blocks[:, 2:18], axis=1, bitorder="little").astype(np.float32)  # (n, 128)
    return (bits * 2 - 1) * d


def _q8_k(blocks: np.ndarray) -> np.ndarray:
    import numpy as np

    d = blocks[:, :4].copy().view("<f4")  # (n, 1)
    values: np.ndarray = blocks[:, 4:260].view(np.int8).astype(np.float32) * d
    return values


# GGML type number → (elements per block, bytes per block, dequantiser of (n, bytes) uint8 blocks).
DEQUANTISE: dict[int, tuple[int, int, Callable[[np.ndarray], np.ndarray]]] = {
    41: (128, 18, _q1_0),
    15: (256, 292, _q8_k),
}
NOT_DECODED = {9: "Q8_1 is ggml's intermediate type for dot products: ggml itself never dequantises it"}


def dequantise(blocks: np.ndarray, ggml: int) -> np.ndarray:
    """float32 values of whole blocks (uint8, one row per block), flattened."""
    import numpy as np

    with np.errstate(all="ignore"):  # a file's scales may be Inf or NaN: values, not warnings
        return np.ascontiguousarray(DEQUANTISE[ggml][2](blocks), dtype=np.float32).ravel()
