"""Sharded checkpoints: `*.safetensors.index.json` and `pytorch_model.bin.index.json`.

Every shard the index names must be present, and every tensor must sit in exactly one shard, the
one the index says; a tensor in a shard that the index does not list is loaded all the same. The
shards are read as a scan reads them: SafeTensors by their header, torch checkpoints through the
symbolic pickle reader. The rules are the SafeTensors index rules (ST102–ST105), shared.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airlock.core.findings import Rule
from airlock.core.formats.safetensors_index import (
    IndexInvalid,
    IndexMissingTensor,
    IndexWrongShard,
    ShardMissing,
    ShardPathEscapes,
)

MAX_INDEX_BYTES = 64 * 1024 * 1024
MAX_NAMES = 5
Problem = tuple[type[Rule], str]


def is_index(name: str) -> bool:
    return name.endswith((".safetensors.index.json", ".bin.index.json"))


def check(index_path: str) -> list[Problem]:
    """Problems of one index and its shards (an empty list: the index and the shards agree)."""
    name = os.path.basename(index_path)
    try:
        if os.path.getsize(index_path) > MAX_INDEX_BYTES:
            return [(IndexInvalid, f"{name} is larger than {MAX_INDEX_BYTES:,} bytes: not read")]
        with open(index_path, "rb") as fh:
            index = json.loads(fh.read(MAX_INDEX_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [(IndexInvalid, f"{name} cannot be read as JSON: {exc}")]
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        return [(IndexInvalid, f"{name} has no weight_map of tensor names to shard files")]
    folder = os.path.dirname(os.path.abspath(index_path))
    problems: list[Problem] = []
    held: dict[str, set[str]] = {}
    for shard in sorted(set(weight_map.values())):
        if os.path.basename(shard) != shard or shard in ("", ".", "..") or "\\" in shard:
            problems.append((ShardPathEscapes, f"the index names a shard outside its folder: {shard!r}"))
            continue
        path = os.path.join(folder, shard)
        if not os.path.isfile(path):
            count = sum(1 for s in weight_map.values() if s == shard)
            problems.append((ShardMissing, f"shard {shard} ({count:,} tensor(s) in the index) is missing"))
            continue
        names = tensor_names(path)
        if isinstance(names, str):
            problems.append((IndexInvalid, f"shard {shard} cannot be read: {names}"))
            continue
        held[shard] = names
    where: dict[str, list[str]] = {}
    for shard, names in held.items():
        for tensor in names:
            where.setdefault(tensor, []).append(shard)
    missing = [t for t, s in weight_map.items() if s in held and t not in where]
    moved = [f"{t} (index: {s}, found in {', '.join(where[t])})" for t, s in weight_map.items()
             if s in held and t in where and s not in where[t]]
    doubled = [f"{t} (in {', '.join(s)})" for t, s in sorted(where.items()) if len(s) > 1]
    unlisted = sorted(t for t in where if t not in weight_map)
    if missing:
        problems.append((IndexMissingTensor, f"{len(missing):,} tensor(s) of the index are in no shard: "
                         f"{_names(missing)}"))
    if moved:
        problems.append((IndexWrongShard, f"{len(moved):,} tensor(s) sit in another shard than the "
                                          f"index says: "
                         f"{_names(moved)}"))
    if doubled:
        problems.append((IndexWrongShard, f"{len(doubled):,} tensor(s) are in more than one shard: "
                                          f"{_names(doubled)}"))
    if unlisted:
        problems.append((IndexWrongShard, f"{len(unlisted):,} tensor(s) in the shards are not in the index "
                         f"(loaders load them anyway): {_names(unlisted)}"))
    return problems


def tensor_names(path: str) -> set[str] | str:
    """The tensor names a shard holds, or why they could not be read."""
    from airlock.core.errors import AirlockError
    from airlock.core.formats.safetensors import read_header
    from airlock.core.limits import DEFAULT_LIMITS
    from airlock.core.source import Source

    try:
        with Source.open(path) as source:
            if source.size >= 8 and source.read(8, 1) == b"{":
                header = read_header(source, DEFAULT_LIMITS.max_header_bytes)
                return {name for name, _ in header.tensors}
        return _torch_names(path)
    except (AirlockError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _torch_names(path: str) -> set[str] | str:
    from airlock.core.convert.inputs import plan_torch
    from airlock.core.convert.model import ConvertError, Plan

    plan = Plan("torch")
    try:
        plan_torch(path, plan, key=None, limits=_limits())
    except ConvertError as exc:
        return str(exc)
    return {t.name for t in plan.tensors}


def _limits() -> Any:
    from airlock.core.limits import DEFAULT_LIMITS

    return DEFAULT_LIMITS


def _names(names: list[str]) -> str:
    more = f" and {len(names) - MAX_NAMES:,} more" if len(names) > MAX_NAMES else ""
    return ", ".join(repr(n[:120]) for n in names[:MAX_NAMES]) + more
