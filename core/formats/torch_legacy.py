"""PyTorch legacy checkpoints (torch.save(..., _use_new_zipfile_serialization=False)) and legacy tar.

Legacy: five pickles back to back — magic number 0x1950a86a20f9469cfc6c, protocol version, sys_info,
the main pickle, the list of storage keys — then, for each key in that order, an 8-byte element
count and the storage's raw bytes. torch stops reading there; bytes after it are sniffed here.

Legacy tar (torch < 0.4): a tar with `sys_info`, `storages`, `tensors` and `pickle` members.
torch unpickles `storages` first (a count, then per storage a pickle and its raw bytes, then a
views pickle), then `tensors` (binary size/stride records), then `pickle`, whose persistent ids
name those tensors.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import Malformed, Severity
from airlock.core.formats.contract import file_node
from airlock.core.formats.torch_checkpoint import STORAGE_DTYPES, TensorInfo, persistent_refs, walk
from airlock.core.formats.torch_rules import LegacyTrailing, weights_only_refusal
from airlock.core.formats.torch_zip import add_tensors, claim_weights_only
from airlock.core.limits import Limits
from airlock.core.pickle.analyze import add_run, scan_pickle
from airlock.core.pickle.machine import Machine, PickleRun
from airlock.core.pickle.probe import looks_like_pickle
from airlock.core.pickle.values import Global, PersistentRef, PList, PTuple
from airlock.core.source import Source, SourceFile
from airlock.core.tensor_spec import StorageRef, TensorSpec
from airlock.core.text import safe_text
from airlock.core.tree import DATA, GROUP, INTERNALS, MEMBER, ROLE, Node

if TYPE_CHECKING:
    import tarfile

NAME = "torch_legacy"
EXTENSIONS = (".pt", ".pth", ".bin", ".ckpt", ".pt.tar", ".tar", ".t7", ".model")
OVERLAPS = ("torch_zip", "torchscript", "tar")  # the oldest torch.save wrote a tar

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
_PICKLES = ("magic number", "protocol version", "sys_info", "main pickle", "storage keys")
TAR_MEMBERS = ("sys_info", "storages", "tensors", "pickle")


class LegacyMachine(Machine):
    """The machine with torch's legacy `persistent_load`: an id ('module', cls, file, source) —
    how the legacy format pickles nn.Module classes — loads as the class itself."""

    def op_BINPERSID(self, op: Any) -> None:
        super().op_BINPERSID(op)
        self._module_class()

    def op_PERSID(self, op: Any) -> None:
        super().op_PERSID(op)
        self._module_class()

    def _module_class(self) -> None:
        ref = self.stack[-1]
        pid = ref.pid.items if isinstance(ref, PersistentRef) and isinstance(ref.pid, PTuple) else []
        if len(pid) >= 2 and _text(pid[0]) == "module":
            self.stack[-1] = pid[1]


def _first_value(head: bytes) -> Any:
    try:
        run = Machine(head).run_one(0, len(head))
    except Exception:  # noqa: BLE001 - sniffing must never raise
        return None
    return run.result if run.complete else None


# The machine never evaluates a call, so the first pickle can only yield the magic number from a
# literal: LONG1/LONG4 hold its little-endian bytes (maybe zero-padded), INT/LONG spell it in text.
_MAGIC_BYTES = MAGIC_NUMBER.to_bytes(10, "little")


def _may_hold_magic(head: bytes) -> bool:
    return _MAGIC_BYTES in head or b"I" in head or b"L" in head


def starts_with_magic(head: bytes) -> bool:
    """The stream's first pickle is torch's magic number: a legacy checkpoint."""
    first = head[:256]
    return _may_hold_magic(first) and looks_like_pickle(head) > 0 and _first_value(first) == MAGIC_NUMBER


def sniff(head: bytes, size: int) -> int:
    if starts_with_magic(head):
        return 96
    if len(head) >= 512 and _tar_name(head) in TAR_MEMBERS and _tar_checksum_ok(head):
        return 90
    return 0


def _tar_name(block: bytes) -> str:
    return block[:100].split(b"\0", 1)[0].decode("latin-1")


def _tar_checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 256 + sum(block[156:512])


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    if _tar_name(source.head(512)) in TAR_MEMBERS and _tar_checksum_ok(source.head(512)):
        parse_tar(source, ctx, root)
        return root
    root.attrs["container"] = "legacy"
    runs = _read_pickles(source, ctx, root)
    if len(runs) < len(_PICKLES) or not all(r.complete for r in runs):
        return root
    magic, protocol, _, main, keys = runs
    if magic.result != MAGIC_NUMBER:
        ctx.report(Malformed, "malformed legacy checkpoint: the first pickle is not torch's magic number",
                   node=root, offset=0)
    if protocol.result != PROTOCOL_VERSION:
        shown = safe_text(repr(protocol.result))
        ctx.report(Malformed, f"malformed legacy checkpoint: protocol version {shown}, torch expects "
                   f"{PROTOCOL_VERSION}", node=root, offset=protocol.start)
    layout = StorageLayout(source, main.result, keys.result, keys.end)
    for message, offset in layout.problems:
        ctx.report(Malformed, f"malformed legacy checkpoint: {message}", node=root, offset=offset)
    untyped = layout.untyped
    if untyped is not None:
        # torch.save writes these (fp8, uint16/32/64) but its legacy loader asks the storage type
        # for a dtype it lacks: torch.load fails. A broken file, not an attack.
        ctx.report(Malformed, "torch's legacy loader cannot load untyped storages (the fp8 and uint16/32/64 "
                   "dtypes): torch.load fails on this file", node=root, offset=untyped, severity=Severity.LOW)
    add_tensors(source, ctx, root, main, layout.lookup, source.member)
    group = root.child(GROUP, f"storages ({len(layout.refs):,})", offset=keys.end, member=source.member)
    refs = list(layout.refs.values())
    group.set_lazy_children(len(refs), lambda a, b: [
        Node(DATA, f"storage {safe_text(r.key, 60)}", offset=r.file_offset, length=r.nbytes,
             member=source.member,
             attrs={"dtype": r.dtype, "size": r.nbytes, "device": safe_text(r.location)})
        for r in refs[a:b]])
    if layout.end is not None and layout.end < source.size:
        _trailing(source, ctx, root, layout.end)
    if layout.end is not None and layout.end <= source.size:
        refusal = next((f"{name}: {why}" for name, run in zip(_PICKLES, runs, strict=True)
                        if (why := weights_only_refusal(source.view(), run.start, run.end))), None)
        claim_weights_only(ctx, root, refusal)
    return root


def _read_pickles(source: Source, ctx: ScanContext, root: Node) -> list[PickleRun]:
    machine = LegacyMachine(source.view(), limits=ctx.limits, tick=ctx.check)
    runs: list[PickleRun] = []
    pos = 0
    # The five pickles are torch's plumbing (magic number, protocol, sys_info, the main pickle, storage
    # keys): one folded group, so that a view opens on the tensors (or on what a finding points at).
    group = root.child(GROUP, "pickles", offset=0, member=source.member, attrs={ROLE: INTERNALS})
    for label in _PICKLES:
        run = machine.run_one(pos, source.size)
        add_run(run, source, ctx, group, label)
        group.label = f"pickles ({len(runs) + 1})"
        group.length = run.end
        runs.append(run)
        if not run.complete:
            ctx.report(Malformed, f"truncated legacy checkpoint: the {label} pickle does not end", node=root,
                       offset=run.end)
            break
        pos = run.end
    return runs


def _trailing(source: Source, ctx: ScanContext, root: Node, start: int) -> None:
    size = source.size - start
    node = root.child(DATA, f"bytes after the last storage ({size:,})", offset=start, length=size,
                      member=source.member, attrs={"preview": safe_text(source.read(start, 32), 48)})
    pickle_like = looks_like_pickle(source.read(start, 512)) > 0
    if pickle_like:
        scan_pickle(source, ctx, node, start=start, label="hidden pickle")
    kind = "a pickle" if pickle_like else "data"
    ctx.report(LegacyTrailing, f"{size:,} bytes after the last storage ({kind}); torch.load never reads them",
               node=node, offset=start)


class StorageLayout:
    """Where each storage's bytes are: the keys pickle's order, each an 8-byte count then the data."""

    def __init__(self, source: Source, main: Any, keys: Any, start: int) -> None:
        self.refs: dict[str, StorageRef] = {}
        self.problems: list[tuple[str, int]] = []
        self.end: int | None = None
        # Offset of the first persistent id naming an UntypedStorage, which the legacy loader refuses.
        self.untyped: int | None = None
        types: dict[str, tuple[str, int, str]] = {}
        for ref in persistent_refs(main):
            pid = ref.pid.items if isinstance(ref.pid, PTuple) else []
            if self.untyped is None and len(pid) >= 2 and isinstance(pid[1], Global) \
                    and pid[1].name == "UntypedStorage":
                self.untyped = ref.offset
            if len(pid) >= 5 and isinstance(pid[1], Global) and _text(pid[2]) is not None:
                cls = pid[1].name.rsplit(".", 1)[-1]
                if cls in STORAGE_DTYPES:
                    code, size, _ = STORAGE_DTYPES[cls]
                    types.setdefault(_text(pid[2]) or "", (code, size, _text(pid[3]) or ""))
        if not isinstance(keys, PList | PTuple):
            self.problems.append(("the storage keys pickle is not a list", start))
            return
        pos = start
        for raw_key in keys.items:
            key = _text(raw_key)
            if key is None or key not in types:
                shown = safe_text(repr(raw_key), 60)
                self.problems.append((f"storage key {shown} is not used by any tensor, so its element "
                                      "size (and every later storage's place) is unknown", pos))
                return
            code, itemsize, location = types[key]
            if pos + 8 > source.size:
                self.problems.append((f"truncated: storage {safe_text(key, 60)} has no element count", pos))
                return
            (count,) = struct.unpack("<q", source.read(pos, 8))
            nbytes = count * itemsize
            if count < 0 or pos + 8 + nbytes > source.size:
                self.problems.append((f"truncated: storage {safe_text(key, 60)} needs {nbytes:,} bytes at "
                                      f"{pos + 8:,}, the file ends at {source.size:,}", pos))
                return
            self.refs[key] = StorageRef(key, code, nbytes, pos + 8, location)
            pos += 8 + nbytes
        self.end = pos

    def lookup(self, key: str, code: str, itemsize: int, numel: int, location: str) -> StorageRef | str:
        ref = self.refs.get(key)
        if ref is None:
            return f"storage {key} is not in the file's storage table"
        if numel * itemsize != ref.nbytes:
            return f"storage {key} holds {ref.nbytes:,} bytes in the file, its id says {numel * itemsize:,}"
        return ref


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return None


# For the converter (convert.torch_input.read_checkpoint).


def load_structure(source: Source, limits: Limits) -> tuple[Any, str]:
    """(main value with TensorSpecs in place of tensors, "torch_legacy" | "torch_tar")."""
    head = source.head(512)
    if _tar_name(head) in TAR_MEMBERS and _tar_checksum_ok(head):
        return load_tar_structure(source, limits), "torch_tar"
    machine = LegacyMachine(source.view(), limits=limits)
    runs, pos = [], 0
    for label in _PICKLES:
        run = machine.run_one(pos, source.size)
        if not run.complete:
            raise FormatError(f"the {label} pickle is truncated or malformed", run.end)
        runs.append(run)
        pos = run.end
    if runs[0].result != MAGIC_NUMBER:
        raise FormatError("not a legacy torch checkpoint: bad magic number", 0)
    layout = StorageLayout(source, runs[3].result, runs[4].result, runs[4].end)
    if layout.untyped is not None:
        raise FormatError("untyped storages in a legacy checkpoint: torch.load cannot read it either", 0)
    if layout.problems:
        raise FormatError(layout.problems[0][0], layout.problems[0][1])
    return _replace(runs[3].result, layout.lookup), "torch_legacy"


def _replace(value: Any, lookup: Callable[[str, str, int, int, str], StorageRef | str],
             persistent: Callable[[PersistentRef, str], TensorInfo | None] | None = None) -> Any:
    infos = list(walk(value, lookup, replace=True, persistent=persistent))
    bad = [i for i in infos if i.problem and i.malformed]
    if bad:
        raise FormatError(f"tensor {bad[0].path}: {bad[0].problem}", getattr(bad[0].call, "offset", None))
    if isinstance(value, PersistentRef) and infos and infos[0].spec is not None:
        return infos[0].spec
    return value


# Legacy tar.


def _tar_members(source: Source) -> dict[str, tarfile.TarInfo]:
    import tarfile  # here, not at the top: it costs every scan's start-up ~5 ms

    try:
        with tarfile.open(fileobj=SourceFile(source), mode="r:") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise FormatError(f"malformed legacy tar: {exc}", 0) from None
    return {m.name: m for m in members if m.isfile()}


def _key(value: Any) -> str | None:
    return str(value) if type(value) is int else _text(value)


class TarTables:
    """The `storages` and `tensors` members: storage table, views, then binary tensor records."""

    def __init__(self, source: Source, members: dict[str, tarfile.TarInfo], machine: Machine) -> None:
        self.runs: dict[str, list[PickleRun]] = {"storages": [], "tensors": []}
        self.storages: dict[str, tuple[StorageRef, int]] = {}  # key → (root storage, offset in elements)
        self.tensors: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], int]] = {}
        self.problems: list[tuple[str, int]] = []
        self.machine, self.source = machine, source
        st, tn = members.get("storages"), members.get("tensors")
        if st is not None:
            self._storages(st.offset_data, st.offset_data + st.size)
        if tn is not None:
            self._tensors(tn.offset_data, tn.offset_data + tn.size)

    def _pickle(self, table: str, pos: int, end: int) -> PickleRun | None:
        run = self.machine.run_one(pos, end)
        self.runs[table].append(run)
        if not run.complete:
            self.problems.append((f"truncated or malformed pickle in the {table} member", run.end))
            return None
        return run

    def _storages(self, pos: int, end: int) -> None:
        count = self._pickle("storages", pos, end)
        if count is None or type(count.result) is not int:
            return
        pos = count.end
        for _ in range(max(0, count.result)):
            run = self._pickle("storages", pos, end)
            if run is None:
                return
            items = run.result.items if isinstance(run.result, PTuple) else []
            cls = items[2].name.rsplit(".", 1)[-1] if len(items) == 3 and isinstance(items[2], Global) else ""
            key = _key(items[0]) if items else None
            if key is None or cls not in STORAGE_DTYPES or run.end + 8 > end:
                self.problems.append(("storage record is not (key, location, type) + count", run.start))
                return
            code, itemsize, _ = STORAGE_DTYPES[cls]
            (n,) = struct.unpack("<q", self.source.read(run.end, 8))
            if n < 0 or run.end + 8 + n * itemsize > end:
                self.problems.append((f"truncated: storage {safe_text(key, 60)} needs {n * itemsize:,} bytes",
                                      run.end))
                return
            ref = StorageRef(key, code, n * itemsize, run.end + 8, _text(items[1]) or "")
            self.storages[key] = (ref, 0)
            pos = run.end + 8 + n * itemsize
        views = self._pickle("storages", pos, end)
        for view in views.result.items if views is not None and isinstance(views.result, PList) else []:
            items = view.items if isinstance(view, PTuple) else []
            root = self.storages.get(_key(items[1]) or "") if len(items) == 4 else None
            target = _key(items[0]) if items else None
            if root is None or target is None or type(items[2]) is not int:
                self.problems.append(("storage view names no known storage", views.start if views else pos))
                continue
            self.storages[target] = (root[0], root[1] + items[2])

    def _tensors(self, pos: int, end: int) -> None:
        count = self._pickle("tensors", pos, end)
        if count is None or type(count.result) is not int:
            return
        pos = count.end
        for _ in range(max(0, count.result)):
            run = self._pickle("tensors", pos, end)
            items = run.result.items if run is not None and isinstance(run.result, PTuple) else []
            if run is None or len(items) != 3 or _key(items[0]) is None or run.end + 8 > end:
                self.problems.append(("tensor record is not (key, storage id, type) + sizes", pos))
                return
            (ndim,) = struct.unpack("<i", self.source.read(run.end, 4))
            need = 8 + 16 * max(ndim, 0) + 8
            if not 0 <= ndim <= 64 or run.end + need > end:
                self.problems.append((f"tensor record with {ndim} dimensions does not fit", run.end))
                return
            values = struct.unpack(f"<{2 * ndim + 1}q", self.source.read(run.end + 8, need - 8))
            self.tensors[_key(items[0]) or ""] = (_key(items[1]) or "", values[:ndim], values[ndim:2 * ndim],
                                                  values[-1])
            pos = run.end + need

    def tensor(self, ref: PersistentRef, path: str) -> TensorInfo | None:
        key = _key(ref.pid)
        if key is None:
            return None
        info = TensorInfo(path, ref)
        record = self.tensors.get(key)
        storage = self.storages.get(record[0]) if record else None
        if record is None or storage is None:
            info.problem, info.malformed = f"tensor {key} has no record in the tensors/storages members", True
            return info
        root, view_offset = storage
        _, shape, strides, offset = record
        info.torch_dtype = next(t for c, _, t in STORAGE_DTYPES.values() if c == root.dtype)
        info.location = root.location
        spec = TensorSpec(root.dtype, shape, strides, offset + view_offset, root)
        last = spec.storage_offset + sum((d - 1) * s for d, s in zip(shape, strides, strict=True))
        if min(shape + strides + (spec.storage_offset,), default=0) < 0 or (
                spec.numel and (last + 1) * root.itemsize > root.nbytes):
            info.problem, info.malformed = "tensor reaches outside its storage", True
            return info
        info.spec = spec
        return info


def parse_tar(source: Source, ctx: ScanContext, root: Node) -> None:
    root.attrs["container"] = "tar"
    members = _tar_members(source)
    nodes = {name: root.child(MEMBER, safe_text(name), offset=m.offset, length=m.size + 512,
                              member=source.member, attrs={"size": m.size}) for name, m in members.items()}
    machine = Machine(source.view(), limits=ctx.limits, tick=ctx.check)
    tables = TarTables(source, members, machine)  # torch reads `storages` first
    for table, runs in tables.runs.items():
        for i, run in enumerate(runs):
            add_run(run, source, ctx, nodes[table], f"pickle #{i + 1}")
    for message, offset in tables.problems:
        ctx.report(Malformed, f"malformed legacy tar: {message}", node=root, offset=offset)
    for name, m in members.items():
        if name in ("storages", "tensors"):
            continue
        runs = scan_pickle(source, ctx, nodes[name], start=m.offset_data, end=m.offset_data + m.size)
        if name == "pickle" and runs:
            add_tensors(source, ctx, root, runs[0], _no_lookup, source.member, persistent=tables.tensor)
    for name in TAR_MEMBERS:
        if name not in members and name != "sys_info":
            ctx.report(Malformed, f"malformed legacy tar: no {name!r} member, torch.load fails", node=root,
                       offset=0)


def _no_lookup(key: str, code: str, itemsize: int, numel: int, location: str) -> str:
    return "a zip-style storage id inside a legacy tar checkpoint"


def load_tar_structure(source: Source, limits: Limits) -> Any:
    members = _tar_members(source)
    if "pickle" not in members:
        raise FormatError("legacy tar without a 'pickle' member", 0)
    tables = TarTables(source, members, Machine(source.view(), limits=limits))
    if tables.problems:
        raise FormatError(tables.problems[0][0], tables.problems[0][1])
    m = members["pickle"]
    run = Machine(source.view(), limits=limits).run_one(m.offset_data, m.offset_data + m.size)
    if not run.complete:
        raise FormatError("the tar's main pickle is truncated or malformed", run.end)
    return _replace(run.result, _no_lookup, tables.tensor)
