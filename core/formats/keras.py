"""Keras models: `.h5` (HDF5, read by h5py in an isolated child) and `.keras` (a zip).

HDF5 goes through libhdf5, a C library with a history of crashes on hostile files, so h5py runs
only in core/isolate.py's child: it lists groups, datasets (dtype, shape, file offset) and
attributes as plain data, and this process never imports h5py. `.keras` zips are read with
`zipfile`, as Keras itself reads them; `model.weights.h5` inside is parsed as nested HDF5.
"""

from __future__ import annotations

import json
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.errors import LimitExceeded as LimitError
from airlock.core.findings import LimitExceeded, Malformed, ParserCrash, Rule, Severity
from airlock.core.formats.contract import file_node
from airlock.core.formats.keras_config import ConfigWalker
from airlock.core.formats.zip import open_zipfile_member, zipfile_errors, zipfile_names
from airlock.core.isolate import MALFORMED, TIMEOUT, ChildFormatError, IsolationFailure, run_isolated
from airlock.core.source import Source, SourceFile
from airlock.core.text import safe_text
from airlock.core.tree import FIELD, FILE, GROUP, MEMBER, METADATA, TENSOR, Node

NAME = "keras"
EXTENSIONS = (".h5", ".hdf5", ".keras")

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CONFIG_ATTRS = ("model_config", "training_config")
MAX_CONFIG_BYTES = 64 * 1024 * 1024
MAX_OBJECTS = 200_000


class ExternalHdf5Data(Rule):
    id = "KRS005"
    severity = Severity.HIGH
    title = "HDF5 object reads another file"
    help = "An external link, external storage or virtual dataset makes HDF5 read bytes from another "\
        "file when the weights load; those bytes were never inspected."


class ForeignMember(Rule):
    id = "KRS009"
    severity = Severity.MEDIUM
    title = "Code or executable inside a Keras archive"
    help = ("A .keras archive holds config.json, metadata.json, the weights and assets. Keras never runs a "
            "Python file, script or executable shipped in it: something else is meant to.")


CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".sh", ".bat", ".cmd", ".ps1", ".exe", ".dll", ".so",
                 ".dylib")
EXECUTABLE_MAGICS = (b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"#!")


# Sniffing


def _hdf5_offset(source: Source) -> int | None:
    # A user block moves the superblock to 512, 1024, 2048... bytes.
    offset = 0
    while offset < min(source.size, 1 << 20):
        if source.read(offset, 8) == HDF5_MAGIC:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def _zip_names(source: Source) -> list[str] | None:
    if source.read(0, 4) not in (b"PK\x03\x04", b"PK\x05\x06"):
        return None
    return zipfile_names(source)


def sniff_source(source: Source) -> int:
    offset = _hdf5_offset(source)
    if offset is not None:
        return 90 if offset == 0 else 70
    names = _zip_names(source)
    if names and "config.json" in names and ({"metadata.json", "model.weights.h5"} & set(names)):
        return 70  # above a generic zip (30); a torch zip has */data.pkl instead
    return 0


def sniff(head: bytes, size: int) -> int:
    return 90 if head[:8] == HDF5_MAGIC else 0


# Parsing


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    if _hdf5_offset(source) is not None:
        root.attrs["container"] = "hdf5"
        _parse_hdf5(source, ctx, root)
    else:
        root.attrs["container"] = "zip"
        _parse_zip(source, ctx, root)
    return root


