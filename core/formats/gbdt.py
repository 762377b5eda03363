"""Gradient-boosted tree models saved as data: XGBoost JSON and UBJSON (`Booster.save_model`), LightGBM
text (`Booster.save_model`, `model_to_string`). Pickled boosters are pickles and go through the pickle
reader; CatBoost's binary format is not read (it stays "not inspected").

These formats hold no code: what can go wrong is in the native loaders, which index arrays with the
numbers in the file. So the structure is checked the way a careful loader would: every per-node array
as long as the tree's node count, child indices inside the tree, split features inside the model's
feature count. A break is malformed (high): XGBoost's and LightGBM's C++ loaders act on those indices.
XGBoost JSON is read with `json` (bounded by the header budget), UBJSON with an own small reader
(typed arrays decoded with `struct`, counts checked against the bytes left), LightGBM text line by line.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import LimitExceeded, Malformed
from airlock.core.formats.contract import file_node
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, GROUP, LAYER, ROLE, Node

NAME = "gbdt"
EXTENSIONS = (".ubj", ".xgb", ".lgb", ".model")
OVERLAPS = ("torch_zip",)  # `.model` names XGBoost/LightGBM saves and some torch checkpoints: content decides
ALSO_NAMED = (".json", ".txt")  # what both libraries' docs save to; not model names by themselves

MAX_PROBLEMS = 20
MAX_DEPTH = 64
# Models are read whole (JSON, UBJSON's integer arrays become Python lists): 64 MiB keeps that under a
# few hundred MB of memory. Bigger models are reported as over the budget, never as clean.
MAX_MODEL_BYTES = 64 * 1024**2
_UBJ_NUMBERS = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q", b"d": ">f", b"D": ">d"}


def _kind(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b'{"learner"') or text.startswith(b'{\n  "learner"'):
        return "xgboost-json"
    if head.startswith(b"{L") and head[10:17] == b"learner":
        return "xgboost-ubjson"
    if head.startswith((b"tree\nversion=v", b"tree\r\nversion=v")):
        return "lightgbm-text"
    return None


def sniff(head: bytes, size: int) -> int:
    return 85 if _kind(head) else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    kind = _kind(source.head())
    root.attrs["model"] = kind or "?"
    if source.size > min(ctx.limits.max_header_bytes, MAX_MODEL_BYTES):
        cap = min(ctx.limits.max_header_bytes, MAX_MODEL_BYTES)
        ctx.report(LimitExceeded, f"model of {source.size:,} bytes is over the {cap:,}-byte "
                   "budget for models read whole: not inspected", node=root, offset=0)
        return root
    data = source.read(0, source.size)
    try:
        if kind == "lightgbm-text":
            _lightgbm(data, ctx, root, source)
            return root
        model = json.loads(data) if kind == "xgboost-json" else Ubjson(data, ctx).read()
        _xgboost(model, ctx, root, source)
    except FormatError as exc:
        ctx.report(Malformed, f"malformed {kind}: {exc.message}; XGBoost refuses the file", node=root,
                   offset=exc.offset)
    except (ValueError, RecursionError) as exc:
        ctx.report(Malformed, f"malformed {kind}: {safe_text(str(exc), 160)}; XGBoost refuses the file",
                   node=root, offset=0)
    return root


class Ubjson:
    """Universal Binary JSON as XGBoost writes it (big-endian numbers, optimized `$type#count` containers)."""

    def __init__(self, data: bytes, ctx: ScanContext) -> None:
        self.data = data
        self.ctx = ctx
        self.pos = 0

    def byte(self) -> bytes:
        if self.pos >= len(self.data):
            raise FormatError(f"truncated at {self.pos:,}", self.pos)
        b = self.data[self.pos:self.pos + 1]
        self.pos += 1
        return b

    def number(self, marker: bytes) -> Any:
        fmt = _UBJ_NUMBERS.get(marker)
        if fmt is None:
            raise FormatError(f"expected a number type, found {marker!r} at {self.pos - 1:,}", self.pos - 1)
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise FormatError(f"truncated number at {self.pos:,}", self.pos)
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def count(self) -> int:
        n = self.number(self.byte())
        if not isinstance(n, int) or n < 0 or n > len(self.data) - self.pos:
            raise FormatError(f"count {n} at {self.pos:,} is negative or more than the bytes left", self.pos)
        return n

    def string(self) -> str:
        n = self.count()
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", "replace")

    def read(self, marker: bytes | None = None, depth: int = 0) -> Any:
        self.ctx.tick(4096)
        if depth > MAX_DEPTH:
            raise FormatError(f"nesting deeper than {MAX_DEPTH} at {self.pos:,}", self.pos)
        m = marker or self.byte()
        if m in _UBJ_NUMBERS:
            return self.number(m)
        if m in (b"S", b"H"):
            return self.string()
        if m == b"C":
            return self.byte().decode("latin-1")
        if m in (b"T", b"F", b"Z"):
            return {b"T": True, b"F": False, b"Z": None}[m]
        if m in (b"[", b"{"):
            return self.container(m == b"{", depth)
        raise FormatError(f"unknown UBJSON type {m!r} at {self.pos - 1:,}", self.pos - 1)

    def container(self, is_map: bool, depth: int) -> Any:
        typed = count = None
        if self.data[self.pos:self.pos + 1] == b"$":
            self.pos += 1
            typed = self.byte()
        if self.data[self.pos:self.pos + 1] == b"#":
            self.pos += 1
            count = self.count()
        if typed in _UBJ_NUMBERS and count is not None and not is_map:  # a typed array: one unpack
            fmt = _UBJ_NUMBERS[typed]
            size = struct.calcsize(fmt) * count
            if self.pos + size > len(self.data):
                raise FormatError(f"truncated typed array of {count:,} at {self.pos:,}", self.pos)
            self.ctx.check()
            if typed in (b"d", b"D"):  # weights and thresholds: only how many there are matters
                self.pos += size
                return Floats(count)
            values = list(struct.unpack_from(f">{count}{fmt[1]}", self.data, self.pos))
            self.pos += size
            return values
        out: Any = {} if is_map else []
        i = 0
        while count is None or i < count:
            if count is None and self.data[self.pos:self.pos + 1] == (b"}" if is_map else b"]"):
                self.pos += 1
                break
            if is_map:
                key = self.string()
                out[key] = self.read(typed, depth + 1)
            else:
                out.append(self.read(typed, depth + 1))
            i += 1
        return out


class Floats:
    """A typed float array of UBJSON, kept as its length only (weights and thresholds are not judged)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


