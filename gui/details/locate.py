"""Where a node's bytes are in the file on disk, as far as the tree says.

Offsets of nodes inside a container member (a zip member, decompressed data) are relative to
that member. A member's own node in the container may record where its stored bytes start
(`attrs["data_offset"]`, absolute) and whether they are compressed; when they are stored as is,
member offsets map to file offsets. Otherwise the view says why it cannot show them.
"""

from __future__ import annotations

from dataclasses import dataclass

from airlock.core.text import safe_text
from airlock.core.tree import Node

_STORED = (None, 0, "stored", "none", "STORED")


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
    # ancestor of it. The entry itself (or the member's file node just below it) says where.
    candidates = [n for n in (walk, _child_in_member(walk, member)) if n is not None]
    for cand in candidates:
        data_offset = cand.attrs.get("data_offset")
        if not isinstance(data_offset, int):
            continue
        compression = cand.attrs.get("compression")
        if compression not in _STORED:
            return None, f"member {safe_text(member, 120)} is compressed ({safe_text(str(compression), 20)})"
        base = resolve(cand, data_offset, from_member=cand.member)
        return base.offset, base.note
    return None, f"the location of member {safe_text(member, 120)} in the file is not recorded"


def _child_in_member(container_node: Node | None, member: str) -> Node | None:
    if container_node is None or container_node.is_lazy:
        return None
    for child in container_node.children(0, 2000):
        if child.member == member:
            return child
    return None


def resolve(node: Node, offset: int | None, *, from_member: str | None) -> Location:
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
    loc = resolve(node, node.offset, from_member=node.member)
    return Location(loc.offset, node.length, loc.note)


def finding_location(finding: object, node: Node | None) -> Location:
    offset = getattr(finding, "offset", None)
    member = getattr(finding, "member", None)
    length = getattr(finding, "length", None)
    anchor = node if node is not None else None
    if anchor is None:
        if member is not None:
            return Location(None, None, f"offset {offset} is relative to member {safe_text(member, 120)}")
        return Location(offset, length)
    loc = resolve(anchor, offset, from_member=member)
    return Location(loc.offset, length, loc.note)
