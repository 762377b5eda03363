"""HDF5 listing for the isolated child (core/isolate.py): groups, datasets, links and attributes.

Runs only in the child process. Metadata only: no dataset is read (reading one could make
libhdf5 load a filter plugin or follow external storage). Links are inspected without being
followed, hard-link cycles are cut by object address, and attributes are size-checked before
they are read.
"""

from __future__ import annotations

import io
from typing import Any

_MAX_TEXT = 1000
_MAX_ITEMS = 1000


def describe(data: bytes | None, path: str | None, options: dict[str, Any]) -> dict[str, Any]:
    import h5py

    _no_plugins(h5py)
    max_objects = int(options.get("max_objects", 200_000))
    max_attr = int(options.get("max_attr_bytes", 64 * 1024 * 1024))
    handle = h5py.File(io.BytesIO(data) if data is not None else path, "r")
    with handle as f:
        out: dict[str, Any] = {"attrs": _attrs(f, max_attr), "objects": [], "truncated": False}
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
                entry = _entry(h5py, group, name, f"{prefix}/{name}", max_attr, seen, stack)
                objects.append(entry)
    return out


def _entry(h5py: Any, group: Any, name: str, path: str, max_attr: int, seen: set[Any],
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
        return {"path": path, "kind": "group", "attrs": _attrs(obj, max_attr)}
    if isinstance(obj, h5py.Dataset):
        return _dataset(h5py, obj, path, max_attr)
    return {"path": path, "kind": "error", "error": f"object of type {type(obj).__name__}"}


def _dataset(h5py: Any, obj: Any, path: str, max_attr: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "kind": "dataset", "attrs": _attrs(obj, max_attr)}
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


def _attrs(obj: Any, max_bytes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        names = list(obj.attrs.keys())
    except Exception as exc:  # noqa: BLE001
        return {"(attributes)": f"unreadable: {_err(exc)}"}
    for name in names[:_MAX_ITEMS]:
        try:
            size = obj.attrs.get_id(name).get_storage_size()
            if size > max_bytes:
                out[name] = f"(attribute of {size:,} bytes, not read)"
                continue
            out[name] = _value(obj.attrs[name], config=name in ("model_config", "training_config"))
        except Exception as exc:  # noqa: BLE001
            out[name] = f"(unreadable: {_err(exc)})"
    return out


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
