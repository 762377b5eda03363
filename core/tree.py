"""The tree every view shows: one `Node` per thing found in a file.

Children can be lazy: a node with 150,000 vocabulary strings or a million opcodes holds a
`count` and a function that builds one page of children on demand, so opening such a file
creates only the nodes a person actually expands.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from airlock.core.errors import AirlockError
from airlock.core.findings import Severity

if TYPE_CHECKING:
    from airlock.core.findings import Finding

# Node kinds. Plain strings so that views and reports can show them as they are.
FILE = "file"
MEMBER = "member"
HEADER = "header"
FIELD = "field"
METADATA = "metadata"
TENSOR = "tensor"
GROUP = "group"
PICKLE = "pickle"
OPCODE = "opcode"
CALL = "call"
GLOBAL = "global"
OPERATOR = "operator"
INITIALIZER = "initializer"
LAYER = "layer"
TEMPLATE = "template"
TEXT = "text"
ARRAY = "array"
ELEMENT = "element"
DATA = "data"

# Roles (attrs["role"]): how a view should open a tree, decided by the format that built it.
ROLE = "role"
CONTENTS = "contents"  # what the file holds (a checkpoint's tensors): open on it when nothing is risky
INTERNALS = "internals"  # the container's plumbing (a checkpoint's pickles): kept folded

PageFactory = Callable[[int, int], Sequence["Node"]]
# For a lazy node whose children are leaves: finder(needle, start, stop) -> the indices in start..stop-1 of
# the children whose kind or value contains `needle` (casefolded), found without building them.
Finder = Callable[[str, int, int], Sequence[int]]

PAGE_SIZE = 256
_PAGE_LOCK = threading.RLock()  # page factories may build nested lazy nodes: re-entrant


class Node:
    __slots__ = (
        "_cache",
        "_children",
        "_finder",
        "_lazy_count",
        "_page_factory",
        "attrs",
        "findings",
        "index",
        "kind",
        "label",
        "length",
        "member",
        "offset",
        "parent",
        "severity",
    )

    def __init__(
        self,
        kind: str,
        label: str,
        *,
        offset: int | None = None,
        length: int | None = None,
        member: str | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.label = label
        self.offset = offset
        self.length = length
        self.member = member  # container member that offset/length are relative to, if any
        self.attrs: dict[str, Any] = attrs if attrs is not None else {}
        self.parent: Node | None = None
        self.index = 0  # position in the parent's children
        self.severity = Severity.NONE  # worst severity at or below this node
        self.findings: list[Finding] = []  # findings attached to this very node
        self._children: list[Node] = []
        self._lazy_count = 0
        self._page_factory: PageFactory | None = None
        self._finder: Finder | None = None
        self._cache: dict[int, Node] | None = None

    def __repr__(self) -> str:
        return f"Node({self.kind!r}, {self.label!r}, offset={self.offset})"

    # Building

    def add(self, child: Node) -> Node:
        if self._page_factory is not None:
            raise ValueError("a node has either eager or lazy children, not both")
        child.parent = self
        child.index = len(self._children)
        self._children.append(child)
        if child.severity > self.severity:
            self._raise_severity(child.severity)
        return child

    def child(self, kind: str, label: str, *, offset: int | None = None, length: int | None = None,
              member: str | None = None, attrs: dict[str, Any] | None = None) -> Node:
        return self.add(Node(kind, label, offset=offset, length=length, member=member, attrs=attrs))

    def set_lazy_children(self, count: int, page_factory: PageFactory, finder: Finder | None = None) -> None:
        """`page_factory(start, stop)` must return the nodes for indices start..stop-1.

        `finder`, when the children are leaves, finds which of them a search matches without building
        them (a 150k-token vocabulary is searched in its bytes, not node by node).
        """
        if self._children:
            raise ValueError("a node has either eager or lazy children, not both")
        self._lazy_count = count
        self._page_factory = page_factory
        self._finder = finder
        self._cache = {}

    def adopt_lazy_children(self, other: Node) -> None:
        """Take over `other`'s lazy children (a parser's root moved into a placeholder node)."""
        assert other._page_factory is not None
        self.set_lazy_children(other._lazy_count, other._page_factory, other._finder)

    # Reading

    @property
    def is_lazy(self) -> bool:
        return self._page_factory is not None

    @property
    def child_count(self) -> int:
        return self._lazy_count if self._page_factory is not None else len(self._children)

    def child_at(self, i: int) -> Node:
        if self._page_factory is None:
            return self._children[i]
        if not 0 <= i < self._lazy_count:
            raise IndexError(i)
        assert self._cache is not None
        node = self._cache.get(i)
        if node is None:
            # A view's thread and a search worker may both ask for a page: it is built once, under a lock,
            # so that every caller gets the same node (views keep pointers to them).
            with _PAGE_LOCK:
                node = self._cache.get(i)
                if node is None:
                    start = i - i % PAGE_SIZE
                    stop = min(start + PAGE_SIZE, self._lazy_count)
                    try:
                        page = self._page_factory(start, stop)
                    except (AirlockError, OSError) as exc:
                        # The file changed or went away since the scan (a page reads it again): say so.
                        page = [Node(DATA, f"(cannot be read any more: {exc})") for _ in range(start, stop)]
                    for j, built in enumerate(page, start):
                        built.parent = self
                        built.index = j
                        self._cache[j] = built
                    node = self._cache[i]
        return node

    def children(self, start: int = 0, stop: int | None = None) -> list[Node]:
        stop = self.child_count if stop is None else min(stop, self.child_count)
        if self._page_factory is None:
            return self._children[start:stop]
        return [self.child_at(i) for i in range(start, stop)]

    def built_children(self) -> list[Node]:
        """The children that exist as nodes now, building none: all of an eager node's, the pages of a lazy
        one built so far (only those can carry findings: peek_children's fresh nodes never do)."""
        if self._page_factory is None:
            return list(self._children)
        assert self._cache is not None
        return list(self._cache.values())

    def peek_children(self, start: int, stop: int) -> list[Node]:
        """Children start..stop-1 for a one-pass walk such as a search: those already built as they are,
        the others built afresh and not kept, so that walking a million-opcode list leaves nothing
        behind. Never attach findings to the fresh ones: they are not the tree's nodes."""
        stop = min(stop, self.child_count)
        if self._page_factory is None:
            return self._children[start:stop]
        assert self._cache is not None
        cache = self._cache
        if all(i in cache for i in range(start, stop)):
            return [cache[i] for i in range(start, stop)]
        fresh = list(self._page_factory(start, stop))
        return [cache.get(i) or node for i, node in enumerate(fresh, start)]

    @property
    def can_find_children(self) -> bool:
        return self._finder is not None

    def find_children(self, needle: str, start: int, stop: int) -> Sequence[int]:
        """Indices in start..stop-1 of the children (leaves) whose kind or value contains `needle`
        (casefolded), when the format can tell without building them (`can_find_children`)."""
        if self._finder is None:
            raise ValueError("this node's children cannot be searched without building them")
        return self._finder(needle, start, min(stop, self.child_count))

    def __iter__(self) -> Iterator[Node]:
        for i in range(self.child_count):
            yield self.child_at(i)

    def walk(self, *, expand_lazy: bool = False) -> Iterator[Node]:
        """Depth-first, this node first. Lazy children are only visited when asked."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            if node.is_lazy and not expand_lazy:
                continue
            stack.extend(reversed(node.children()))

    def path(self) -> str:
        labels = []
        node: Node | None = self
        while node is not None:
            labels.append(node.label)
            node = node.parent
        return " / ".join(reversed(labels))

    def index_path(self) -> list[int]:
        """Indices from the root to this node, for views that address nodes by position."""
        indices = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            indices.append(node.index)
            node = node.parent
        return list(reversed(indices))

    def root(self) -> Node:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    # Findings

    def attach(self, finding: Finding) -> None:
        self.findings.append(finding)
        self._raise_severity(finding.severity)

    def _raise_severity(self, severity: Severity) -> None:
        node: Node | None = self
        while node is not None and node.severity < severity:
            node.severity = severity
            node = node.parent
