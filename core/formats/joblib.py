"""joblib dumps, read the way `joblib.load` reads them (joblib/numpy_pickle.py, numpy_pickle_compat.py).

- Since joblib 0.10 a dump is a pickle in which every numpy array is replaced by a
  `NumpyArrayWrapper`; right after the wrapper's BUILD, joblib's unpickler reads the array from
  the file itself: (joblib >= 1.2) one padding-length byte and that many pad bytes, then
  count × itemsize raw bytes — or, for object arrays, a nested pickle. The pickle machine's
  `build_hook` skips exactly those bytes or scans the nested pickle.
- Compressed dumps (zlib/gzip/bz2/xz/lzma/lz4) are unwrapped by the `compressed` format first;
  the inner stream is sniffed again and lands here.
- joblib < 0.10 wrote `NDArrayWrapper`s naming companion `.npy` files, which `joblib.load` reads
  with `numpy.load(allow_pickle=True)`: they are scanned when they sit next to the dump. Before
  0.9.3, dumps were `ZF` containers: b"ZF", the data length in hex padded to 19 characters, zlib.
"""

from __future__ import annotations

import os
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.decompress import Inflater, decompress
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import DataOnly, Malformed, Rule, Severity
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.formats import torch_legacy
from airlock.core.formats.contract import file_node
from airlock.core.formats.pickle import report_trailing
from airlock.core.pickle import is_data_only, scan_pickle
from airlock.core.pickle.analyze import add_run
from airlock.core.pickle.machine import Machine, PickleRun
from airlock.core.pickle.probe import looks_like_pickle
from airlock.core.pickle.values import Call, Global, PDict, PTuple, preview
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import FILE, GROUP, MEMBER, TENSOR, Node

NAME = "joblib"
# joblib's own names for its dumps, compressed ones included: none of them disagrees with the content.
EXTENSIONS = (".joblib", ".jbl", ".pkl", ".pickle", ".z", ".gz", ".bz2", ".xz", ".lzma", ".lz4")
OVERLAPS = ("pickle", "compressed")  # joblib dumps are pickles, plain or compressed, under these names

ZF_PREFIX = b"ZF"
ZF_LENGTH_CHARS = 19  # len(hex(2**64)): joblib pads the hex length to this width
SNIFF_WINDOW = 16 * 1024 * 1024  # how far into a pickle the first array wrapper is looked for
_WRAPPER_MODULES = ("joblib.numpy_pickle", "joblib.numpy_pickle_compat",
                    "sklearn.externals.joblib.numpy_pickle", "sklearn.externals.joblib.numpy_pickle_compat")
_WRAPPERS = ("NumpyArrayWrapper", "NDArrayWrapper", "ZNDArrayWrapper")
_FRAME = 0x95


class CompanionOutside(Rule):
    id = "JBL001"
    severity = Severity.HIGH
    title = "Companion file outside the dump's folder"
    help = ("joblib.load opens an NDArrayWrapper's file with numpy.load(allow_pickle=True); a name with a "
            "path makes it unpickle a file the reviewer was not shown.")


class CompanionMissing(Rule):
    id = "JBL002"
    severity = Severity.INFO
    title = "Companion file not inspected"
    help = ("This old joblib dump keeps arrays in companion files next to it; the file was not found "
            "(or the dump was scanned without its folder), so it was not inspected.")


class ArrayOutsideFrame(Rule):
    id = "JBL003"
    severity = Severity.HIGH
    title = "Array data read from outside the pickle frame"
    help = ("joblib reads an array's bytes from the file after the current pickle frame while the "
            "unpickler keeps reading the frame: the two interleave, which joblib never writes.")


class HiddenInArrayBytes(Rule):
    id = "JBL004"
    severity = Severity.HIGH
    title = "Pickle code hidden in joblib array bytes"
    help = ("joblib.load skips these bytes as array data, but pickle.load or torch.load on the same "
            "file runs them as pickle opcodes.")


# Sniffing


def _is_zf(head: bytes) -> bool:
    if not head.startswith(ZF_PREFIX) or len(head) < 2 + ZF_LENGTH_CHARS:
        return False
    try:
        int(head[2 : 2 + ZF_LENGTH_CHARS], 16)
    except ValueError:
        return False
    return True


def sniff(head: bytes, size: int) -> int:
    return 95 if _is_zf(head) else 0


