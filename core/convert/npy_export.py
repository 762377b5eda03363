"""Export one tensor's values as a `.npy` file, streamed from the source file's bytes.

The values are decoded chunk by chunk by `airlock.core.tensors` (GGML blocks dequantised, BF16 and
8-bit floats widened to float32, as the values table shows them) and written behind a header
built here by the format's rules (NEP 1): magic, version, a little dict in Python literal syntax
padded with spaces to a multiple of 64 bytes. No object dtype is ever written, so `numpy.load`
reads the file without `allow_pickle`. Like the converter, the output goes to a temporary file in
the target folder and is renamed into place once complete; the source is never overwritten.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from airlock.core import tensors
from airlock.core.errors import Cancelled
from airlock.core.tensors import Read, TensorData

MAGIC = b"\x93NUMPY"
ALIGN = 64
CHUNK = 1 << 20  # values per write


def header(descr: str, shape: tuple[int, ...], fortran: bool) -> bytes:
    """The .npy header for an array of numpy type string `descr` ('<f4', '|u1', '|b1')."""
    dims = ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "")
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({dims}), }}"
    for version, size_bytes in ((1, 2), (2, 4)):
        prefix = len(MAGIC) + 2 + size_bytes
        total = -(-(prefix + len(text) + 1) // ALIGN) * ALIGN
        body = text + " " * (total - prefix - len(text) - 1) + "\n"
        if len(body) < 1 << (8 * size_bytes):
            size = len(body).to_bytes(size_bytes, "little")
            return MAGIC + bytes([version, 0]) + size + body.encode("latin-1")
    raise ValueError("the array's header is too long for the .npy format")


def write_npy(read: Read, t: TensorData, out_path: str, *, source_path: str | None = None,
              overwrite: bool = False, progress: Callable[[float, str], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> int:
    """Write `t`'s values to `out_path`; returns the bytes written. Raises FormatError if the source
    ends before the tensor does, FileExistsError / ValueError for a target it must not write."""
    if source_path is not None and os.path.exists(out_path) and os.path.samefile(source_path, out_path):
        raise ValueError("the output would overwrite the file being inspected")
    if os.path.exists(out_path) and not overwrite:
        raise FileExistsError(f"{out_path} exists")
    dt = tensors.value_dtype(t)
    head = header(dt.newbyteorder("<").str if dt.itemsize > 1 else dt.str, t.shape, t.fortran)
    folder = os.path.dirname(os.path.abspath(out_path))
    fd, temp = tempfile.mkstemp(prefix=".airlock-", suffix=".npy.tmp", dir=folder)
    written = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(head)
            written = len(head)
            for chunk in tensors.chunks(read, t, chunk=CHUNK):
                if cancelled is not None and cancelled():
                    raise Cancelled("export cancelled")
                data = chunk.values.astype(dt.newbyteorder("<"), copy=False).tobytes()
                fh.write(data)
                written += len(data)
                if progress is not None:
                    progress(chunk.stop / max(t.numel, 1), "writing values")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, out_path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return written
