"""Sharded SafeTensors: `model.safetensors.index.json` and the shard files it names.

Loaders (transformers, accelerate) open every shard the index names, joined to the index's
folder, and load whatever each shard holds. An index that disagrees with its shards means the
model a reviewer reads in the index is not the one that loads; a shard name with a path in it
reads a file outside the model's folder. Each shard is parsed (header only) as its own subtree.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import NotInspected, Rule, Severity
from airlock.core.formats.contract import file_node
from airlock.core.formats.safetensors import load_json, read_header
from airlock.core.source import Source
from airlock.core.tensor_tree import add_tensor_tree
from airlock.core.text import safe_text
from airlock.core.tree import FIELD, FILE, GROUP, METADATA, Node

NAME = "safetensors-index"
EXTENSIONS = (".json",)
OVERLAPS = ("json", "yaml")  # an index is JSON, claimed by content above the generic reader
MAX_NAMES = 5  # tensor names quoted per finding; the rest are counted


class IndexInvalid(Rule):
    id = "ST101"
    severity = Severity.HIGH
    title = "SafeTensors index invalid"
    help = ("The index is not JSON, has duplicate keys, or its weight_map is not a map of names to shard "
            "files.")


class IndexMissingTensor(Rule):
    id = "ST102"
    severity = Severity.HIGH
    title = "Indexed tensor missing from every shard"
    help = "The index lists a tensor that no shard holds: the index and the files disagree."


class IndexWrongShard(Rule):
    id = "ST103"
    severity = Severity.HIGH
    title = "Index disagrees with a shard"
    help = ("A tensor sits in another shard than the index says, in several shards, or in a shard without "
            "being indexed: loaders load what the shards hold, not what the index says.")


class ShardMissing(Rule):
    id = "ST104"
    severity = Severity.HIGH
    title = "Shard file missing"
    help = "A shard the index names is not in the folder: part of the model could not be inspected."


class ShardPathEscapes(Rule):
    id = "ST105"
    severity = Severity.HIGH
    title = "Shard name is a path"
    help = "Loaders join the shard name to the model folder: a path in it reads a file from elsewhere."


def sniff(head: bytes, size: int) -> int:
    if head.lstrip()[:1] != b"{" or b'"weight_map"' not in head:
        return 0
    return 90 if b".safetensors" in head else 60


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    if source.size > ctx.limits.max_header_bytes:
        raise FormatError(f"index of {source.size:,} bytes exceeds the cap of "
                          f"{ctx.limits.max_header_bytes:,} bytes", 0)
    try:
        obj, duplicates, _ = load_json(source.read(0, source.size).decode("utf-8"), 0)
    except UnicodeDecodeError as exc:
        ctx.report(IndexInvalid, f"index is not UTF-8 (byte {exc.start})", node=root, offset=exc.start)
        return root
    except FormatError as exc:
        ctx.report(IndexInvalid, f"index is {exc.message}", node=root, offset=exc.offset)
        return root
    for key in sorted(set(duplicates)):
        ctx.report(IndexInvalid, f"duplicate key {safe_text(key, 80)!r}: JSON parsers disagree on which "
                   "value counts", node=root, offset=0)
    weight_map = obj.get("weight_map") if isinstance(obj, dict) else None
    if not isinstance(weight_map, dict):
        ctx.report(IndexInvalid, "index has no weight_map object", node=root, offset=0)
        return root
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        group = root.child(GROUP, f"metadata ({len(meta)})", offset=0, member=source.member)
        for key, value in meta.items():
            group.child(METADATA, f"{safe_text(key, 80)} = {safe_text(str(value), 120)}", offset=0,
                        member=source.member, attrs={"key": safe_text(key), "value": safe_text(str(value))})

    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str):
            ctx.report(IndexInvalid, f"weight_map[{safe_text(name, 80)!r}] is a JSON {type(shard).__name__}, "
                       "not a shard file name", node=root, offset=0)
            continue
        by_shard.setdefault(shard, []).append(name)
    root.attrs.update(shards=len(by_shard), tensors=len(weight_map))
    _add_weight_map(root, weight_map, source.member)
    shards = root.child(GROUP, f"shards ({len(by_shard)})", offset=0, member=source.member)
    path = ctx.path if ctx.path is not None else source.path
    folder = (os.path.dirname(path) or ".") if path is not None else None
    if folder is None:
        ctx.report(NotInspected, "shards not checked: the index was scanned without its folder", node=shards)
        return root
    held = _open_shards(by_shard, folder, ctx, shards)
    _compare(by_shard, held, ctx, shards)
    return root


def _add_weight_map(root: Node, weight_map: Mapping[str, Any], member: str | None) -> None:
    group = root.child(GROUP, f"weight map ({len(weight_map):,})", offset=0, member=member)
    items = [(name, 0, shard) for name, shard in weight_map.items()]

    def leaf(label: str, shard: Any) -> Node:
        return Node(FIELD, f"{label} → {safe_text(str(shard), 80)}", offset=0, member=member,
                    attrs={"shard": safe_text(str(shard))})

    add_tensor_tree(group, items, leaf)


def _plain_name(shard: str) -> bool:
    return bool(shard) and shard not in (".", "..") and not any(c in shard for c in "/\\\0:")


def _open_shards(by_shard: dict[str, list[str]], folder: str, ctx: ScanContext,
                 shards: Node) -> dict[str, set[str] | None]:
    """Parse every shard as a subtree; return shard → the tensor names its header holds (None: unread)."""
    held: dict[str, set[str] | None] = {}
    for shard, names in by_shard.items():
        ctx.check()
        label = safe_text(shard, 120)
        if not _plain_name(shard):
            node = shards.child(FILE, label, attrs={"tensors": len(names)})
            target = os.path.normpath(os.path.join(os.path.abspath(folder), shard))
            ctx.report(ShardPathEscapes, f"shard name {label!r} is a path, not a file name: loaders would "
                       f"read {safe_text(target, 160)}", node=node)
            held[shard] = None
            continue
        path = os.path.join(folder, shard)
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(f"not a regular file ({stat.filemode(st.st_mode)})")
            # Not closed here: nested nodes (a pickle hiding under the name) page their bytes lazily
            # from this map; it is released when the tree is.
            source = Source.open(path, name=shard)
            source.member = shard
        except OSError as exc:
            node = shards.child(FILE, label, attrs={"tensors": len(names), "missing": True})
            ctx.report(ShardMissing, f"shard {label!r} ({len(names):,} tensor(s)) cannot be opened: "
                       f"{safe_text(getattr(exc, 'strerror', None) or str(exc), 80)}", node=node)
            held[shard] = None
            continue
        ctx.parse_nested(source, shards, label=label)
        try:
            header = read_header(source, ctx.limits.max_header_bytes)
            held[shard] = {name for name, _ in header.tensors}
        except FormatError:
            held[shard] = None  # the nested parse has reported why
    return held


def _compare(by_shard: dict[str, list[str]], held: dict[str, set[str] | None], ctx: ScanContext,
             shards: Node) -> None:
    where: dict[str, list[str]] = {}  # tensor → shards that really hold it
    for shard, holding in held.items():
        for name in holding or ():
            where.setdefault(name, []).append(shard)
    indexed = {name for names in by_shard.values() for name in names}
    nodes = {child.label: child for child in shards}
    for shard, names in by_shard.items():
        if held.get(shard) is None:
            continue
        node = nodes.get(safe_text(shard, 120), shards)
        holds: set[str] = held[shard] or set()
        missing = [n for n in names if n not in holds and n not in where]
        moved = [n for n in names if n not in holds and n in where]
        extra = sorted(n for n in holds if n not in indexed)
        shown = repr(safe_text(shard, 80))
        if missing:
            ctx.report(IndexMissingTensor, f"{len(missing):,} tensor(s) the index puts in {shown} are in no "
                       f"shard: {_names(missing)}", node=node, offset=0)
        if moved:
            ctx.report(IndexWrongShard, f"{len(moved):,} tensor(s) the index puts in {shown} sit in another "
                       f"shard: {_names(moved, where)}", node=node, offset=0)
        if extra:
            ctx.report(IndexWrongShard, f"{shown} holds {len(extra):,} tensor(s) the index does not list "
                       f"(loaders load them anyway): {_names(extra)}", node=node, offset=0)
    doubled = sorted(n for n, s in where.items() if len(s) > 1)
    if doubled:
        ctx.report(IndexWrongShard, f"{len(doubled):,} tensors are in more than one shard (the last loaded "
                   f"wins): {_names(doubled, where)}", node=shards, offset=0)


def _names(names: list[str], where: dict[str, list[str]] | None = None) -> str:
    shown = []
    for name in names[:MAX_NAMES]:
        text = repr(safe_text(name, 80))
        if where is not None:
            text += " (in " + ", ".join(repr(safe_text(s, 60)) for s in where.get(name, ())) + ")"
        shown.append(text)
    more = f" and {len(names) - MAX_NAMES:,} more" if len(names) > MAX_NAMES else ""
    return ", ".join(shown) + more