def sniff_source(source: Source) -> int:
    head = source.head()
    if _is_zf(head):
        return 95
    if looks_like_pickle(head) < 40:
        return 0
    if torch_legacy.starts_with_magic(head):
        return 0  # torch's, never joblib's: spare the search below 16 MiB of storage bytes (~4 ms)
    window = min(source.size, SNIFF_WINDOW)
    buf = source.view()
    find = getattr(buf, "find", None)
    if find is None:  # a memoryview
        find = bytes(buf[:window]).find
    if find(b"joblib.numpy_pickle", 0, window) >= 0 and find(b"ArrayWrapper", 0, window) >= 0:
        return 95  # above plain pickle (90): this pickle needs joblib's reader
    return 0


# Parsing


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    if _is_zf(source.head(64)):
        _parse_zf(source, ctx, root)
        return root
    _scan_stream(source, ctx, root, modern=True)
    return root


def _scan_stream(source: Source, ctx: ScanContext, root: Node, *, modern: bool) -> None:
    """The pickle as joblib's NumpyUnpickler reads it, or (modern=False) as the ZF-era
    ZipNumpyUnpickler does, which knows NDArrayWrapper but not NumpyArrayWrapper."""
    hook = _ArrayHook(source, ctx, root, modern=modern)
    runs = scan_pickle(source, ctx, root, build_hook=hook, label="joblib pickle")
    root.attrs["pickles"] = len(runs)
    if not runs:
        ctx.report(Malformed, "malformed joblib pickle: no opcode could be read", node=root, offset=0)
        return
    nested = hook.finish()
    last = runs[-1]
    if last.complete and last.end < source.size:
        report_trailing(source, ctx, root, last.end)
    hidden = _check_hidden(source, ctx, root, runs, hook) if hook.raw_ranges else 0
    if not hidden and is_data_only(runs + nested):
        ctx.report(DataOnly, "data-only: every global is in Airlock's safe set", node=root, offset=0)


def _parse_zf(source: Source, ctx: ScanContext, root: Node) -> None:
    """joblib < 0.9.3: b"ZF" + hex length (+ a space in 0.8.4) + zlib data holding the pickle."""
    length = int(source.read(2, ZF_LENGTH_CHARS), 16)
    start = 2 + ZF_LENGTH_CHARS
    if source.read(start, 1) == b" ":
        start += 1
    root.attrs["container"] = "joblib ZF (before 0.9.3)"
    root.attrs["declared_length"] = length
    raw = source.slice(start, source.size - start, name=source.name, member=source.member)
    # The declared length bounds the output, so a lying length cannot make this inflate a bomb.
    out = decompress(lambda: Inflater(raw, "zlib"), ctx, name=f"{source.name}!zlib", member="<ZF content>",
                     path=source.path, what="the ZF container's zlib data", declared=length)
    if isinstance(out.error, LimitExceeded):
        ctx.report(LimitRule, f"joblib ZF: {out.error.message}; the first {out.source.size:,} bytes are read "
                   "below", node=root, offset=2)
    elif out.error is not None:
        ctx.report(Malformed, f"malformed ZF container (declares {length:,} bytes): {out.error.message}; "
                   "joblib.load fails on it", node=root, offset=2)
    inner = out.source
    try:
        if looks_like_pickle(inner.head(512)) <= 0:
            # ZNDArrayWrapper companion files are ZF containers of raw array bytes, never unpickled.
            ctx.parse_nested(inner, root, label=f"ZF content ({inner.size:,} bytes)")
            return
        # joblib.load hands a ZF dump's content to ZipNumpyUnpickler.
        node = root.child(FILE, f"ZF content ({inner.size:,} bytes)", offset=0, length=inner.size,
                          member=inner.member, attrs={"format": "joblib", "size": inner.size})
        _scan_stream(inner, ctx, node, modern=False)
    finally:
        out.done()


