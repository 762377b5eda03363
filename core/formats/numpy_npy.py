"""NumPy `.npy` files, read the way `numpy.lib.format.read_array` reads them.

Layout: magic `\\x93NUMPY`, version (1.0, 2.0 or 3.0), a header length (2 bytes in 1.0, 4 after),
a header that is the repr of a dict `{'descr', 'fortran_order', 'shape'}`, then the data. Object
dtypes (`|O`, `|O8`, or an object field of a structured dtype) store a pickle instead of data:
`numpy.load(allow_pickle=True)` unpickles it, so it is scanned like any pickle.

The header dict is read with `airlock.core.literal` (numpy uses `ast.literal_eval`, which calls
`compile`); the descr is turned into a dtype with numpy's own `descr_to_dtype`, which only
interprets type strings and nested lists, so dtype sizes and object fields match numpy exactly.
"""

from __future__ import annotations

import struct
import warnings
from typing import Any, NamedTuple

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Malformed, Rule, Severity, TrailingData
from airlock.core.formats.contract import file_node
from airlock.core.formats.pickle import report_trailing
from airlock.core.literal import LiteralError, read_literal
from airlock.core.pickle import is_data_only, scan_pickle
from airlock.core.pickle.probe import looks_like_pickle
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import DATA, FIELD, HEADER, TENSOR, Node

NAME = "npy"
EXTENSIONS = (".npy",)

MAGIC = b"\x93NUMPY"
_VERSIONS = {(1, 0): ("<H", "latin-1"), (2, 0): ("<I", "latin-1"), (3, 0): ("<I", "utf-8")}
_EXPECTED_KEYS = {"descr", "fortran_order", "shape"}
NUMPY_MAX_HEADER = 10_000  # numpy.lib.format._MAX_HEADER_SIZE: longer headers need allow_pickle=True
_INT64_LIMIT = 1 << 63


class ObjectArray(Rule):
    id = "NPY001"
    severity = Severity.INFO
    title = "Object array: the data is a pickle"
    help = ("numpy.load(allow_pickle=True) unpickles the bytes after the header; Airlock scans them "
            "as a pickle. Without allow_pickle numpy refuses the file.")


class LongHeader(Rule):
    id = "NPY002"
    severity = Severity.LOW
    title = "Header longer than numpy's safety limit"
    help = ("numpy refuses .npy headers over 10,000 characters unless allow_pickle=True; numpy never "
            "writes one that long for an ordinary array.")


def sniff(head: bytes, size: int) -> int:
    return 100 if head.startswith(MAGIC) else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    read_npy(source, ctx, root)
    return root


class Layout(NamedTuple):
    """Where a .npy header is: what `read_layout` finds in the first 12 bytes."""

    version: tuple[int, int]
    encoding: str  # of the header text
    length_size: int  # bytes of the header-length field at offset 8
    header_len: int
    header_start: int  # offset of the header text; the data follows it


def read_layout(head: bytes, size: int) -> Layout:
    """Magic, version and header length from the first 12 bytes (FormatError where numpy refuses).

    Shared with the converter (`convert/npz.py`), which reads .npy headers inside .npz members."""
    if len(head) < 10 or not head.startswith(MAGIC):
        raise FormatError(f"truncated .npy: {size} bytes, the magic and version need 10", 0)
    version = (head[6], head[7])
    if version not in _VERSIONS:
        raise FormatError(f"unsupported .npy version {version[0]}.{version[1]} (numpy reads 1.0, 2.0, 3.0)",
                          6)
    length_format, encoding = _VERSIONS[version]
    length_size = struct.calcsize(length_format)
    if len(head) < 8 + length_size:
        raise FormatError("truncated .npy: the header length is cut off", 8)
    (header_len,) = struct.unpack_from(length_format, head, 8)
    return Layout(version, encoding, length_size, header_len, 8 + length_size)


