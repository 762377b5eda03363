"""PyTorch zip checkpoints (torch.save since 1.6), read the way PyTorchStreamReader reads them.

The archive directory is whatever the first member's folder is called ("archive", "model", …);
`<dir>/data.pkl` is the main pickle, `<dir>/data/<key>` the raw storages it references through
persistent ids. Every other member is sniffed: a pickle under any name is scanned, a nested zip
is parsed to the depth limit. Tensors are described from the main pickle's symbolic value, never
by loading it. Storage bytes are never read, except to sniff storages no tensor references.
"""

from __future__ import annotations

import re

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import Malformed, NotInspected, Severity
from airlock.core.formats import zip as zipf
from airlock.core.formats.contract import file_node
from airlock.core.formats.torch_checkpoint import ITEMSIZES, Lookup, PersistentTensor, TensorInfo, walk
from airlock.core.formats.torch_rules import WeightsOnly, weights_only_refusal
from airlock.core.formats.torchscript_code import scan_code, torchscript_policy
from airlock.core.limits import Limits
from airlock.core.pickle import PickleRun
from airlock.core.pickle.machine import Machine
from airlock.core.source import Source
from airlock.core.tensor_spec import StorageRef
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, GROUP, INTERNALS, MEMBER, ROLE, TENSOR, Node
from airlock.core.zipread import ZipArchive, ZipMember, open_archive, peek_names, read_member

NAME = "torch_zip"
EXTENSIONS = (".pt", ".pth", ".bin", ".ckpt", ".pt.tar", ".model")
OVERLAPS = ("torchscript", "torch_legacy")  # the legacy torch.save layout used the same names

_MAIN = re.compile(r"[^/]+/data\.pkl")
_RECORDS = ("version", ".data/version", "byteorder", ".format_version", ".storage_alignment",
            ".data/serialization_id")
MAX_PROBLEMS = 20  # tensor problems reported one by one; the rest are counted


def sniff(head: bytes, size: int) -> int:
    return 0  # sniff_source decides: a zip is known by its central directory at the end


def sniff_source(source: Source) -> int:
    names = peek_names(source)
    if not names:
        return 0
    return 95 if any(_MAIN.fullmatch(n) for n in names) else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    parse_archive(source, ctx, root, torchscript=False)
    return root


class Layout:
    """Which member is what, the way torch names records: `<first member's folder>/<record>`."""

    def __init__(self, archive: ZipArchive) -> None:
        first = archive.members[0].name if archive.members else ""
        self.prefix = first.split("/", 1)[0] + "/" if "/" in first else ""
        self.by_name = archive.by_name()
        self.main = self.by_name.get(self.prefix + "data.pkl") if self.prefix else None
        data_dir = self.prefix + "data/"
        self.storages = {m.name[len(data_dir):]: m for m in archive.members
                         if self.prefix and m.name.startswith(data_dir) and "/" not in m.name[len(data_dir):]}

    def record(self, name: str) -> ZipMember | None:
        return self.by_name.get(self.prefix + name) if self.prefix else None

    def lookup(self, limit_to: set[str] | None = None) -> Lookup:
        def find(key: str, code: str, itemsize: int, numel: int, location: str) -> StorageRef | str:
            m = self.storages.get(key)
            if m is None:
                return f"storage data/{key} is missing from the archive: torch.load fails"
            nbytes = numel * itemsize
            if m.size < nbytes:
                return f"truncated: storage data/{key} has {m.size:,} bytes, its tensors need {nbytes:,}"
            if m.data_offset is None:
                return f"storage data/{key} has no readable local header"
            if limit_to is not None:
                limit_to.add(key)
            return StorageRef(key, code, nbytes, m.data_offset, location, m.name, m.method,
                              m.compressed_size if m.method else None)
        return find