class _ArrayHook:
    """The machine's build_hook: what joblib's NumpyUnpickler.load_build does after each BUILD."""

    def __init__(self, source: Source, ctx: ScanContext, root: Node, *, modern: bool) -> None:
        self.modern = modern
        self.source = source
        self.ctx = ctx
        self.root = root
        self.arrays: list[dict[str, Any]] = []
        self.companions: list[tuple[str, str, int]] = []  # (wrapper, filename, offset)
        self.nested: list[tuple[PickleRun, int]] = []
        self.raw_ranges: list[tuple[int, int]] = []  # padding + data of non-object arrays
        self._run: Any = None
        self._scanned = 0  # opcodes already looked at for FRAME
        self._frame_end = 0

    def __call__(self, machine: Machine, call: Call, pos: int) -> int:
        kind = _wrapper_kind(call)
        if kind is None or (kind == "NumpyArrayWrapper" and not self.modern):
            return pos
        state = call.state
        if isinstance(state, PTuple) and state.items and isinstance(state.items[0], PDict):
            state = state.items[0]
        if not isinstance(state, PDict):
            raise FormatError(f"malformed joblib {kind}: its state is {preview(state, 60)}, not a dict",
                              pos - 1)
        if kind != "NumpyArrayWrapper":
            filename = state.get("filename")
            self.companions.append((kind, filename if isinstance(filename, str) else repr(filename), pos - 1))
            return pos
        end = self.source.size
        frame_end = self._current_frame_end(machine)
        if frame_end > pos:
            # joblib reads the array from the file, i.e. after the frame the unpickler has buffered.
            self.ctx.report(ArrayOutsideFrame, f"array wrapper BUILD at offset {pos - 1} sits inside a "
                            f"pickle frame that runs to {frame_end}: joblib reads the array from after the "
                            "frame while the unpickler continues inside it", node=self.root, offset=pos - 1)
            return pos
        return self._array(machine, state, pos, end)

    def _current_frame_end(self, machine: Machine) -> int:
        if machine.run is not self._run:
            self._run, self._scanned, self._frame_end = machine.run, 0, 0
        offsets, buf = machine.run.op_offsets, machine.buf
        for i in range(self._scanned, len(offsets)):
            at = offsets[i]
            if buf[at] == _FRAME and at + 9 <= len(buf):
                self._frame_end = at + 9 + int.from_bytes(buf[at + 1 : at + 9], "little")
        self._scanned = len(offsets)
        return self._frame_end

    def _array(self, machine: Machine, state: PDict, pos: int, end: int) -> int:
        at = pos - 1
        shape = state.get("shape")
        if not isinstance(shape, PTuple) or not all(isinstance(d, int) and d >= 0 for d in shape.items):
            raise FormatError(f"malformed NumpyArrayWrapper: shape {preview(shape, 60)} is not a tuple of "
                              "non-negative ints", at)
        count = 1
        for dim in shape.items:
            count *= int(dim)
        itemsize, hasobject, shown = _dtype_facts(state.get("dtype"), at)
        info: dict[str, Any] = {"offset": pos, "dtype": shown, "shape": tuple(int(d) for d in shape.items),
                                "order": safe_text(str(state.get("order")), 8), "elements": count}
        self.arrays.append(info)
        if hasobject:
            # joblib unpickles the object array with a fresh Unpickler on the same file.
            run = Machine(machine.buf, limits=self.ctx.limits, tick=self.ctx.check).run_one(pos, end)
            self.nested.append((run, len(self.arrays)))
            info.update(size=run.end - pos, object=True)
            return run.end if run.complete else end
        self.raw_ranges.append((pos, pos))  # completed below, once the size is known
        if isinstance(state.get("numpy_array_alignment_bytes"), int):  # joblib >= 1.2: padding first
            if pos >= end:
                raise FormatError("truncated joblib array: the padding byte is missing", pos)
            pos += 1 + machine.buf[pos]
        nbytes = count * itemsize
        info.update(offset=pos, size=nbytes)
        self.raw_ranges[-1] = (self.raw_ranges[-1][0], pos + nbytes)
        if pos + nbytes > end:
            raise FormatError(f"truncated joblib array: shape {info['shape']} × {itemsize} bytes needs "
                              f"{nbytes:,} bytes at offset {pos}, but only {max(end - pos, 0):,} remain", at)
        return pos + nbytes

    def finish(self) -> list[PickleRun]:
        """Add the array, nested-pickle and companion nodes once the machine is done."""
        if self.arrays:
            self._array_nodes()
        for run, index in self.nested:
            add_run(run, self.source, self.ctx, self.root, f"object array #{index} pickle")
        for kind, filename, offset in self.companions:
            _companion(self.source, self.ctx, self.root, kind, filename, offset)
        return [run for run, _ in self.nested]

    def _array_nodes(self) -> None:
        arrays, member = self.arrays, self.source.member
        group = self.root.child(GROUP, f"arrays ({len(arrays):,})", member=member)

        def page(start: int, stop: int) -> list[Node]:
            return [Node(TENSOR, f"array #{i + 1}" + (" (object: pickled)" if a.get("object") else ""),
                         offset=a["offset"], length=a.get("size"), member=member,
                         attrs={k: v for k, v in a.items() if k != "offset"})
                    for i, a in enumerate(arrays[start:stop], start)]

        group.set_lazy_children(len(arrays), page)