def read_npy(source: Source, ctx: ScanContext, root: Node) -> None:
    member = source.member
    version, encoding, length_size, header_len, header_start = read_layout(source.read(0, 12), source.size)
    remaining = source.size - header_start
    header = root.child(HEADER, "header", offset=0, length=header_start + min(header_len, max(remaining, 0)),
                        member=member, attrs={"version": f"{version[0]}.{version[1]}",
                                              "header_length": header_len})
    header.child(FIELD, f"version {version[0]}.{version[1]}", offset=6, length=2, member=member)
    header.child(FIELD, f"header length {header_len:,}", offset=8, length=length_size, member=member)
    if header_len > remaining:
        raise FormatError(f"truncated .npy: the header announces {header_len:,} bytes, but only "
                          f"{remaining:,} remain", 8)
    if header_len > ctx.limits.max_header_bytes:
        limit = ctx.limits.max_header_bytes
        raise LimitExceeded(f".npy header of {header_len:,} bytes is over the {limit:,} byte limit", 8)
    try:
        text = source.read(header_start, header_len).decode(encoding)
    except UnicodeDecodeError as exc:
        raise FormatError(f"malformed .npy header: not {encoding} ({exc.reason})",
                          header_start + exc.start) from None
    if len(text) > NUMPY_MAX_HEADER:
        ctx.report(LongHeader, f".npy header of {len(text):,} characters: numpy.load refuses it unless "
                   "allow_pickle=True", node=header, offset=header_start)
    fields = header_fields(text, version, header_start)
    descr, fortran, shape = fields["descr"], fields["fortran_order"], fields["shape"]
    header.child(FIELD, f"descr: {safe_text(repr(descr), 160)}", offset=header_start, length=header_len,
                 member=member, attrs={"value": safe_text(repr(descr), 400)})
    header.child(FIELD, f"fortran_order: {fortran}", offset=header_start, length=header_len, member=member)
    header.child(FIELD, f"shape: {safe_text(repr(shape), 160)}", offset=header_start, length=header_len,
                 member=member)
    dtype = descr_to_dtype(descr, header_start)
    count = element_count(shape, header_start)
    data_start = header_start + header_len
    add_array(source, ctx, root, dtype, shape, count, data_start, fortran_order=fortran)