def parse_archive(source: Source, ctx: ScanContext, root: Node, *, torchscript: bool) -> Layout:
    archive = zipf.open_checked(source, ctx, root)
    layout = Layout(archive)
    root.attrs["archive"] = safe_text(layout.prefix.rstrip("/"))
    storage_members = {id(m) for m in layout.storages.values()}
    policy = None
    if torchscript and layout.record("constants.pkl") is not None:
        policy = torchscript_policy()
    nodes: dict[int, Node] = {}
    main_runs: list[PickleRun] | None = None
    code_members: list[tuple[ZipMember, Node]] = []
    # The archive's records (data.pkl, version, byteorder…) are torch's plumbing: one folded group, so that
    # a view opens on the tensors (or on what a finding points at).
    records = root.child(GROUP, "archive records", offset=archive.start, member=source.member,
                         attrs={ROLE: INTERNALS})
    for m in ctx.each(archive.members, "members", every=1):
        if id(m) in storage_members:
            continue
        nodes[m.index] = node = zipf.member_node(records, m, source)
        rel = m.name[len(layout.prefix):] if m.name.startswith(layout.prefix) else None
        if m is layout.main:
            main_runs = zipf.scan_member(source, ctx, node, archive, m, force_pickle=True, policy=policy)
        elif rel in _RECORDS and m.size <= 64:
            node.attrs["value"] = safe_text(zipf.member_head(source, m, 64))
            if rel == "byteorder":
                root.attrs["byteorder"] = node.attrs["value"]
        elif torchscript and rel is not None and rel.startswith("code/") and not rel.endswith(".debug_pkl"):
            code_members.append((m, node))
        else:
            zipf.scan_member(source, ctx, node, archive, m, policy=policy)
    records.label = f"archive records ({records.child_count:,})"
    referenced: set[str] = set()
    if layout.main is None:
        ctx.report(Malformed, f"malformed torch archive: no {safe_text(layout.prefix)}data.pkl record "
                   "(torch names records after the first member's folder): torch.load fails", node=root,
                   offset=archive.central_offset)
    elif main_runs:
        add_tensors(source, ctx, root, main_runs[0], layout.lookup(referenced), layout.main.name)
    _add_storages(source, ctx, root, archive, layout, referenced)
    zipf.report_issues(archive, ctx, root, nodes, source)
    if code_members:
        scan_code(source, ctx, archive, code_members)
    if not torchscript and archive.start == 0 and main_runs and layout.main is not None:
        main = zipf.opened_member(source, layout.main)
        if main is not None:
            refusal = weights_only_refusal(main.view(), 0, main.size)
            claim_weights_only(ctx, root, refusal)
    return layout


def claim_weights_only(ctx: ScanContext, root: Node, refusal: str | None) -> None:
    """The tier is claimed only for a file with nothing worse than info (and torch's rules met)."""
    if refusal is None and root.severity <= Severity.INFO:
        ctx.report(WeightsOnly, "torch weights-only: every global and opcode is in torch's weights_only "
                   "allowlist; torch.load(weights_only=True) accepts this file", node=root, offset=0)
    else:
        root.attrs["weights_only"] = safe_text(refusal or "other findings", 200)


def _add_storages(source: Source, ctx: ScanContext, root: Node, archive: ZipArchive, layout: Layout,
                  referenced: set[str]) -> None:
    members = list(layout.storages.items())
    group = root.child(GROUP, f"storages ({len(members):,})", offset=archive.central_offset,
                       member=source.member)
    # A storage no tensor uses is not data torch reads: sniff it like any member.
    for key, m in members:
        if key not in referenced:
            ctx.check()
            node = zipf.member_node(root, m, source)
            node.attrs["unreferenced"] = True
            zipf.scan_member(source, ctx, node, archive, m)
    used = [(k, m) for k, m in members if k in referenced]
    group.label = f"storages ({len(used):,})"

    def page(start: int, stop: int) -> list[Node]:
        out = []
        for key, m in used[start:stop]:
            out.append(Node(MEMBER, safe_text(m.name), offset=m.data_offset, length=m.compressed_size,
                            member=source.member, attrs={"storage": safe_text(key), "size": m.size,
                                                         "compressed": m.compressed_size}))
        return out

    group.set_lazy_children(len(used), page)


