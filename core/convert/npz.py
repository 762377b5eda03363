"""`.npz` and `.npy` inputs, described as TensorSpecs from their headers (no `numpy.load`).

`zipfile` only reads the directory here (the same view `numpy.load` has, since it uses
`zipfile` too); member bytes are streamed by the writer. The `.npy` header is read by the
engine's own reader (`formats.numpy_npy.read_layout` / `header_fields`, never `ast.literal_eval`,
which would call `compile`): the converter accepts exactly the headers a scan accepts.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import Any

from airlock.core.convert.model import ConvertError, OutTensor, Plan
from airlock.core.errors import FormatError
from airlock.core.formats import numpy_npy
from airlock.core.tensor_spec import (
    DEFLATED,
    DTYPE_SIZES,
    STORED,
    StorageRef,
    TensorSpec,
    contiguous_strides,
)
from airlock.core.text import safe_text

MAX_HEADER = 1 << 20  # numpy itself refuses headers over 10,000 bytes unless told otherwise

_KINDS = {"f2": "F16", "f4": "F32", "f8": "F64", "i1": "I8", "i2": "I16", "i4": "I32", "i8": "I64",
          "u1": "U8", "u2": "U16", "u4": "U32", "u8": "U64", "b1": "BOOL", "c8": "C64"}


class NpyHeader:
    def __init__(self, dtype: str, shape: tuple[int, ...], fortran: bool, data_offset: int) -> None:
        self.dtype, self.shape, self.fortran, self.data_offset = dtype, shape, fortran, data_offset


def parse_npy_header(head: bytes) -> NpyHeader:
    """Header of a .npy stream; `data_offset` is where the array bytes start."""
    try:
        version, encoding, _, hlen, start = numpy_npy.read_layout(head, len(head))
        if hlen > MAX_HEADER or start + hlen > len(head):
            raise ConvertError(f".npy header of {hlen} bytes is truncated or too large")
        text = head[start:start + hlen].decode(encoding)
        value = numpy_npy.header_fields(text, version, start)
    except FormatError as exc:
        raise ConvertError(f"not a readable .npy array: {exc.message}") from None
    except UnicodeDecodeError as exc:
        raise ConvertError(f"not a readable .npy array: header not {encoding} ({exc.reason})") from None
    descr, shape, fortran = value["descr"], value["shape"], value["fortran_order"]
    if not all(d >= 0 for d in shape):
        raise ConvertError(f".npy shape {safe_text(repr(shape), 80)} is not a tuple of sizes")
    if not isinstance(descr, str):
        raise ConvertError("structured dtype: not a plain tensor")
    order = descr[:1]
    kind = descr[1:] if order in "<>|=" else descr
    dtype = _KINDS.get(kind)
    if dtype is None:
        raise ConvertError(f"dtype {safe_text(descr, 40)} has no SafeTensors equivalent"
                           + (" (object array: holds a pickle)" if kind.startswith("O") else ""))
    if order == ">" and DTYPE_SIZES[dtype] > 1:
        raise ConvertError(f"big-endian dtype {descr} is not converted")
    return NpyHeader(dtype, shape, bool(fortran), start + hlen)


def _spec(h: NpyHeader, ref_key: str, file_offset: int, member: str | None, compression: int,
          csize: int | None, total: int) -> TensorSpec:
    itemsize = DTYPE_SIZES[h.dtype]
    strides = contiguous_strides(h.shape)
    if h.fortran:
        strides = tuple(reversed(contiguous_strides(tuple(reversed(h.shape)))))
    numel = 1
    for d in h.shape:
        numel *= d
    if compression == STORED:
        ref = StorageRef(ref_key, h.dtype, numel * itemsize, file_offset + h.data_offset, member=member)
        return TensorSpec(h.dtype, h.shape, strides, 0, ref)
    if h.data_offset % itemsize:
        raise ConvertError(f"array data starts at byte {h.data_offset}, not a multiple of {itemsize}")
    # Deflated: the storage is the whole inflated member; the header is skipped as an offset.
    ref = StorageRef(ref_key, h.dtype, total, file_offset, member=member, compression=DEFLATED,
                     compressed_size=csize)
    return TensorSpec(h.dtype, h.shape, strides, h.data_offset // itemsize, ref)


def plan_npy(path: str, plan: Plan, name: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(MAX_HEADER + 12)
        size = fh.seek(0, io.SEEK_END)
    h = parse_npy_header(head)
    spec = _spec(h, name, 0, None, STORED, None, size)
    plan.tensors.append(OutTensor(name, h.dtype, h.shape, spec, path=path))


def plan_npz(path: str, plan: Plan) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise ConvertError(f"cannot read the zip directory: {exc}") from None
    with archive, open(path, "rb") as fh:
        size = fh.seek(0, io.SEEK_END)
        names = [i.filename for i in archive.infolist()]
        if len(names) != len(set(names)):
            raise ConvertError("the .npz has duplicate member names (readers disagree on which one counts)")
        for info in archive.infolist():
            member = safe_text(info.filename)
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            try:
                plan.tensors.append(_member_tensor(fh, info, key, path, size))
            except ConvertError as exc:
                plan.skipped.append((member, str(exc)))


def _member_tensor(fh: Any, info: zipfile.ZipInfo, key: str, path: str, size: int) -> OutTensor:
    if not 0 <= info.header_offset <= size - 30:
        raise ConvertError(f"local header offset {info.header_offset} is outside the file")
    if info.flag_bits & 1:
        raise ConvertError("encrypted member")
    if info.compress_type not in (STORED, DEFLATED):
        raise ConvertError(f"compression method {info.compress_type} is not supported")
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise ConvertError(f"no local header at offset {info.header_offset}")
    name_len, extra_len = struct.unpack_from("<HH", local, 26)
    data = info.header_offset + 30 + name_len + extra_len
    fh.seek(data)
    if info.compress_type == STORED:
        head = fh.read(min(info.file_size, MAX_HEADER + 12))
    else:
        raw = fh.read(min(info.compress_size, 1 << 16))
        try:
            head = zlib.decompressobj(-15).decompress(raw, MAX_HEADER + 12)
        except zlib.error as exc:
            raise ConvertError(f"corrupt deflated data: {exc}") from None
    h = parse_npy_header(head)
    spec = _spec(h, info.filename, data, info.filename, info.compress_type, info.compress_size,
                 info.file_size)
    needed = h.data_offset + spec.nbytes
    if needed > info.file_size:
        raise ConvertError(f"the array needs {needed} bytes but the member holds {info.file_size}")
    return OutTensor(key, h.dtype, h.shape, spec, path=path)