def header_fields(text: str, version: tuple[int, int], offset: int) -> dict[str, Any]:
    """The header dict, checked as numpy checks it: exactly descr, fortran_order (a bool), shape (ints)."""
    try:
        value = read_literal(text)
    except LiteralError as exc:
        if version > (2, 0):
            raise FormatError(f"malformed .npy header: {exc.message}", offset + (exc.offset or 0)) from None
        try:  # numpy retries version 1/2 headers without Python 2 'L' suffixes
            value = read_literal(text, allow_long_suffix=True)
        except LiteralError as exc2:
            raise FormatError(f"malformed .npy header: {exc2.message}", offset + (exc2.offset or 0)) from None
    if not isinstance(value, dict):
        raise FormatError(f"malformed .npy header: not a dict but {type(value).__name__}", offset)
    if set(value) != _EXPECTED_KEYS or len(value) != 3:
        keys = safe_text(repr(sorted(map(repr, value))), 160)
        raise FormatError(f"malformed .npy header: keys {keys}, numpy expects exactly descr, fortran_order, "
                          "shape", offset)
    shape = value["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(x, int) for x in shape):
        raise FormatError(f"malformed .npy header: shape {safe_text(repr(shape), 80)} is not a tuple of ints",
                          offset)
    if not isinstance(value["fortran_order"], bool):
        shown = safe_text(repr(value["fortran_order"]), 40)
        raise FormatError(f"malformed .npy header: fortran_order {shown} is not a bool", offset)
    return value


def descr_to_dtype(descr: Any, offset: int) -> Any:
    """numpy's own dtype for a header descr (or FormatError where numpy.load would fail)."""
    import numpy  # only files of this kind pay for numpy
    from numpy.lib.format import descr_to_dtype as numpy_descr_to_dtype

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated type codes still load
            dtype = numpy_descr_to_dtype(descr)
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds on hostile descrs; all mean "refused"
        raise FormatError(f"malformed .npy header: descr {safe_text(repr(descr), 80)} is not a dtype numpy "
                          f"accepts ({type(exc).__name__}: {safe_text(str(exc), 120)})", offset) from None
    if not isinstance(dtype, numpy.dtype):
        raise FormatError("malformed .npy header: descr does not give a dtype", offset)
    return dtype


def element_count(shape: tuple[int, ...], offset: int) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            shown = safe_text(repr(shape), 80)
            raise FormatError(f"malformed .npy header: negative dimension in shape {shown}", offset)
        count *= int(dim)
    if count >= _INT64_LIMIT:
        raise FormatError(f"malformed .npy header: shape {safe_text(repr(shape), 80)} has 2^63 elements or "
                          "more (numpy's int64 count overflows)", offset)
    return count


def add_array(source: Source, ctx: ScanContext, root: Node, dtype: Any, shape: tuple[int, ...], count: int,
              data_start: int, *, fortran_order: bool) -> None:
    """The array node, then the data: a pickle for object dtypes, raw bytes checked for size otherwise."""
    member = source.member
    attrs: dict[str, Any] = {"dtype": safe_text(str(dtype), 120), "shape": tuple(int(d) for d in shape),
                             "fortran_order": fortran_order, "elements": count}
    if dtype.names:
        attrs["fields"] = safe_text(", ".join(str(n) for n in dtype.names), 300)
    if dtype.hasobject:
        attrs["size"] = source.size - data_start
        array = root.child(TENSOR, "array (object: pickled)", offset=data_start,
                           length=source.size - data_start, member=member, attrs=attrs)
        ctx.report(ObjectArray, f"object array {safe_text(str(dtype), 60)}: numpy.load(allow_pickle=True) "
                   "unpickles the data", node=array, offset=data_start)
        runs = scan_pickle(source, ctx, array, start=data_start, label="object array pickle")
        if not runs:
            ctx.report(Malformed, "malformed object array: no pickle after the header", node=array,
                       offset=data_start)
            return
        last = runs[-1]
        if last.complete and last.end < source.size:
            report_trailing(source, ctx, root, last.end)
        if is_data_only(runs):
            array.attrs["data_only"] = True
        return
    nbytes = count * int(dtype.itemsize)
    attrs["size"] = nbytes
    remaining = source.size - data_start
    root.child(TENSOR, "array", offset=data_start, length=min(nbytes, remaining), member=member, attrs=attrs)
    if nbytes > remaining:
        shown = safe_text(repr(tuple(shape)), 60)
        ctx.report(Malformed, f"truncated .npy data: shape {shown} × {dtype.itemsize} bytes needs "
                   f"{nbytes:,} bytes, but only {remaining:,} remain", node=root, offset=data_start)
    elif nbytes < remaining:
        _trailing(source, ctx, root, data_start + nbytes)


def _trailing(source: Source, ctx: ScanContext, root: Node, start: int) -> None:
    """numpy reads exactly the array's bytes and ignores the rest; a pickle hidden there is scanned."""
    size = source.size - start
    preview = safe_text(source.read(start, 32), 48)
    node = root.child(DATA, f"trailing bytes ({size:,})", offset=start, length=size, member=source.member,
                      attrs={"preview": preview})
    hidden = looks_like_pickle(source.read(start, 512)) >= 40
    kind = "a pickle, scanned below" if hidden else "data"
    ctx.report(TrailingData, f"{size:,} bytes after the array data ({kind}: {preview}); numpy.load ignores "
               "them, but they can hide content", node=node, offset=start)
    if hidden:
        scan_pickle(source, ctx, node, start=start, label="trailing pickle")