def _xgboost(model: Any, ctx: ScanContext, root: Node, source: Source) -> None:
    learner = model.get("learner") if isinstance(model, dict) else None
    if not isinstance(learner, dict):
        raise FormatError("no 'learner' object", 0)
    if isinstance(model.get("version"), list):
        root.attrs["xgboost version"] = ".".join(safe_text(str(v), 8) for v in model["version"][:3])
    params = learner.get("learner_model_param")
    params = params if isinstance(params, dict) else {}
    num_feature = _int(params.get("num_feature"))
    root.attrs["features"] = num_feature
    objective = learner.get("objective")
    if isinstance(objective, dict) and isinstance(objective.get("name"), str):
        root.attrs["objective"] = safe_text(objective["name"], 60)
    booster = learner.get("gradient_booster")
    booster = booster if isinstance(booster, dict) else {}
    root.attrs["booster"] = safe_text(str(booster.get("name", "?")), 40)
    inner = booster.get("model") if isinstance(booster.get("model"), dict) else booster.get("gbtree", {})
    found = inner.get("trees") if isinstance(inner, dict) else None
    trees: list[Any] = found if isinstance(found, list) else []
    problems: list[str] = []
    summaries: list[tuple[int, str]] = []
    for i, tree in enumerate(ctx.each(trees, "trees")):
        nodes, issue = _xgb_tree(tree, num_feature)
        summaries.append((nodes, issue or ""))
        if issue:
            problems.append(f"tree {i}: {issue}")
    _report(ctx, root, problems, "XGBoost's loader indexes its node arrays with these numbers")
    _tree_group(root, source, summaries, "nodes")


def _xgb_tree(tree: Any, num_feature: int | None) -> tuple[int, str | None]:
    if not isinstance(tree, dict):
        return 0, "not an object"
    found = tree.get("tree_param")
    param: dict[str, Any] = found if isinstance(found, dict) else {}
    n = _int(param.get("num_nodes"))
    if n is None or n < 1:
        return 0, f"num_nodes is {safe_text(str(param.get('num_nodes')), 20)}"
    for key in ("left_children", "right_children", "parents", "split_indices", "split_conditions",
                "default_left", "base_weights"):
        values = tree.get(key)
        if not isinstance(values, list | Floats) or len(values) != n:
            found = len(values) if isinstance(values, list | Floats) else "none"
            return n, f"{key} has {found} entries, num_nodes is {n:,}"
    for key in ("left_children", "right_children"):
        bad = next((v for v in tree[key] if not isinstance(v, int) or not -1 <= v < n or v == 0), None)
        if bad is not None:
            return n, f"{key} holds {safe_text(str(bad), 20)}, outside the tree's {n:,} nodes"
    if num_feature is not None:
        leaves = {i for i, v in enumerate(tree["left_children"]) if v == -1}
        bad = next((v for i, v in enumerate(tree["split_indices"])
                    if i not in leaves and (not isinstance(v, int) or not 0 <= v < num_feature)), None)
        if bad is not None:
            return n, f"a split uses feature {safe_text(str(bad), 20)}, the model has {num_feature:,}"
    return n, None


