"""TensorFlow checkpoints: the bundle index (`variables/variables.index` of a SavedModel, `ckpt-1.index` of
tf.train.Checkpoint) and its data shards (`<prefix>.data-00000-of-00001`), read without TensorFlow.

The index (an SSTable of BundleEntryProtos: airlock.core.formats.tf_table, .tf_bundle) is claimed by its
footer magic and block handles; every tensor is listed with its dtype, shape, shard, offset and size.
What TF refuses, and what makes two readers disagree, is reported:
- keys out of order or repeated (TF looks a tensor up by binary search over the sorted keys; a linear
  reader sees another tensor): TFC001, high;
- a missing or undecodable header, a newer minimum consumer version, no shards: TFC002, high;
- an entry that does not add up (shard id past num_shards, negative offset or size, a dtype and shape
  that need another number of bytes, DT_INVALID): TFC003, high;
- data past the end of its shard file, when the shard sits next to the index (only its size is read):
  TFC004, high; tensors sharing bytes in a shard (TF never writes that): TFC005, medium;
- a big-endian bundle (TF byte-swaps it on load): TFC006, info; DT_STRING tensors (bytes, as TF2's object
  graph is): TFC007, info; DT_VARIANT / DT_RESOURCE tensors, decoded on restore by the C++ decoder TF
  registered for the type name stored in the data (tf.data iterator state rebuilds a dataset graph),
  not inspected here: TFC008, low; a compressed block: TFC009, medium (not inspected).
A block whose CRC32C does not match is malformed (AIR002: TF refuses the file).

The data shards hold raw tensor bytes and nothing else, so no content can identify them. A shard is
claimed only for bytes no other format claims (the lowest sniff score above the inert fallback: a pickle
named `variables.data-00000-of-00001` is still read as a pickle), and only when its sibling index (same
prefix, same folder) is a valid bundle naming it with every tensor inside the shard's size: the one place
where a name plus a verified sibling decides. Without that it stays "not inspected" (medium).
"""

from __future__ import annotations

import itertools
import os
import re
import stat
from collections.abc import Sequence

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Malformed, NotInspected, Rule, Severity
from airlock.core.formats import tf_bundle, tf_table
from airlock.core.formats.contract import file_node
from airlock.core.formats.tf_bundle import Bundle, Tensor
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, FILE, GROUP, HEADER, ROLE, TENSOR, Node

NAME = "tf_checkpoint"
EXTENSIONS = (".index",)

MAX_REPORTED = 20  # findings per rule; the rest are counted
MAX_SHARDS_CHECKED = 10_000  # sibling shard files stat'ed
SHARD_NAME = re.compile(r"^(?P<prefix>.+)\.data-(?P<shard>\d{5})-of-(?P<count>\d{5})$")


class KeyOrder(Rule):
    id = "TFC001"
    severity = Severity.HIGH
    title = "TF checkpoint index keys out of order or repeated"
    help = ("TensorFlow finds a tensor by binary search over the index's sorted keys: an entry out of order "
            "or repeated is seen by one reader and not by another (a parser differential).")


class BadHeader(Rule):
    id = "TFC002"
    severity = Severity.HIGH
    title = "TF checkpoint index header missing or invalid"
    help = ("The bundle header (the entry under the empty key) is missing, does not decode or is refused by "
            "TensorFlow.")


class BadEntry(Rule):
    id = "TFC003"
    severity = Severity.HIGH
    title = "TF checkpoint tensor entry inconsistent"
    help = ("A tensor entry names a shard past num_shards, has a negative offset or size, an invalid dtype, "
            "or a size that its dtype and shape do not need: TensorFlow refuses it or reads other bytes.")


class DataOutsideShard(Rule):
    id = "TFC004"
    severity = Severity.HIGH
    title = "TF checkpoint tensor data past the end of its shard"
    help = "A tensor's offset and size run past the end of the data shard file next to the index."


class OverlappingData(Rule):
    id = "TFC005"
    severity = Severity.MEDIUM
    title = "TF checkpoint tensors share bytes"
    help = ("Two tensors' byte ranges overlap in one shard: TensorFlow never writes that; the file was "
            "crafted.")


class BigEndian(Rule):
    id = "TFC006"
    severity = Severity.INFO
    title = "Big-endian TF checkpoint"
    help = "The bundle was written on a big-endian machine; TensorFlow byte-swaps its tensors when loading."


class StringTensors(Rule):
    id = "TFC007"
    severity = Severity.INFO
    title = "TF checkpoint holds string tensors"
    help = ("DT_STRING tensors are bytes (TF2 checkpoints keep their object graph in one); TensorFlow reads "
            "them as bytes and decodes nothing.")