def _parse_hdf5(source: Source, ctx: ScanContext, root: Node) -> None:
    max_attr = min(MAX_CONFIG_BYTES, ctx.limits.max_header_bytes)
    try:
        desc = run_isolated("hdf5", source, ctx, {"max_objects": MAX_OBJECTS, "max_attr_bytes": max_attr})
    except IsolationFailure as failure:
        if failure.kind == MALFORMED:
            raise FormatError(f"HDF5 does not open ({failure.message})", 0) from None
        rule: type[Rule] = LimitExceeded if failure.kind == TIMEOUT else ParserCrash
        ctx.report(rule, f"hdf5: {failure.message}", node=root, offset=0)
        return
    attrs = desc.get("attrs", {})
    for key in ("keras_version", "backend"):
        if isinstance(attrs.get(key), str):
            root.attrs[key] = safe_text(attrs[key], 80)
    _add_attrs(root, attrs, skip=CONFIG_ATTRS)
    for key in CONFIG_ATTRS:
        text = attrs.get(key)
        if text is None:
            continue
        node = root.child(GROUP, key.replace("_", " "), attrs={"size": len(str(text))})
        if str(text).startswith("(attribute of") and str(text).endswith("not read)"):
            ctx.report(LimitExceeded, f"hdf5: the {key} attribute was not read {safe_text(str(text), 200)}: "
                       f"over the {max_attr:,}-byte budget, the model's layers were not inspected", node=node)
            continue
        owner = f"{source.member}!{key}" if source.member else key
        _judge_config_text(str(text), f"{key} attribute", ctx, node, member=owner)
    _add_objects(desc.get("objects", []), source, ctx, root)
    if desc.get("truncated"):
        ctx.report(LimitExceeded, f"hdf5: more than {MAX_OBJECTS:,} objects; the rest was not listed",
                   node=root)


def _judge_config_text(text: str, where: str, ctx: ScanContext, node: Node, *,
                       members: frozenset[str] | None = None, member: str | None = None) -> None:
    try:
        config = json.loads(text)
    except ValueError as exc:
        ctx.report(Malformed, f"malformed keras config: the {where} is not JSON ({exc}); Keras refuses "
                   "to load it", node=node)
        return
    except RecursionError:
        ctx.report(LimitExceeded, f"keras: the {where} is nested too deeply to read", node=node)
        return
    ConfigWalker(ctx, where, members=members, member=member).walk(config, node)