def _wrapper_kind(call: Call) -> str | None:
    """Which joblib wrapper this BUILD finished, if any: joblib checks isinstance on its own classes."""
    target = call.target
    if target is None:
        return None
    cls: Any = target
    if target.dotted in ("copyreg._reconstructor", "copyreg.__newobj__"):
        items = call.args.items if isinstance(call.args, PTuple) else []
        cls = items[0] if items else None
    if isinstance(cls, Global) and cls.module in _WRAPPER_MODULES and cls.name in _WRAPPERS:
        return cls.name
    return None


def _dtype_facts(dtype: Any, at: int) -> tuple[int, bool, str]:
    """(itemsize, hasobject, text) of a pickled numpy.dtype, as numpy's dtype __setstate__ leaves it."""
    if not (isinstance(dtype, Call) and dtype.target is not None and dtype.target.name == "dtype"
            and dtype.target.module.split(".")[0] == "numpy"):
        raise FormatError(f"malformed NumpyArrayWrapper: dtype {preview(dtype, 60)} is not a numpy.dtype", at)
    args = dtype.args.items if isinstance(dtype.args, PTuple) else []
    code = args[0] if args else None
    if isinstance(code, bytes):
        code = code.decode("latin-1")
    if not isinstance(code, str):
        raise FormatError(f"malformed NumpyArrayWrapper: dtype code {preview(code, 40)} is not a string", at)
    import numpy  # only joblib files with arrays pay for numpy

    try:
        base = numpy.dtype(code)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"malformed NumpyArrayWrapper: numpy rejects dtype {safe_text(code, 40)!r} ({exc})",
                          at) from None
    state = dtype.state.items if isinstance(dtype.state, PTuple) else []
    elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else None
    itemsize, hasobject = int(base.itemsize), bool(base.hasobject)
    if base.kind in "VSU" and elsize > 0:
        itemsize = elsize  # flexible types take their size from the state
    if base.kind == "V" and flags is not None:
        hasobject = bool(flags & 1)  # numpy trusts the pickled flags for void (structured) dtypes
    shown = safe_text(str(base) if base.kind != "V" else code, 60)
    if hasobject and base.kind == "V":
        shown += " (object fields)"
    return itemsize, hasobject, shown


def _companion(source: Source, ctx: ScanContext, root: Node, kind: str, filename: str, offset: int) -> None:
    label = safe_text(filename, 160)
    node = root.child(MEMBER, f"companion file {label}", offset=offset, member=source.member,
                      attrs={"wrapper": kind, "filename": label})
    loads = "numpy.load(allow_pickle=True)" if kind == "NDArrayWrapper" else "read_zfile (raw data)"
    if os.path.isabs(filename) or "/" in filename or "\\" in filename or filename in ("", ".", ".."):
        ctx.report(CompanionOutside, f"{kind} names {label}: joblib.load reads it with {loads}, outside the "
                   "dump's folder", node=node, offset=offset)
        return
    path = source.path if source.path is not None else ctx.path
    sibling = os.path.join(os.path.dirname(path), filename) if path is not None else None
    if sibling is None or not os.path.isfile(sibling):
        ctx.report(CompanionMissing, f"{kind} companion {label} was not found next to the dump; not "
                   "inspected", node=node, offset=offset)
        return
    node.attrs["size"] = os.stat(sibling).st_size
    if kind != "NDArrayWrapper":
        return  # ZNDArrayWrapper data is raw bytes behind zlib, never unpickled
    try:
        companion = Source.open(sibling, name=sibling)
    except OSError as exc:
        ctx.report(CompanionMissing, f"companion {label} cannot be read ({exc.strerror}); not inspected",
                   node=node, offset=offset)
        return
    ctx.parse_nested(companion, node, label=label)


def _check_hidden(source: Source, ctx: ScanContext, root: Node, runs: list[PickleRun],
                  hook: _ArrayHook) -> int:
    """Read each stacked pickle as plain pickle.load would, skipping no array: hidden code runs there."""
    reported: set[int] = set()
    for run in runs:
        plain = Machine(source.view(), limits=ctx.limits, tick=ctx.check).run_one(run.start, source.size)
        for event in plain.events:
            if event.severity < Severity.HIGH or event.rule not in _NAMED_RULES or event.offset in reported:
                continue
            if not any(start <= event.offset < end for start, end in hook.raw_ranges):
                continue  # outside raw array bytes, joblib's own reading already judged it
            reported.add(event.offset)
            ctx.report(HiddenInArrayBytes, "bytes joblib skips as array data run as pickle code under "
                       f"pickle.load: {safe_text(event.message, 240)}", node=root, offset=event.offset,
                       severity=max(Severity(event.severity), Severity.HIGH))
    return len(reported)


# Only rules that need a named global: random array bytes cannot spell one by chance.
_NAMED_RULES = ("PKL001", "PKL004", "PKL006")
