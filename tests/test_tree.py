"""The Node tree: eager and lazy children, severity propagation, paths."""

import pytest

from airlock.core.findings import Finding, Severity
from airlock.core.tree import FILE, GROUP, PAGE_SIZE, TENSOR, Node


def test_eager_children_keep_order_and_index():
    root = Node(FILE, "f")
    a = root.child(GROUP, "a")
    b = root.child(GROUP, "b")
    assert root.child_count == 2
    assert [n.label for n in root] == ["a", "b"]
    assert (a.index, b.index) == (0, 1)
    assert b.parent is root
    assert b.path() == "f / b"
    assert b.index_path() == [1]


def test_lazy_children_build_one_page_at_a_time():
    calls = []

    def page(start, stop):
        calls.append((start, stop))
        return [Node(TENSOR, f"t{i}") for i in range(start, stop)]

    root = Node(FILE, "f")
    big = root.child(GROUP, "big")
    big.set_lazy_children(150_000, page)
    assert big.child_count == 150_000
    assert calls == []  # nothing built until asked
    node = big.child_at(149_999)
    assert node.label == "t149999"
    assert node.parent is big and node.index == 149_999
    assert node.index_path() == [0, 149_999]
    assert len(calls) == 1
    start, stop = calls[0]
    assert stop - start <= PAGE_SIZE
    assert big.child_at(149_998) is big.child_at(149_998)  # cached
    assert len(calls) == 1
    with pytest.raises(IndexError):
        big.child_at(150_000)


def test_walk_does_not_expand_lazy_children_unless_asked():
    root = Node(FILE, "f")
    big = root.child(GROUP, "big")
    big.set_lazy_children(3, lambda s, e: [Node(TENSOR, str(i)) for i in range(s, e)])
    assert [n.label for n in root.walk()] == ["f", "big"]
    assert [n.label for n in root.walk(expand_lazy=True)] == ["f", "big", "0", "1", "2"]


def test_eager_and_lazy_children_cannot_mix():
    node = Node(GROUP, "g")
    node.child(TENSOR, "x")
    with pytest.raises(ValueError):
        node.set_lazy_children(1, lambda s, e: [])


def test_worst_severity_propagates_to_ancestors():
    root = Node(FILE, "f")
    mid = root.child(GROUP, "mid")
    leaf = mid.child(TENSOR, "leaf")
    leaf.attach(Finding("X", Severity.MEDIUM, "m"))
    assert (root.severity, mid.severity, leaf.severity) == (Severity.MEDIUM,) * 3
    other = root.child(GROUP, "other")
    other.attach(Finding("X", Severity.CRITICAL, "c"))
    assert root.severity == Severity.CRITICAL
    assert mid.severity == Severity.MEDIUM


def test_adding_a_risky_subtree_raises_the_parent():
    sub = Node(GROUP, "sub")
    sub.attach(Finding("X", Severity.HIGH, "h"))
    root = Node(FILE, "f")
    root.add(sub)
    assert root.severity == Severity.HIGH