def _add_attrs(parent: Node, attrs: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    for key, value in attrs.items():
        if key in skip:
            continue
        parent.child(METADATA, f"{safe_text(key, 80)} = {safe_text(str(value), 120)}",
                     attrs={"key": safe_text(key), "value": safe_text(str(value), 400)})


def _add_objects(objects: list[dict[str, Any]], source: Source, ctx: ScanContext, root: Node) -> None:
    tree = root.child(GROUP, f"hdf5 objects ({len(objects)})")
    groups: dict[str, Node] = {"/": tree}
    for obj in objects:
        ctx.tick(512)
        path = str(obj.get("path", ""))
        parent_path, _, name = path.rpartition("/")
        parent = groups.get(parent_path or "/", tree)
        kind = obj.get("kind")
        label = safe_text(name, 120)
        if kind == "group":
            node = parent.child(GROUP, label, member=source.member)
            groups[path] = node
            _add_attrs(node, obj.get("attrs", {}))
        elif kind == "dataset":
            shape = tuple(int(d) for d in obj.get("shape") or ())
            attrs: dict[str, Any] = {"dtype": safe_text(str(obj.get("dtype")), 60), "shape": shape,
                                     "size": obj.get("storage")}
            node = parent.child(TENSOR, label, offset=obj.get("offset"), length=obj.get("storage"),
                                member=source.member, attrs=attrs)
            for ext in obj.get("external", []):
                ctx.report(ExternalHdf5Data, f"hdf5 dataset {safe_text(path, 160)!r} stores its data in "
                           f"the external file {safe_text(str(ext), 200)!r}", node=node)
            if obj.get("virtual"):
                ctx.report(ExternalHdf5Data, f"hdf5 dataset {safe_text(path, 160)!r} is virtual: it maps "
                           "data from other files", node=node)
        elif kind == "external_link":
            node = parent.child(FILE, f"{label} → {safe_text(str(obj.get('file')), 120)}")
            ctx.report(ExternalHdf5Data, f"hdf5 external link {safe_text(path, 160)!r} points into the "
                       f"file {safe_text(str(obj.get('file')), 200)!r}", node=node)
        elif kind == "soft_link":
            parent.child(FIELD, f"{label} → {safe_text(str(obj.get('target')), 120)}")
        else:
            parent.child(GROUP, f"{label} ({safe_text(str(obj.get('error', kind)), 120)})")



# .keras zips


def _parse_zip(source: Source, ctx: ScanContext, root: Node) -> None:
    import zipfile

    zip_errors = zipfile_errors()
    try:
        zf = zipfile.ZipFile(SourceFile(source))
    except zip_errors as exc:
        raise FormatError(f"the .keras zip does not open: {exc}", 0) from None
    with zf:
        infos = zf.infolist()
        root.attrs["members"] = len(infos)
        names = frozenset(info.filename for info in infos)
        for info in infos:
            ctx.check()
            name = safe_text(info.filename, 200)
            node = root.child(MEMBER, name, offset=info.header_offset, length=info.compress_size,
                              member=info.filename, attrs={"size": info.file_size})
            if info.is_dir():
                continue
            if info.filename in ("config.json", "metadata.json") and info.file_size > MAX_CONFIG_BYTES:
                ctx.report(LimitExceeded, f"member {name} declares {info.file_size:,} bytes, over the "
                           f"{MAX_CONFIG_BYTES:,}-byte budget: not inspected", node=node)
                continue
            member = f"{source.member}!{info.filename}" if source.member else info.filename
            try:
                opened = open_zipfile_member(zf, info, source, ctx, member, stored_crc=True)
            except FormatError as exc:
                ctx.report(Malformed, f"malformed .keras member {name}: {exc.message}; Keras' zipfile fails "
                           "too", node=node)
                continue
            if isinstance(opened.error, LimitError):
                ctx.report(LimitExceeded, f"{opened.error.message}; the first {opened.source.size:,} bytes "
                           "are read below", node=node)
            elif opened.error is not None:
                ctx.report(Malformed, f"malformed .keras member {name}: {opened.error.message}; Keras' "
                           "zipfile fails too", node=node)
            try:
                _member(info.filename, opened.source, source, ctx, node, names)
            finally:
                opened.done()


def _member(filename: str, sub: Source, source: Source, ctx: ScanContext, node: Node,
            names: frozenset[str]) -> None:
    if filename == "config.json":
        owner = f"{source.member}!{filename}" if source.member else filename
        _judge_config_text(sub.read(0, sub.size).decode("utf-8", "replace"), "config.json", ctx, node,
                           members=names, member=owner)
    elif filename == "metadata.json":
        try:
            meta = json.loads(sub.read(0, sub.size))
        except (ValueError, RecursionError):
            ctx.report(Malformed, "malformed metadata.json: not JSON", node=node)
            return
        if isinstance(meta, dict):
            _add_attrs(node, meta)
    else:
        head = sub.head(16)
        if filename.lower().endswith(CODE_SUFFIXES) or head.startswith(EXECUTABLE_MAGICS):
            what = "an executable or script" if head.startswith(EXECUTABLE_MAGICS) else "code"
            ctx.report(ForeignMember, f"member {safe_text(filename, 160)} is {what}: Keras does not load it, "
                       "so it is shipped for something else to run", node=node)
        ctx.parse_nested(sub, node, label=safe_text(filename.rsplit("/", 1)[-1], 120))


# The child side: runs in core/isolate.py's child process, the only place h5py is imported.


def describe_hdf5(data: bytes | None, path: str | None, options: dict[str, Any]) -> dict[str, Any]:
    from airlock.core.formats import keras_hdf5

    try:
        return keras_hdf5.describe(data, path, options)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # h5py's ways of refusing a file
        raise ChildFormatError(f"HDF5: {exc}") from None