class VariantTensors(Rule):
    id = "TFC008"
    severity = Severity.LOW
    title = "TF checkpoint holds variant or resource tensors"
    help = ("DT_VARIANT tensors are decoded on restore by the C++ decoder TensorFlow registered for the type "
            "name stored in the data (tf.data iterator state rebuilds a dataset graph from it); their "
            "contents are not inspected here. No Python is called, but more of TensorFlow acts on bytes from "
            "the file.")


class CompressedBlock(Rule):
    id = "TFC009"
    severity = Severity.MEDIUM
    title = "TF checkpoint index block compressed"
    help = ("A table block is Snappy-compressed (TF writes bundle indexes uncompressed): its entries were "
            "not read.")
    incomplete = True


class ShardData(Rule):
    id = "TFC010"
    severity = Severity.INFO
    title = "TF checkpoint data shard covered by its index"
    help = ("Raw tensor bytes with no structure of their own, claimed by the valid checkpoint index next to "
            "them (same prefix): every tensor the index places in this shard lies inside the file.")


def sniff_source(source: Source) -> int:
    if tf_table.has_magic(source):
        try:
            tf_table.footer(source)
        except FormatError:
            return 45  # the magic, but handles that do not fit: claimed, to be reported as malformed
        return 90
    return 20 if _sibling_index(source) is not None else 0


def sniff(head: bytes, size: int) -> int:
    return sniff_source(Source.from_bytes(head, "<head>")) if size == len(head) else 0


def _sibling_index(source: Source) -> tuple[str, int, int] | None:
    """(index path, shard number, shard count) for a local file named like a data shard whose index
    sits next to it with the table magic."""
    if source.member is not None or not source.path:
        return None
    m = SHARD_NAME.match(os.path.basename(source.path))
    if m is None:
        return None
    index = os.path.join(os.path.dirname(source.path), m["prefix"] + ".index")
    try:
        if not stat.S_ISREG(os.stat(index).st_mode):  # a FIFO or device under that name would block a read
            return None
        with Source.open(index) as idx:
            if not tf_table.has_magic(idx):
                return None
    except OSError:
        return None
    return index, int(m["shard"]), int(m["count"])


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    if not tf_table.has_magic(source):
        return _parse_shard(source, ctx, root)
    bundle = tf_bundle.read_bundle(source, ctx)
    _report_table(bundle, ctx, root)
    _tree(bundle, source, root)
    _check_entries(bundle, ctx, root)
    if source.member is None and ctx.path and bundle.header is not None:
        _check_shards(bundle, _prefix(ctx.path), ctx, root)
    return root


def _prefix(path: str) -> str:
    return path[:-len(".index")] if path.endswith(".index") else path


def _report_table(bundle: Bundle, ctx: ScanContext, root: Node) -> None:
    for issue in bundle.issues:
        if issue.kind == tf_table.CRC_MISMATCH:
            ctx.report(Malformed, f"malformed TF checkpoint index: {issue.message}; TensorFlow refuses the "
                       "file", node=root, offset=issue.offset)
        elif issue.kind == tf_table.COMPRESSED:
            ctx.report(CompressedBlock, issue.message, node=root, offset=issue.offset)
        else:
            root.attrs["checksums"] = issue.message
    for message, offset in bundle.disorder[:MAX_REPORTED]:
        ctx.report(KeyOrder, f"index keys must be strictly increasing: {message}", node=root, offset=offset)
    _more(bundle.disorder, KeyOrder, "keys out of order", ctx, root)
    if bundle.header_problem is not None:
        message, offset = bundle.header_problem
        ctx.report(BadHeader, f"{message}; TensorFlow refuses the bundle", node=root, offset=offset)
    elif bundle.header is not None:
        h = bundle.header
        if h.num_shards < 1:
            ctx.report(BadHeader, f"header at {h.at:,}: num_shards is {h.num_shards}, expected 1 or more",
                       node=root, offset=h.at)
        if h.min_consumer > 1:
            ctx.report(BadHeader, f"header at {h.at:,}: min_consumer version {h.min_consumer}, expected at "
                       "most 1 (TensorFlow's bundle version): TensorFlow refuses it", node=root, offset=h.at)
        if h.endianness == tf_bundle.BIG:
            ctx.report(BigEndian, f"header at {h.at:,}: big-endian bundle", node=root, offset=h.at)
        elif h.endianness != tf_bundle.LITTLE:
            ctx.report(BadHeader, f"header at {h.at:,}: endianness {h.endianness}, expected 0 (little) or 1 "
                       "(big)", node=root, offset=h.at)


def _more(items: Sequence[object], rule: type[Rule], what: str, ctx: ScanContext, root: Node) -> None:
    if len(items) > MAX_REPORTED:
        ctx.report(rule, f"{len(items) - MAX_REPORTED:,} more {what} not listed", node=root, offset=0)


