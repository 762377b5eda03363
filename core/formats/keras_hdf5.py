"""HDF5 listing for the isolated child (core/isolate.py): groups, datasets, links and attributes.

Runs only in the child process. Metadata only: no dataset is read (reading one could make
libhdf5 load a filter plugin or follow external storage). Links are inspected without being
followed, hard-link cycles are cut by object address, and attributes are size-checked before
they are read. A variable-length string attribute (how h5py stores `model_config`) has a 16-byte
descriptor as its storage; its text lives in the file's global heap, so its real size is bounded
by the largest global heap object, measured before any such attribute is read.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from typing import Any

_MAX_TEXT = 1000
_MAX_ITEMS = 1000


def describe(data: bytes | None, path: str | None, options: dict[str, Any]) -> dict[str, Any]:
    import h5py

    _no_plugins(h5py)
    max_objects = int(options.get("max_objects", 200_000))
    max_attr = int(options.get("max_attr_bytes", 64 * 1024 * 1024))
    size = len(data) if data is not None else os.path.getsize(path) if path is not None else 0
    # In a file no bigger than the cap, no value can be bigger: the heap need not be measured.
    heap = _largest_heap_object(data, path) if size > max_attr else 0
    handle = h5py.File(io.BytesIO(data) if data is not None else path, "r")
    with handle as f:
        out: dict[str, Any] = {"attrs": _attrs(f, max_attr, heap), "objects": [], "truncated": False}
        objects: list[dict[str, Any]] = out["objects"]
        seen = {_address(h5py, f)}
        stack: list[tuple[str, Any]] = [("", f)]
        while stack:
            prefix, group = stack.pop()
            try:
                names = list(group.keys())
            except Exception as exc:  # noqa: BLE001 - any libhdf5 error is reported, not raised
                objects.append({"path": prefix or "/", "kind": "error", "error": _err(exc)})
                continue
            for name in names:
                if len(objects) >= max_objects:
                    out["truncated"] = True
                    return out
                entry = _entry(h5py, group, name, f"{prefix}/{name}", max_attr, heap, seen, stack)
                objects.append(entry)
    return out


def _entry(h5py: Any, group: Any, name: str, path: str, max_attr: int, heap: int, seen: set[Any],
           stack: list[tuple[str, Any]]) -> dict[str, Any]:
    try:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            return {"path": path, "kind": "external_link", "file": _text(link.filename),
                    "target": _text(link.path)}
        if isinstance(link, h5py.SoftLink):
            return {"path": path, "kind": "soft_link", "target": _text(link.path)}
        obj = group[name]
    except Exception as exc:  # noqa: BLE001 - a broken object is listed with its error
        return {"path": path, "kind": "error", "error": _err(exc)}
    address = _address(h5py, obj)
    if address in seen:
        return {"path": path, "kind": "error", "error": "hard link to an object already listed"}
    seen.add(address)
    if isinstance(obj, h5py.Group):
        stack.append((path, obj))
        return {"path": path, "kind": "group", "attrs": _attrs(obj, max_attr, heap)}
    if isinstance(obj, h5py.Dataset):
        return _dataset(h5py, obj, path, max_attr, heap)
    return {"path": path, "kind": "error", "error": f"object of type {type(obj).__name__}"}


def _dataset(h5py: Any, obj: Any, path: str, max_attr: int, heap: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "kind": "dataset", "attrs": _attrs(obj, max_attr, heap)}
    try:
        entry["dtype"] = str(obj.dtype)
    except Exception as exc:  # noqa: BLE001
        entry["dtype"] = f"unreadable ({_err(exc)})"
    entry["shape"] = list(obj.shape) if obj.shape is not None else []
    entry["offset"] = obj.id.get_offset()
    entry["storage"] = int(obj.id.get_storage_size())
    plist = obj.id.get_create_plist()
    entry["external"] = [_text(plist.get_external(i)[0]) for i in range(min(plist.get_external_count(), 64))]
    entry["virtual"] = bool(plist.get_layout() == h5py.h5d.VIRTUAL)
    return entry


def _address(h5py: Any, obj: Any) -> tuple[Any, ...]:
    info = h5py.h5o.get_info(obj.id)
    return (info.fileno, info.addr)


def _attrs(obj: Any, max_bytes: int, heap: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        names = list(obj.attrs.keys())
    except Exception as exc:  # noqa: BLE001
        return {"(attributes)": f"unreadable: {_err(exc)}"}
    for name in names[:_MAX_ITEMS]:
        try:
            aid = obj.attrs.get_id(name)
            size = aid.get_storage_size()
            if size > max_bytes:
                out[name] = f"(attribute of {size:,} bytes, not read)"
                continue
            if heap > max_bytes and _variable_length(aid.get_type()):
                out[name] = (f"(attribute of variable length: the file's global heap holds an object of "
                             f"{heap:,} bytes, more than {max_bytes:,}, not read)")
                continue
            value = _value(obj.attrs[name], config=name in ("model_config", "training_config"))
            if isinstance(value, str) and len(value) > max_bytes:
                value = f"(attribute of {len(value):,} characters, not read)"
            out[name] = value
        except Exception as exc:  # noqa: BLE001
            out[name] = f"(unreadable: {_err(exc)})"
    return out


def _variable_length(tid: Any) -> bool:
    """A variable-length type, or one holding one (an array or compound of vlen strings)."""
    import h5py

    if isinstance(tid, h5py.h5t.TypeVlenID):
        return True
    if isinstance(tid, h5py.h5t.TypeStringID):
        return bool(tid.is_variable_str())
    if isinstance(tid, h5py.h5t.TypeArrayID):
        return _variable_length(tid.get_super())
    if isinstance(tid, h5py.h5t.TypeCompoundID):
        return any(_variable_length(tid.get_member_type(i)) for i in range(tid.get_nmembers()))
    return False


_GCOL = b"GCOL"
_SCAN_CHUNK = 4 << 20


def _largest_heap_object(data: bytes | None, path: str | None) -> int:
    """The largest object in the file's global heap collections ("GCOL" blocks, where libhdf5 keeps
    variable-length data): no variable-length value is bigger. A collection whose object list does
    not parse counts as one object of its whole size, and one that claims more than the file holds
    as the rest of the file: the bound errs on the large side."""
    if data is not None:
        size = len(data)

        def read(offset: int, n: int) -> bytes:
            return data[offset : offset + n]
    elif path is not None:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; the child only reads
        size = os.fstat(fh.fileno()).st_size

        def read(offset: int, n: int) -> bytes:
            fh.seek(offset)
            return fh.read(n)
    else:
        return 0
    try:
        return max((_collection_largest(read, at, size) for at in _find_all(read, size, _GCOL)), default=0)
    finally:
        if data is None:
            fh.close()


def _find_all(read: Callable[[int, int], bytes], size: int, needle: bytes) -> list[int]:
    found, pos = [], 0
    while pos < size:
        chunk = read(pos, _SCAN_CHUNK + len(needle) - 1)
        at = chunk.find(needle)
        while at >= 0:
            found.append(pos + at)
            at = chunk.find(needle, at + 1)
        pos += _SCAN_CHUNK
    return sorted(set(found))


def _collection_largest(read: Callable[[int, int], bytes], at: int, size: int) -> int:
    head = read(at, 16)
    if len(head) < 16 or head[4] != 1:
        return 0  # not a collection header (version 1), e.g. "GCOL" inside some data
    length = int(struct.unpack_from("<Q", head, 8)[0])
    end = min(at + length, size)
    largest, pos = 0, at + 16
    while pos + 16 <= end:
        index, _refs, _reserved, object_size = (int(v) for v in struct.unpack("<HHIQ", read(pos, 16)))
        if index == 0:  # free space: the last entry
            break
        if object_size > end - pos - 16:
            return end - at  # does not parse: count the whole collection
        largest = max(largest, object_size)
        pos += 16 + object_size + (-object_size % 8)
    return largest


def _value(value: Any, *, config: bool = False) -> Any:
    limit = None if config else _MAX_TEXT
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")[:limit]
    if isinstance(value, str):
        return value[:limit]
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        if value.shape == ():
            return _value(value.item(), config=config)
        if value.dtype.kind in "SOU":
            return [_value(v) for v in value.reshape(-1)[:_MAX_ITEMS].tolist()]
        if value.size <= 16:
            return value.tolist()
        return f"array {value.dtype} {tuple(value.shape)}"
    if isinstance(value, int | float | bool) or value is None:
        return value
    return str(value)[:_MAX_TEXT]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")[:_MAX_TEXT]
    return str(value)[:_MAX_TEXT]


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _no_plugins(h5py: Any) -> None:
    # Filter plugins are shared libraries libhdf5 loads on demand: remove every search path.
    try:
        while h5py.h5pl.size() > 0:
            h5py.h5pl.remove(0)
    except Exception:  # noqa: BLE001 - older libhdf5 without H5PL: nothing is read anyway
        pass
