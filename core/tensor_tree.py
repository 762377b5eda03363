"""Tensor names grouped by dotted prefix: the tree under a file's "tensors" node.

Shared by every format that lists named tensors (SafeTensors, sharded SafeTensors, GGUF), so it
lives in core rather than in one format's module, which the others would have to import for it.
It knows nothing of any format: callers pass (name, size, payload) triples and a function that
makes the leaf node, and get back, for each name, the node a finding about that tensor should
attach to (its own node, or the lazy group that will hold it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airlock.core.text import safe_text
from airlock.core.tree import GROUP, PAGE_SIZE, Node


class _Branch:
    __slots__ = ("branches", "count", "leaves", "size")

    def __init__(self) -> None:
        self.branches: dict[str, _Branch] = {}
        self.leaves: list[tuple[str, str, int, Any]] = []  # label, full name, size, payload
        self.count = 0
        self.size = 0


def _natural(label: str) -> tuple[int, int, str]:
    return (0, int(label), "") if label.isdigit() and len(label) < 19 else (1, 0, label)


def add_tensor_tree(parent: Node, items: Sequence[tuple[str, int, Any]],
                    make_leaf: Callable[[str, Any], Node], sep: str = ".",
                    tick: Callable[[], None] | None = None) -> dict[str, Node]:
    """Add `items` (name, size, payload) under `parent` as nested groups split on `sep`.

    Levels with more than a page of entries get lazy children. Returns name → the node a finding
    about that tensor should attach to: its own node, or the lazy group that will hold it.
    `tick` (the scan's clock) is called once per item.
    """
    trie = _Branch()
    for name, size, payload in items:
        if tick is not None:
            tick()
        parts = name.split(sep)
        branch = trie
        for part in parts[:-1]:
            branch.count += 1
            branch.size += size
            branch = branch.branches.setdefault(part, _Branch())
        branch.count += 1
        branch.size += size
        branch.leaves.append((parts[-1], name, size, payload))
    anchors: dict[str, Node] = {}
    _materialize(trie, parent, make_leaf, anchors)
    return anchors


def _entries(branch: _Branch) -> list[tuple[str, Any]]:
    merged: list[tuple[str, Any]] = [(label, leaf) for label, *leaf in branch.leaves]
    merged += list(branch.branches.items())
    merged.sort(key=lambda e: _natural(e[0]))
    return merged


def _build(label: str, entry: Any, make_leaf: Callable[[str, Any], Node], anchors: dict[str, Node] | None,
           member: str | None) -> Node:
    if isinstance(entry, _Branch):
        node = Node(GROUP, safe_text(label or "(empty)", 80), member=member,
                    attrs={"tensors": entry.count, "size": entry.size})
        _materialize(entry, node, make_leaf, anchors)
        return node
    name, _size, payload = entry
    node = make_leaf(safe_text(label or "(empty)", 80), payload)
    if anchors is not None:
        anchors[name] = node
    return node


def _materialize(branch: _Branch, node: Node, make_leaf: Callable[[str, Any], Node],
                 anchors: dict[str, Node] | None) -> None:
    entries = _entries(branch)
    member = node.member
    if len(entries) <= PAGE_SIZE:
        for label, entry in entries:
            node.add(_build(label, entry, make_leaf, anchors, member))
        return
    if anchors is not None:
        _anchor_all(branch, node, anchors)

    def page(start: int, stop: int) -> list[Node]:
        return [_build(label, entry, make_leaf, None, member) for label, entry in entries[start:stop]]

    node.set_lazy_children(len(entries), page)


def _anchor_all(branch: _Branch, node: Node, anchors: dict[str, Node]) -> None:
    stack = [branch]
    while stack:
        b = stack.pop()
        for _label, name, _size, _payload in b.leaves:
            anchors[name] = node
        stack.extend(b.branches.values())