def _check_entries(bundle: Bundle, ctx: ScanContext, root: Node) -> None:
    shards = bundle.header.num_shards if bundle.header is not None else 0
    bad: list[tuple[str, int]] = []
    strings: list[Tensor] = []
    variants: list[Tensor] = []
    for t in bundle.tensors:
        ctx.tick()
        where = f"tensor {t.name!r} (entry at {t.at:,})"
        if t.dtype == 0 or t.dtype >= 100:
            bad.append((f"{where}: dtype {t.dtype}, expected a DataType a bundle holds (1–99, not a "
                        "reference)", t.at))
        elif t.dtype not in tf_bundle.DTYPES:
            variants.append(t)  # a DataType newer than this table: not checked, so not clean
        if not 0 <= t.shard < max(shards, 1):
            bad.append((f"{where}: shard_id {t.shard}, expected 0 to {shards - 1}", t.at))
        if t.offset < 0 or t.size < 0:
            bad.append((f"{where}: offset {t.offset:,} and size {t.size:,}, expected neither negative", t.at))
        expected = t.expected_size()
        if expected is not None and expected != t.size:
            bad.append((f"{where}: {t.dtype_name} of shape {list(t.shape or ())} needs {expected:,} bytes, "
                        f"the entry says {t.size:,}", t.at))
        if t.dtype == tf_bundle.STRING:
            strings.append(t)
        elif t.dtype in (tf_bundle.VARIANT, tf_bundle.RESOURCE):
            variants.append(t)
    for message, offset in bad[:MAX_REPORTED]:
        ctx.report(BadEntry, message, node=root, offset=offset)
    _more(bad, BadEntry, "inconsistent entries", ctx, root)
    if strings:
        ctx.report(StringTensors, f"{len(strings):,} DT_STRING tensor(s), e.g. {_names(strings)}: read by "
                   "TensorFlow as bytes", node=root, offset=strings[0].at)
    if variants:
        ctx.report(VariantTensors, f"{len(variants):,} tensor(s) of type variant, resource or a DataType "
                   f"this reader does not know, e.g. {_names(variants)}: TensorFlow decodes them with its "
                   "registered decoders; their contents were not inspected", node=root, offset=variants[0].at)
    _check_overlaps(bundle.tensors, ctx, root)


def _names(tensors: list[Tensor]) -> str:
    return ", ".join(f"{t.name!r} ({t.dtype_name})" for t in tensors[:3])


def _check_overlaps(tensors: list[Tensor], ctx: ScanContext, root: Node) -> None:
    spans = sorted((t.shard, t.offset, t.offset + t.size, t) for t in tensors if t.size > 0 and t.offset >= 0)
    found = 0
    for (shard, _start, end, t), (shard2, start2, _end2, t2) in itertools.pairwise(spans):
        ctx.tick()
        if shard == shard2 and start2 < end:
            found += 1
            if found <= MAX_REPORTED:
                ctx.report(OverlappingData, f"tensor {t2.name!r} (entry at {t2.at:,}) starts at {start2:,} "
                           f"in shard {shard}, inside {t.name!r} (bytes {t.offset:,}..{end:,})", node=root,
                           offset=t2.at)
    if found > MAX_REPORTED:
        ctx.report(OverlappingData, f"{found - MAX_REPORTED:,} more overlapping tensors not listed",
                   node=root, offset=0)


def shard_path(prefix: str, shard: int, count: int) -> str:
    return f"{prefix}.data-{shard:05d}-of-{count:05d}"


def _check_shards(bundle: Bundle, prefix: str, ctx: ScanContext, root: Node) -> None:
    """Data ranges against the sizes of the shard files beside the index (sizes only, never their bytes)."""
    assert bundle.header is not None
    count = bundle.header.num_shards
    sizes: dict[int, int] = {}
    missing = []
    for shard in range(min(max(count, 0), MAX_SHARDS_CHECKED)):
        ctx.check()
        try:
            sizes[shard] = os.stat(shard_path(prefix, shard, count)).st_size
        except OSError:
            missing.append(os.path.basename(shard_path(prefix, shard, count)))
    if missing:
        first = safe_text(missing[0], 80)
        root.attrs["shards not found"] = f"{len(missing):,} ({first}…): their ranges not checked"
    past = [t for t in bundle.tensors if t.shard in sizes and t.offset >= 0 and t.size >= 0
            and t.offset + t.size > sizes[t.shard]]
    for t in past[:MAX_REPORTED]:
        ctx.report(DataOutsideShard, f"tensor {t.name!r} (entry at {t.at:,}): bytes {t.offset:,}.."
                   f"{t.offset + t.size:,} of shard {t.shard}, whose file is {sizes[t.shard]:,} bytes",
                   node=root, offset=t.at)
    _more(past, DataOutsideShard, "tensors past their shard", ctx, root)


