"""Where a node's bytes are in the file on disk, as far as the tree says.

Used by every view that shows bytes (the GUI's hex view, the tensor values and statistics) and by
`airlock.core.tensors` to find a tensor's data. Offsets of nodes inside a container member (a zip
member, decompressed data) are relative to that member. A member's own node in the container may
record where its stored bytes start (`attrs["data_offset"]`, absolute) and whether they are
compressed; when they are stored as is, member offsets map to file offsets. Otherwise the view
says why it cannot show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from airlock.core.text import safe_text
from airlock.core.tree import INTERNALS, ROLE, Node

if TYPE_CHECKING:
    from airlock.core.findings import Finding

_STORED = (None, 0, "stored", "none", "STORED")  # compression / method values meaning "as is"


@dataclass(frozen=True)
class Location:
    offset: int | None  # absolute offset in the file, None when it cannot be known
    length: int | None
    note: str = ""  # shown to the user when the location is approximate or unknown


def _member_base(node: Node, member: str) -> tuple[int | None, str]:
    """Absolute offset of the first byte of `member`, found on the nearest ancestor outside it."""
    walk = node.parent
    while walk is not None and walk.member == member:
        walk = walk.parent
    # `walk` is the first ancestor in the container's coordinates: the member's entry, or an
    # ancestor of it whose children include the entry (or the member's own file node).
    candidates = [n for n in (walk, *_entries_for(walk, member)) if n is not None]
    for cand in candidates:
        start = _data_start(cand)
        if start is None:
            continue
        compression = cand.attrs.get("compression", cand.attrs.get("method"))
        if compression not in _STORED:
            return None, f"member {safe_text(member, 120)} is compressed ({safe_text(str(compression), 20)})"
        if cand.member == member:  # the member's own node: its data_offset is in the container's coordinates
            assert walk is not None
            base = resolve(walk, start, from_member=walk.member)
        else:
            base = resolve(cand, start, from_member=cand.member)
        return base.offset, base.note
    return None, f"the location of member {safe_text(member, 120)} in the file is not recorded"


def _data_start(entry: Node) -> int | None:
    """Where an entry's stored bytes begin: recorded, or implied by its span and compressed size."""
    data_offset = entry.attrs.get("data_offset")
    if isinstance(data_offset, int):
        return data_offset
    compressed = entry.attrs.get("compressed")
    if isinstance(compressed, int) and isinstance(entry.offset, int) and isinstance(entry.length, int) \
            and 0 <= compressed <= entry.length:
        return entry.offset + entry.length - compressed  # a zip entry: local header, then the data
    return None


def _entries_for(container_node: Node | None, member: str) -> list[Node]:
    if container_node is None or container_node.is_lazy:
        return []
    children = container_node.children(0, 5000)
    for group in [c for c in children if c.attrs.get(ROLE) == INTERNALS and not c.is_lazy]:
        children += group.children(0, 5000)  # a checkpoint's records, folded under one group
    return [child for child in children
            if child.member == member or (child.label == member and child.member != member)]


def resolve(node: Node, offset: int | None, *, from_member: str | None) -> Location:
    """`offset` (relative to `from_member` when given, which `node` or an ancestor lies in) in the file."""
    if offset is None:
        return Location(None, None, "this node has no byte offset")
    if from_member is None:
        return Location(offset, None)
    base, note = _member_base(node, from_member)
    if base is None:
        return Location(None, None, f"offset {offset:,} is relative to its container member: {note}")
    return Location(base + offset, None, f"offset {offset:,} in member {safe_text(from_member, 120)} "
                    f"= file offset {base + offset:,}")


def node_location(node: Node) -> Location:
    """Where a node's own bytes start in the file, and how many."""
    loc = resolve(node, node.offset, from_member=node.member)
    return Location(loc.offset, node.length, loc.note)


def finding_location(finding: Finding, node: Node | None) -> Location:
    """Where a finding points in the file: its offset, mapped through its member if it has one."""
    offset, member, length = finding.offset, finding.member, finding.length
    anchor = node
    if anchor is None:
        if member is not None:
            return Location(None, None, f"offset {offset} is relative to member {safe_text(member, 120)}")
        return Location(offset, length)
    loc = resolve(anchor, offset, from_member=member)
    return Location(loc.offset, length, loc.note)
