"""SafeTensors: an 8-byte header length, a JSON header, then raw tensor bytes.

Only the header is read (with pread), so a 10 GB file opens as fast as a 10 kB one. We
check what the `safetensors` library checks (and refuses), because a file it refuses is either
broken or built to be read differently by another tool: the header length against the file and
a cap, UTF-8 then JSON, duplicate keys, dtype × shape against the byte span, offsets contiguous
from 0 with no holes, overlaps or unindexed trailing bytes. Bytes that no tensor claims are
sniffed with the engine (a pickle hidden there is reported with its calls). Bytes *inside* a
declared tensor are data, whatever they look like.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any

from airlock.core import dtypes
from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Rule, Severity
from airlock.core.formats.contract import file_node
from airlock.core.source import Source
from airlock.core.tensor_tree import add_tensor_tree
from airlock.core.text import human_size, safe_text
from airlock.core.tree import DATA, GROUP, HEADER, METADATA, TEMPLATE, TENSOR, Node

NAME = "safetensors"
EXTENSIONS = (".safetensors",)

# Element sizes in bits of every type a SafeTensors header may name (sub-byte floats included).
DTYPE_BITS = dtypes.safetensors_bits()
LIBRARY_HEADER_CAP = 100_000_000  # safetensors refuses larger headers (MAX_HEADER_SIZE)
HIDDEN_SNIFF_CAP = 64 * 1024**2  # unclaimed bytes handed to the engine (a pickle fits in far less)
MAX_REPORTED = 20  # per kind of layout problem; the rest are counted in the last message


class HeaderInvalid(Rule):
    id = "ST001"
    severity = Severity.HIGH
    title = "SafeTensors header invalid"
    help = ("The header length, encoding or JSON is invalid (beyond the file, over the size cap, not "
            "UTF-8, not a JSON object): loaders refuse the file or read it differently.")
    incomplete = True  # no tensor table was read


class DuplicateKey(Rule):
    id = "ST002"
    severity = Severity.HIGH
    title = "Duplicate key in SafeTensors header"
    help = "JSON parsers disagree on duplicate keys (first wins, last wins, error): a parser differential."


class TensorEntryInvalid(Rule):
    id = "ST003"
    severity = Severity.HIGH
    title = "Invalid tensor entry"
    help = "A tensor entry lacks a known dtype, a shape of non-negative integers or a pair of offsets."


class SizeMismatch(Rule):
    id = "ST004"
    severity = Severity.HIGH
    title = "dtype × shape differs from the byte span"
    help = "The declared byte span does not hold exactly dtype × shape bytes."


class OutOfBounds(Rule):
    id = "ST005"
    severity = Severity.HIGH
    title = "Tensor data past the end of the file"
    help = "Tensor offsets point past the end of the file: the file is truncated or the offsets lie."


class Overlap(Rule):
    id = "ST006"
    severity = Severity.HIGH
    title = "Overlapping tensors"
    help = "Two tensors share bytes; safetensors refuses this layout."


class Hole(Rule):
    id = "ST007"
    severity = Severity.HIGH
    title = "Unindexed bytes between tensors"
    help = "Bytes that no tensor claims sit between tensors: a place to hide content; loaders refuse it."


class UnindexedTrailing(Rule):
    id = "ST008"
    severity = Severity.HIGH
    title = "Unindexed bytes after the last tensor"
    help = "Bytes after the last tensor are claimed by nothing: a place to hide content (e.g. a pickle)."


class MetadataInvalid(Rule):
    id = "ST009"
    severity = Severity.HIGH
    title = "__metadata__ is not a str → str map"
    help = "safetensors requires __metadata__ to map strings to strings; loaders refuse anything else."


class Header:
    """A parsed header: everything the tree and the sharded-index check need."""

    __slots__ = ("data_size", "data_start", "duplicates", "has_metadata", "length", "metadata", "tensors")

    def __init__(self, length: int, data_start: int, data_size: int,
                 tensors: list[tuple[str, Any]] | None = None, metadata: Any = None,
                 has_metadata: bool = False, duplicates: list[str] | None = None) -> None:
        self.length = length
        self.data_start = data_start
        self.data_size = data_size
        self.tensors: list[tuple[str, Any]] = [] if tensors is None else tensors  # in header order
        self.metadata = metadata
        self.has_metadata = has_metadata
        self.duplicates: list[str] = [] if duplicates is None else duplicates


def sniff(head: bytes, size: int) -> int:
    if len(head) < 10:
        return 0
    (n,) = struct.unpack_from("<Q", head)
    if head[8:9] != b"{" or n < 2:
        return 0
    if n <= size - 8:
        return 96  # above a pickle's 90: a header length whose low byte is 0x80 reads as PROTO
    # A length that lies is still ours, so the lie is reported.
    return 70 if (b'"dtype"' in head or b'"__metadata__"' in head) else 0


def read_header(source: Source, max_bytes: int, ctx: ScanContext | None = None) -> Header:
    """Length, UTF-8 and JSON checks, in that order, before anything is allocated. With a `ctx`, the
    JSON is parsed entry by entry under its time budget (a header of 10^6 tensors takes seconds)."""
    if source.size < 8:
        raise FormatError(f"file of {source.size} bytes is shorter than the 8-byte header length", 0)
    (n,) = struct.unpack("<Q", source.read(0, 8))
    if n > source.size - 8:
        raise FormatError(f"header length {n:,} exceeds the {source.size - 8:,} bytes after it "
                          "(truncated or hostile length)", 0)
    if n > max_bytes:
        raise FormatError(f"header length {n:,} exceeds Airlock's cap of {max_bytes:,} bytes", 0)
    raw = source.read(8, n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"header is not UTF-8 (byte {exc.start}: {exc.reason})", 8 + exc.start) from None
    if not text.startswith("{"):
        raise FormatError(f"header does not start with '{{' (starts {safe_text(text[:20])!r})", 8)
    obj, duplicates, top = load_json(text, 8, None if ctx is None else _header_clock(ctx, len(text)))
    if not isinstance(obj, dict):
        raise FormatError("header is not a JSON object", 8)
    header = Header(length=n, data_start=8 + n, data_size=source.size - 8 - n, duplicates=duplicates)
    for key, value in top:  # header order, duplicates included
        if key == "__metadata__":
            header.metadata, header.has_metadata = value, True
        else:
            header.tensors.append((key, value))
    return header


# Called every _CLOCK_EVERY top-level entries with (entries read, characters read): raises to stop.
Clock = Callable[[int, int], None]
_CLOCK_EVERY = 1024
_WS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, as the json module skips it


def _header_clock(ctx: ScanContext, total: int) -> Clock:
    def clock(entries: int, at: int) -> None:
        try:
            ctx.check()
        except LimitExceeded as exc:
            raise LimitExceeded(f"{exc.message} after reading {entries:,} entries of the header "
                                f"({at:,} of its {total:,} characters)", 8 + at) from None
    return clock


def load_json(text: str, base: int,
              clock: Clock | None = None) -> tuple[Any, list[str], list[tuple[str, Any]]]:
    """(value, duplicate keys anywhere, the top-level object's pairs in order). FormatError if not JSON.
    With a clock, a top-level object is read one entry at a time and the clock is called between
    entries; values are read by the json module either way, so both ways accept the same texts."""
    duplicates: list[str] = []
    last: list[list[tuple[str, Any]]] = [[]]

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicates.append(key)
            out[key] = value
        last[0] = items  # inner objects close first: the last call is the top-level object
        return out

    try:
        if clock is not None and text.startswith("{"):
            obj: Any = _load_object(text, pairs, clock)
        else:
            obj = json.loads(text, object_pairs_hook=pairs)
    except RecursionError:
        raise FormatError("JSON nests too deeply", base) from None
    except ValueError as exc:  # JSONDecodeError, and ints longer than Python's digit limit
        pos = getattr(exc, "pos", 0)
        raise FormatError(f"not valid JSON: {safe_text(str(exc), 120)}", base + pos) from None
    return obj, duplicates, last[0]


def _load_object(text: str, pairs: Callable[[list[tuple[str, Any]]], dict[str, Any]], clock: Clock) -> Any:
    """The top-level object of `text` (which starts with '{'), as json.loads reads it, entry by entry."""
    value_at = json.JSONDecoder(object_pairs_hook=pairs).raw_decode
    items: list[tuple[str, Any]] = []
    i = _WS.match(text, 1).end()  # type: ignore[union-attr]
    if text.startswith("}", i):
        i += 1
    else:
        while True:
            if items and not len(items) % _CLOCK_EVERY:
                clock(len(items), i)
            if not text.startswith('"', i):
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
            key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if not text.startswith(":", i):
                raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
            value, i = value_at(text, _WS.match(text, i + 1).end())  # type: ignore[union-attr]
            items.append((key, value))
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if text.startswith("}", i):
                i += 1
                break
            if not text.startswith(",", i):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    end = _WS.match(text, i).end()  # type: ignore[union-attr]
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return pairs(items)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def tensor_problem(entry: Any) -> str | None:
    """Why an entry is not {"dtype": known, "shape": [ints], "data_offsets": [begin, end]}, if it is not."""
    if not isinstance(entry, dict):
        return f"is a JSON {type(entry).__name__}, not an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BITS:
        return f"has an unknown dtype {safe_text(str(dtype), 40)!r}"
    if not isinstance(shape, list) or not all(_int(d) for d in shape):
        return f"has a shape that is not a list of non-negative integers: {safe_text(str(shape), 60)}"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_int(o) for o in offsets)):
        return f"has data_offsets that are not two non-negative integers: {safe_text(str(offsets), 60)}"
    if offsets[0] > offsets[1]:
        return f"has data_offsets that end before they begin: {offsets}"
    return None


def expected_bytes(dtype: str, shape: Sequence[int]) -> int | None:
    """dtype × shape in bytes (Python ints: no overflow), or None when it is not whole bytes."""
    numel = 1
    for d in shape:
        numel *= d
    bits = numel * DTYPE_BITS[dtype]
    return bits // 8 if bits % 8 == 0 else None


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    try:
        header = read_header(source, ctx.limits.max_header_bytes, ctx)
    except FormatError as exc:
        ctx.report(HeaderInvalid, f"safetensors header invalid: {exc.message}", node=root, offset=exc.offset)
        return root
    member = source.member
    hnode = root.child(HEADER, f"header ({header.length:,} bytes of JSON)", offset=8, length=header.length,
                       member=member, attrs={"tensors": len(header.tensors), "data_start": header.data_start,
                                             "size": header.length})
    if header.length > LIBRARY_HEADER_CAP:
        ctx.report(HeaderInvalid, f"header of {header.length:,} bytes is over the safetensors library's "
                   f"{LIBRARY_HEADER_CAP:,}-byte limit: it refuses the file", node=hnode)
    for key in sorted(set(header.duplicates)):
        ctx.report(DuplicateKey, f"duplicate key {safe_text(key, 80)!r} in the header: JSON parsers "
                   "disagree on which value counts", node=hnode)
    if header.has_metadata:
        _add_metadata(header.metadata, ctx, root, member, hnode)
    _add_tensors(header, source, ctx, root)
    root.attrs.update(tensors=len(header.tensors), header_bytes=header.length)
    return root


def _add_metadata(meta: Any, ctx: ScanContext, root: Node, member: str | None, hnode: Node) -> None:
    if not isinstance(meta, dict):
        ctx.report(MetadataInvalid, f"__metadata__ is a JSON {type(meta).__name__}, not an object of "
                   "strings: safetensors refuses the file", node=hnode)
        return
    group = root.child(GROUP, f"metadata ({len(meta):,})", offset=8, member=member)
    from airlock.core.hidden_text import report_hidden
    from airlock.core.templates import analyze_template  # jinja2 is imported only for templates

    for key, value in meta.items():
        ctx.tick(256)
        is_template = isinstance(value, str) and "chat_template" in key
        node = group.child(TEMPLATE if is_template else METADATA,
                           f"{safe_text(key, 80)} = {safe_text(str(value), 120)}", offset=8, member=member,
                           attrs={"key": safe_text(key), "value": safe_text(str(value), 400)})
        if not isinstance(value, str):
            ctx.report(MetadataInvalid, f"__metadata__[{safe_text(key, 80)!r}] is a JSON "
                       f"{type(value).__name__}, not a string: safetensors refuses the file", node=node)
        elif is_template:
            analyze_template(value, ctx, node)
        else:  # invisible or look-alike text, as in GGUF string metadata
            for text, what in ((key, "key"), (value, "value")):
                if not text.isascii():
                    report_hidden(text, ctx, node, what=f"safetensors metadata {what} {safe_text(key, 80)!r}")


def _add_tensors(header: Header, source: Source, ctx: ScanContext, root: Node) -> None:
    member = source.member
    valid: list[tuple[str, int, int, Any]] = []  # name, begin, end, entry
    bad: list[tuple[str, str]] = []
    for name, entry in ctx.each(header.tensors, "tensor entries", every=1024):
        problem = tensor_problem(entry)
        if problem is not None:
            bad.append((name, problem))
        else:
            begin, end = entry["data_offsets"]
            valid.append((name, begin, end, entry))
    items = [(name, end - begin, (name, begin, end, entry)) for name, begin, end, entry in valid]

    def leaf(label: str, payload: Any) -> Node:
        name, begin, end, entry = payload
        shape = tuple(entry["shape"])
        return Node(TENSOR, label, offset=header.data_start + begin, length=end - begin, member=member,
                    attrs={"name": safe_text(name), "dtype": entry["dtype"], "shape": shape,
                           "size": end - begin, "data_offset": header.data_start + begin})

    group = root.child(GROUP, f"tensors ({len(valid):,})", offset=header.data_start, member=member,
                       attrs={"size": sum(e - b for _, b, e, _ in valid)})
    anchors = add_tensor_tree(group, items, leaf, tick=ctx.tick)
    for name, problem in bad:
        ctx.report(TensorEntryInvalid, f"tensor {safe_text(name, 80)!r} {problem}", node=group, offset=8)
    for name, begin, end, entry in ctx.each(valid, "tensors' sizes", every=1024):
        want = expected_bytes(entry["dtype"], entry["shape"])
        if want != end - begin:
            shown = "not a whole number of bytes" if want is None else f"{want:,} bytes"
            ctx.report(SizeMismatch, f"tensor {safe_text(name, 80)!r}: {entry['dtype']} × "
                       f"{tuple(entry['shape'])} is {shown} but its span holds {end - begin:,}",
                       node=anchors[name], offset=header.data_start + begin)
    _check_layout(header, source, ctx, root, anchors, valid)


def _check_layout(header: Header, source: Source, ctx: ScanContext, root: Node, anchors: dict[str, Node],
                  valid: list[tuple[str, int, int, Any]]) -> None:
    """Contiguous from 0, no overlap, no hole, nothing after the last tensor, nothing past the end."""
    start, size = header.data_start, header.data_size
    past = [(name, end) for name, _, end, _ in valid if end > size]
    if past:
        first = min(past, key=lambda p: p[1])
        ctx.report(OutOfBounds, f"truncated: the file holds {size:,} bytes of tensor data but {len(past):,} "
                   f"of {len(valid):,} tensors extend past it (first {safe_text(first[0], 80)!r}, up to "
                   f"{max(e for _, e in past):,}); missing {human_size(max(e for _, e in past) - size)}",
                   node=anchors[first[0]], offset=source.size)
    expected, overlaps, holes = 0, 0, 0
    for name, begin, end, _ in ctx.each(sorted(valid, key=lambda t: (t[1], t[2])), "tensors' spans",
                                        every=1024):
        if begin < expected:
            overlaps += 1
            if overlaps <= MAX_REPORTED:
                ctx.report(Overlap, f"tensor {safe_text(name, 80)!r} [{begin:,}, {end:,}) overlaps bytes "
                           f"already claimed up to {expected:,}", node=anchors[name], offset=start + begin)
        elif begin > expected and expected < size:
            holes += 1
            if holes <= MAX_REPORTED:
                _hidden(source, ctx, root, start + expected, min(begin, size) - expected, Hole,
                        f"before tensor {safe_text(name, 80)!r}")
        expected = max(expected, end)
    if overlaps > MAX_REPORTED or holes > MAX_REPORTED:
        ctx.report(Overlap if overlaps > MAX_REPORTED else Hole, f"{overlaps:,} overlaps and {holes:,} holes "
                   f"in all; only the first {MAX_REPORTED} of each are listed", node=root, offset=start)
    if expected < size:
        _hidden(source, ctx, root, start + expected, size - expected, UnindexedTrailing,
                "after the last tensor")


def _hidden(source: Source, ctx: ScanContext, root: Node, offset: int, length: int, rule: type[Rule],
            where: str) -> None:
    """Bytes no tensor claims: show them, sniff them with the engine and say what they are."""
    node = root.child(DATA, f"unindexed bytes {where} ({length:,})", offset=offset, length=length,
                      member=source.member, attrs={"size": length,
                                                   "preview": safe_text(source.read(offset, 32), 48)})
    data = source.read(offset, min(length, HIDDEN_SNIFF_CAP))
    label = f"<unindexed bytes at {offset}>"
    what = ctx.read_as(Source.from_bytes(data, name=label, member=label, path=source.path), node, label=label)
    ctx.report(rule, f"{length:,} unindexed bytes {where} at offset {offset:,}; {what}. safetensors "
               "refuses such files; other readers may not", node=node, offset=offset)