def _tree(bundle: Bundle, source: Source, root: Node) -> None:
    h = bundle.header
    if h is not None:
        endian = "big" if h.endianness == tf_bundle.BIG else "little"
        root.child(HEADER, "bundle header", offset=h.at, length=h.length, member=source.member,
                   attrs={"num_shards": h.num_shards, "endianness": endian, "producer": h.producer,
                          "min_consumer": h.min_consumer})
    root.attrs["tensors"] = len(bundle.tensors)
    group = root.child(GROUP, f"tensors ({len(bundle.tensors):,})", attrs={ROLE: CONTENTS})
    tensors = bundle.tensors
    member = source.member
    group.set_lazy_children(len(tensors),
                            lambda start, stop: [_index_node(t, member) for t in tensors[start:stop]])


def _index_node(t: Tensor, member: str | None) -> Node:
    """A tensor as the index lists it: the node spans its entry in the index; its data is in the shard."""
    attrs: dict[str, object] = {"name": t.name, "dtype": t.dtype_name, "shard": t.shard,
                                "shard offset": t.offset, "bytes": t.size}
    if t.shape is not None:
        attrs["shape"] = list(t.shape)
    if t.slices:
        attrs["slices"] = t.slices
    return Node(TENSOR, t.name, offset=t.at, length=t.length, member=member, attrs=attrs)


def _parse_shard(source: Source, ctx: ScanContext, root: Node) -> Node:
    found = _sibling_index(source)
    why = _shard_problem(source, ctx, root, found)
    if why is not None:
        ctx.report(NotInspected, f"TensorFlow checkpoint data shard (raw tensor bytes): {why}, so these "
                   "bytes are not known to be tensor data", node=root, offset=0)
    return root


def _shard_problem(source: Source, ctx: ScanContext, root: Node,
                   found: tuple[str, int, int] | None) -> str | None:
    """None when the index beside the shard is valid and covers it (then the shard's tree is built)."""
    if found is None:
        return "no checkpoint index with the same prefix beside it"
    index_path, shard, count = found
    label = os.path.basename(index_path)
    try:
        with Source.open(index_path) as idx:
            bundle = tf_bundle.read_bundle(idx, ctx.scratch())
    except (FormatError, LimitExceeded, OSError) as exc:
        return f"its index {label} does not read ({safe_text(str(exc), 200)})"
    # Valid: the index's own checks (run here on a node of their own, reported nowhere) find nothing
    # medium or worse; one definition of "valid" for the index scan and the shard's claim.
    judged = Node(FILE, label)
    scratch = ctx.scratch()
    _report_table(bundle, scratch, judged)
    _check_entries(bundle, scratch, judged)
    if bundle.header is None or judged.severity >= Severity.MEDIUM:
        return f"its index {label} is not a valid bundle (a scan of the index says why)"
    if bundle.header.num_shards != count or shard >= count:
        return f"its index {label} has {bundle.header.num_shards} shard(s), the name says {count}"
    mine = [t for t in bundle.tensors if t.shard == shard]
    if any(t.offset < 0 or t.size < 0 or t.offset + t.size > source.size for t in mine):
        return f"its index {label} places tensors outside this file's {source.size:,} bytes"
    opaque = (tf_bundle.VARIANT, tf_bundle.RESOURCE)
    if any(t.dtype not in tf_bundle.DTYPES or t.dtype in opaque for t in mine):
        return f"its index {label} places variant, resource or unknown tensors here, which were not inspected"
    spans = [t for t in mine if t.size]
    low = min((t.offset for t in spans), default=0)
    high = max((t.offset + t.size for t in spans), default=0)
    ctx.report(ShardData, f"tensor data of checkpoint {label} ({len(mine):,} tensors, bytes "
               f"{low:,}..{high:,} of {source.size:,})", node=root, offset=0)
    root.attrs["index"] = label
    group = root.child(GROUP, f"tensors ({len(mine):,})", attrs={ROLE: CONTENTS})
    big = bundle.header.endianness == tf_bundle.BIG
    group.set_lazy_children(len(mine), lambda start, stop: [_data_node(t, big) for t in mine[start:stop]])
    return None


def _data_node(t: Tensor, big_endian: bool) -> Node:
    """A tensor's bytes in the shard: the node spans them, so the hex and values views read them."""
    attrs: dict[str, object] = {"name": t.name, "dtype": t.dtype_name, "size": t.size}
    if t.shape is not None and not big_endian and t.dtype not in (tf_bundle.STRING,):
        attrs["shape"] = list(t.shape)
        attrs["data_offset"] = t.offset
    return Node(TENSOR, t.name, offset=t.offset, length=t.size, attrs=attrs)