def _lightgbm(data: bytes, ctx: ScanContext, root: Node, source: Source) -> None:
    text = data.decode("utf-8", "replace")
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    current = header
    for line in text.split("\n"):
        ctx.tick(4096)
        line = line.rstrip("\r")
        if line.startswith("Tree="):
            current = {}
            trees.append(current)
        elif line == "end of trees":
            break
        elif "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    else:
        ctx.report(Malformed, "LightGBM model without 'end of trees': LightGBM refuses it (truncated)",
                   node=root, offset=source.size)
    max_feature = _int(header.get("max_feature_idx"))
    root.attrs.update(version=safe_text(header.get("version", "?"), 20), features=(max_feature or 0) + 1,
                      objective=safe_text(header.get("objective", "?"), 60))
    problems: list[str] = []
    summaries: list[tuple[int, str]] = []
    for i, tree in enumerate(ctx.each(trees, "trees")):
        leaves, issue = _lgb_tree(tree, max_feature)
        summaries.append((leaves, issue or ""))
        if issue:
            problems.append(f"tree {i}: {issue}")
    _report(ctx, root, problems, "LightGBM's loader indexes its node arrays with these numbers")
    _tree_group(root, source, summaries, "leaves")


def _lgb_tree(tree: dict[str, str], max_feature: int | None) -> tuple[int, str | None]:
    leaves = _int(tree.get("num_leaves"))
    if leaves is None or leaves < 1:
        return 0, f"num_leaves is {safe_text(str(tree.get('num_leaves')), 20)}"
    if leaves == 1:
        return 1, None
    arrays: dict[str, list[int]] = {}
    for key in ("split_feature", "left_child", "right_child", "threshold", "decision_type"):
        raw = tree.get(key, "").split()
        if len(raw) != leaves - 1:
            return leaves, f"{key} has {len(raw)} entries, a tree of {leaves:,} leaves needs {leaves - 1:,}"
        if key != "threshold":
            try:
                arrays[key] = [int(v) for v in raw]
            except ValueError:
                return leaves, f"{key} holds a value that is not an integer"
    if len(tree.get("leaf_value", "").split()) != leaves:
        return leaves, f"leaf_value does not have {leaves:,} entries"
    for key in ("left_child", "right_child"):
        bad = next((v for v in arrays[key] if not -leaves <= v < leaves - 1), None)
        if bad is not None:
            return leaves, f"{key} holds {bad}, outside the tree ({leaves - 1:,} splits, {leaves:,} leaves)"
    if max_feature is not None:
        bad = next((v for v in arrays["split_feature"] if not 0 <= v <= max_feature), None)
        if bad is not None:
            return leaves, f"a split uses feature {bad}, max_feature_idx is {max_feature:,}"
    return leaves, None


def _report(ctx: ScanContext, root: Node, problems: list[str], why: str) -> None:
    for problem in problems[:MAX_PROBLEMS]:
        ctx.report(Malformed, f"malformed {root.attrs['model']} {problem}: {why}", node=root, offset=0)
    if len(problems) > MAX_PROBLEMS:
        ctx.report(Malformed, f"{len(problems) - MAX_PROBLEMS:,} more malformed trees", node=root, offset=0)


def _tree_group(root: Node, source: Source, summaries: list[tuple[int, str]], unit: str) -> None:
    root.attrs["trees"] = len(summaries)
    group = root.child(GROUP, f"trees ({len(summaries):,})", member=source.member, attrs={ROLE: CONTENTS})

    def page(lo: int, hi: int) -> list[Node]:
        out = []
        for i in range(lo, hi):
            count, problem = summaries[i]
            attrs: dict[str, object] = {unit: count, **({"problem": problem} if problem else {})}
            out.append(Node(LAYER, f"tree {i}: {count:,} {unit}", member=source.member, attrs=attrs))
        return out

    group.set_lazy_children(len(summaries), page)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None
