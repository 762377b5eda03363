"""Search a scanned file's tree: names, kinds and values, lazy lists included, in one pass.

Made to run off the GUI thread while the user types: it checks a `cancelled` callback every few
hundred nodes, hands back matches as it finds them, and keeps nothing behind. Matches are index
paths from the root (`node.index_path()`), in tree order; the caller resolves the ones it shows to
the tree's own nodes. Lazy lists are walked without filling the tree's page caches
(`Node.peek_children`), and lists that can search their own children (`Node.find_children`: a
150k-token vocabulary, searched in its bytes) are asked to, without building a node per element.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from airlock.core.errors import Cancelled
from airlock.core.findings import Severity
from airlock.core.tree import PAGE_SIZE, Node

CHECK_EVERY = 256  # nodes between two looks at `cancelled`
FIND_CHUNK = 2_048  # children a format searches in one call, between two looks at `cancelled`
RISKY = Severity.LOW  # "show only risky" keeps nodes at or above this


def node_text(node: Node) -> str:
    """What a search matches: the label, the kind and the plain values of the attributes, casefolded.

    Fields are joined by newlines, which a typed search never contains, so a match never straddles two.
    """
    parts = [node.label, node.kind]
    parts += [str(v) for v in node.attrs.values() if isinstance(v, str | int | float | tuple)]
    return "\n".join(parts).casefold()


def normalise(text: str) -> str:
    return text.strip().casefold()


def matches(node: Node, needle: str) -> bool:
    """`needle` as given by `normalise`; the empty needle matches everything."""
    return not needle or needle in node_text(node)


@dataclass
class Search:
    """One search over one tree. Iterate `run()` for match paths; `visited` and `found` count as it goes.

    `risky_only` keeps nodes whose severity is at least low (a branch below that is skipped whole:
    a node's severity is the worst at or below it). `keep` bounds how many paths are handed back;
    the search still counts every match after that, so the view can say "1,000 of 48,123".
    """

    root: Node
    text: str
    risky_only: bool = False
    cancelled: Callable[[], bool] | None = None
    keep: int = 1_000_000
    visited: int = 0
    found: int = 0
    complete: bool = False
    _needle: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self._needle = normalise(self.text)

    def run(self) -> Iterator[tuple[int, ...]]:
        """Match paths in tree order. Raises Cancelled when `cancelled()` turns true."""
        needle, risky_only = self._needle, self.risky_only
        # Depth first with a stack of child iterators: no recursion limit on deep trees, and a lazy
        # list is paged through as the walk reaches it.
        stack: list[Iterator[tuple[Node, tuple[int, ...]]]] = [iter([(self.root, ())])]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            node, path = item
            self._tick()
            if risky_only and node.severity < RISKY:
                continue  # nothing risky at or below it
            if (not needle or needle in node_text(node)) and self._hit():
                yield path
            if not node.child_count:
                continue
            if node.is_lazy and not risky_only and node.can_find_children:
                yield from self._find_leaves(node, path)
                continue
            stack.append(self._children(node, path))
        self.complete = True

    def _tick(self) -> None:
        self.visited += 1
        if self.visited % CHECK_EVERY == 0 and self.cancelled is not None and self.cancelled():
            raise Cancelled("search cancelled")

    def _hit(self) -> bool:
        self.found += 1
        return self.found <= self.keep

    @staticmethod
    def _children(node: Node, path: tuple[int, ...]) -> Iterator[tuple[Node, tuple[int, ...]]]:
        if not node.is_lazy:
            for i, kid in enumerate(node.children()):
                yield kid, (*path, i)
            return
        for start in range(0, node.child_count, PAGE_SIZE):  # built a page at a time, and not kept
            for i, kid in enumerate(node.peek_children(start, start + PAGE_SIZE), start):
                yield kid, (*path, i)

    def _find_leaves(self, node: Node, path: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        """Leaves the format searches itself (not under "risky only": lazily built leaves carry no
        finding, and a risky list is walked node by node)."""
        for start in range(0, node.child_count, FIND_CHUNK):
            stop = min(start + FIND_CHUNK, node.child_count)
            hits = node.find_children(self._needle, start, stop)
            self.visited += stop - start
            if self.cancelled is not None and self.cancelled():
                raise Cancelled("search cancelled")
            for i in hits:
                if self._hit():
                    yield (*path, i)