def add_tensors(source: Source, ctx: ScanContext, root: Node, run: PickleRun,
                lookup: Lookup, pickle_member: str | None,
                *, persistent: PersistentTensor | None = None) -> None:
    """A lazy "tensors" group under root, and findings for tensors torch could not rebuild."""
    if not run.complete:
        return
    infos = list(walk(run.result, lookup, persistent=persistent))
    root.attrs["tensors"] = len(infos)
    group = root.child(GROUP, f"tensors ({len(infos):,})", offset=run.start, member=pickle_member,
                       attrs={ROLE: CONTENTS})  # what a checkpoint is for: a view opens on it
    problems = [i for i in infos if i.problem]
    for info in problems[:MAX_PROBLEMS]:
        # Malformed is what torch.load fails on; anything else was simply not described (fail closed).
        rule = Malformed if info.malformed else NotInspected
        shown = safe_text(info.path or "<root>", 120)
        ctx.report(rule, f"tensor {shown}: {safe_text(info.problem or '')}", node=group,
                   offset=info.call.offset, member=pickle_member)
    if len(problems) > MAX_PROBLEMS:
        ctx.report(Malformed, f"{len(problems) - MAX_PROBLEMS:,} more tensors could not be described",
                   node=group, offset=run.start, member=pickle_member)
    total = sum(i.spec.numel * ITEMSIZES[i.spec.dtype] for i in infos if i.spec is not None)
    root.attrs["tensor_bytes"] = total

    def page(start: int, stop: int) -> list[Node]:
        return [tensor_node(info, source) for info in infos[start:stop]]

    group.set_lazy_children(len(infos), page)


def tensor_node(info: TensorInfo, source: Source) -> Node:
    attrs: dict[str, object] = {"dtype": info.torch_dtype, "device": safe_text(info.location, 40)}
    offset = length = None
    if info.spec is not None:
        spec = info.spec
        ref = spec.storage
        attrs.update(shape=spec.shape, strides=spec.strides, storage=safe_text(ref.key, 60),
                     storage_offset=spec.storage_offset, size=spec.numel * ITEMSIZES[spec.dtype],
                     st_dtype=spec.dtype, contiguous=spec.is_contiguous)
        if ref.compression == 0:
            offset = ref.file_offset + spec.storage_offset * ITEMSIZES[spec.dtype]
            length = attrs["size"] if spec.is_contiguous else None
    if info.parameter:
        attrs["parameter"] = True
    if info.requires_grad:
        attrs["requires_grad"] = True
    if info.problem:
        attrs["problem"] = safe_text(info.problem, 200)
    return Node(TENSOR, safe_text(info.path or "<root>", 200), offset=offset, length=length,  # type: ignore[arg-type]
                member=source.member, attrs=attrs)


# For the converter (convert.torch_input.read_checkpoint).


def load_structure(source: Source, limits: Limits) -> object:
    """The main pickle's value with TensorSpecs in place of tensors; FormatError if torch cannot load it."""
    archive = open_archive(source, max_members=limits.max_zip_members)
    if archive.start > 0:
        raise FormatError("bytes in front of the zip archive: torch.load would read them as a pickle",
                          0)
    layout = Layout(archive)
    if layout.main is None:
        raise FormatError("no data.pkl record in the archive's folder", archive.central_offset)
    if layout.record("constants.pkl") is not None:
        raise FormatError("this is a TorchScript archive, not a checkpoint", archive.central_offset)
    order = layout.record("byteorder")
    if order is not None and read_member(source, order, 64).strip() != b"little":
        raise FormatError("big-endian checkpoint: its tensor bytes would need swapping", order.header_offset)
    data = read_member(source, layout.main, limits.max_pickle_member_bytes)
    runs = Machine(data, limits=limits).run_stream(0, len(data))
    if not runs or not runs[0].complete:
        raise FormatError("the main pickle is truncated or malformed", layout.main.data_offset)
    result = runs[0].result
    infos = list(walk(result, layout.lookup(), replace=True))
    bad = [i for i in infos if i.problem and i.malformed]
    if bad:
        raise FormatError(f"tensor {bad[0].path}: {bad[0].problem}", layout.main.data_offset)
    return result
