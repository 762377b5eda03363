"""GGUF (llama.cpp): a header of typed key/value pairs and tensor infos, then aligned tensor data.

Our own reader over the map, because gguf-py's `GGUFReader` builds every array eagerly (7.6 s
and 523 MB for a 152k-token vocabulary) and raises on a truncated file. gguf-py is used only
for its constants (value types, quantization types and their block sizes). Every count, length
and dimension product is checked against the bytes that remain before anything is read, with
Python ints (no wrap-around). Large arrays keep only a page index (one offset per 256 elements)
and build element nodes when expanded. The checks mirror what ggml's `gguf_init_from_file`
refuses, so a file llama.cpp would reject, or read differently from another tool, is a finding.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import LimitExceeded, Rule, Severity, TrailingData
from airlock.core.source import Source
from airlock.core.text import human_size, safe_text
from airlock.core.tree import (
    ARRAY,
    DATA,
    ELEMENT,
    FIELD,
    FILE,
    GROUP,
    HEADER,
    METADATA,
    PAGE_SIZE,
    TEMPLATE,
    TENSOR,
    Node,
)

NAME = "gguf"
EXTENSIONS = (".gguf",)

MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME: names of 64 bytes or more are refused
MAX_NESTING = 8  # arrays of arrays
INT64_MAX = 2**63 - 1
DEFAULT_ALIGNMENT = 32
PREVIEW_BYTES = 1024  # of a string value, for its label
HIDDEN_SNIFF_CAP = 64 * 1024**2
# Real files have tens of KV pairs and at most tens of thousands of tensors; a hostile count with a
# file full of tiny records would otherwise cost a record per entry (memory, not just time).
MAX_KV_PAIRS = 100_000
MAX_TENSORS = 1_000_000


class Truncated(Rule):
    id = "GG001"
    severity = Severity.HIGH
    title = "GGUF file truncated"
    help = "The file ends before what its header declares (a partial download, or a count/length that lies)."


class MalformedHeader(Rule):
    id = "GG002"
    severity = Severity.HIGH
    title = "Malformed GGUF header"
    help = ("An unknown version or value type, a bad alignment or a key of the wrong type: llama.cpp "
            "refuses it.")


class DuplicateKey(Rule):
    id = "GG003"
    severity = Severity.HIGH
    title = "Duplicate GGUF key"
    help = "Two values under one key: readers disagree on which one counts (llama.cpp refuses the file)."


class DuplicateTensor(Rule):
    id = "GG004"
    severity = Severity.HIGH
    title = "Duplicate tensor name"
    help = "Two tensors share a name: readers disagree on which one loads (llama.cpp refuses the file)."


class UnknownTensorType(Rule):
    id = "GG005"
    severity = Severity.HIGH
    title = "Unknown tensor type"
    help = "A tensor's type is not a known ggml type: its size, and the layout after it, cannot be checked."


class BadShape(Rule):
    id = "GG006"
    severity = Severity.HIGH
    title = "Invalid tensor shape"
    help = ("More than 4 dimensions, a dimension that is negative as int64, a product that overflows int64, "
            "a first dimension that is not a multiple of the type's block size, or a name too long.")


class BadLayout(Rule):
    id = "GG007"
    severity = Severity.HIGH
    title = "Tensor data layout differs from llama.cpp's"
    help = ("llama.cpp requires each tensor at the aligned end of the previous one; holes, overlaps and "
            "reordering are refused and let two readers see different data.")


class _Consts:
    __slots__ = ("array", "quant", "scalar_fmt", "string", "uint32", "value_names")

    def __init__(self, value_names: dict[int, str], scalar_fmt: dict[int, str], string: int, array: int,
                 uint32: int, quant: dict[int, tuple[str, int, int]]) -> None:
        self.value_names = value_names
        self.scalar_fmt = scalar_fmt
        self.string = string
        self.array = array
        self.uint32 = uint32
        self.quant = quant  # type → (name, block size, bytes per block)


def _gguf_constants() -> Any:
    """gguf-py's `constants` module, without the package around it.

    `import gguf` imports numpy and gguf's lazy-tensor machinery (~0.3 s here, most of the
    whole-process budget for a GGUF scan); `gguf/constants.py` itself needs only `enum`.
    Falls back to the normal import wherever the file cannot be found (a frozen app).
    """
    import sys

    loaded = sys.modules.get("gguf.constants")
    if loaded is not None:
        return loaded
    import importlib.util
    import os

    try:
        spec = importlib.util.find_spec("gguf")
        origin = spec.origin if spec is not None else None
        path = os.path.join(os.path.dirname(origin), "constants.py") if origin else ""
        if os.path.isfile(path):
            own = importlib.util.spec_from_file_location("airlock_gguf_constants", path)
            if own is not None and own.loader is not None:
                module = importlib.util.module_from_spec(own)
                own.loader.exec_module(module)
                return module
    except (ImportError, OSError, SyntaxError):
        pass
    import gguf.constants

    return gguf.constants


@functools.cache
def _consts() -> _Consts:
    constants = _gguf_constants()
    GGML_QUANT_SIZES, GGMLQuantizationType = constants.GGML_QUANT_SIZES, constants.GGMLQuantizationType
    v = constants.GGUFValueType
    fmt = {v.UINT8: "B", v.INT8: "b", v.UINT16: "H", v.INT16: "h", v.UINT32: "I", v.INT32: "i",
           v.FLOAT32: "f", v.BOOL: "?", v.UINT64: "Q", v.INT64: "q", v.FLOAT64: "d"}
    quant = {int(t): (t.name, *GGML_QUANT_SIZES[t]) for t in GGMLQuantizationType if t in GGML_QUANT_SIZES}
    return _Consts({int(t): t.name.lower() for t in v}, {int(k): c for k, c in fmt.items()},
                   int(v.STRING), int(v.ARRAY), int(v.UINT32), quant)


class _Short(Exception):
    """The file ends before a field: becomes the one `truncated` finding."""

    def __init__(self, what: str, offset: int, need: int, have: int) -> None:
        super().__init__(what)
        self.what, self.offset, self.need, self.have = what, offset, need, have


def sniff(head: bytes, size: int) -> int:
    if head[:4] != b"GGUF":
        return 0
    if len(head) >= 8:
        le, be = struct.unpack_from("<I", head, 4)[0], struct.unpack_from(">I", head, 4)[0]
        if 1 <= le <= 3 or 1 <= be <= 3:
            return 100
    return 80  # an unknown version is still ours to report


class _Reader:
    def __init__(self, buf: Any, size: int, endian: str, wide: bool) -> None:
        self.buf, self.size, self.endian = buf, size, endian
        self.u32s = struct.Struct(endian + "I")
        self.cnt = struct.Struct(endian + ("Q" if wide else "I"))  # GGUF v1 used 32-bit counts

    def need(self, pos: int, n: int, what: str) -> None:
        if n > self.size - pos:
            raise _Short(what, pos, n, max(self.size - pos, 0))

    def u32(self, pos: int, what: str) -> int:
        self.need(pos, 4, what)
        return int(self.u32s.unpack_from(self.buf, pos)[0])

    def count(self, pos: int, what: str) -> tuple[int, int]:
        self.need(pos, self.cnt.size, what)
        return int(self.cnt.unpack_from(self.buf, pos)[0]), pos + self.cnt.size

    def string(self, pos: int, what: str) -> tuple[int, int, int]:
        """(start of the bytes, length, end) of a length-prefixed string."""
        length, start = self.count(pos, f"{what} length")
        self.need(start, length, f"{what} ({length:,} bytes)")
        return start, length, start + length

    def text(self, start: int, length: int, limit: int = PREVIEW_BYTES) -> str:
        return bytes(self.buf[start:start + min(length, limit)]).decode("utf-8", errors="backslashreplace")


class _Array:
    __slots__ = ("count", "end", "etype", "marks", "start")

    def __init__(self, etype: int, count: int, start: int, end: int, marks: list[int] | None) -> None:
        self.etype = etype
        self.count = count
        self.start = start  # first element
        self.end = end
        self.marks = marks  # offset of every PAGE_SIZE-th element, for variable-size elements


class _KV:
    __slots__ = ("end", "index", "key", "offset", "value", "vtype")

    def __init__(self, index: int, key: str, offset: int, end: int, vtype: int, value: Any) -> None:
        self.index = index
        self.key = key
        self.offset = offset
        self.end = end
        self.vtype = vtype
        self.value = value  # scalar, (start, length) of a string, or _Array


class _Tensor:
    __slots__ = ("data", "dims", "name", "name_len", "nbytes", "offset", "ttype")

    def __init__(self, name: str, offset: int, dims: tuple[int, ...], ttype: int, data: int, name_len: int,
                 nbytes: int | None = None) -> None:
        self.name = name
        self.offset = offset  # of its info record
        self.dims = dims
        self.ttype = ttype
        self.data = data  # offset relative to the data section
        self.name_len = name_len
        self.nbytes = nbytes


class _Parser:
    def __init__(self, source: Source, ctx: ScanContext, root: Node) -> None:
        self.source, self.ctx, self.root, self.c = source, ctx, root, _consts()
        self.member = source.member
        le = struct.unpack_from("<I", source.buffer, 4)[0]
        # gguf-py's test: a big-endian file's version reads as N << 16 in little-endian.
        endian = ">" if le & 0xFFFF == 0 and le else "<"
        self.version = struct.unpack_from(endian + "I", source.buffer, 4)[0]
        self.r = _Reader(source.buffer, source.size, endian, self.version >= 2)
        self.endian = endian
        self.parsing = True
        self.kvs: list[_KV] = []
        self.kv_nodes: list[Node] = []

    # Values

    def skip_value(self, vtype: int, pos: int, what: str, depth: int = 0) -> tuple[Any, int]:
        """Read a scalar, or only locate a string or array. Returns (value, end)."""
        c, r = self.c, self.r
        fmt = c.scalar_fmt.get(vtype)
        if fmt is not None:
            n = struct.calcsize(fmt)
            r.need(pos, n, what)
            return struct.unpack_from(r.endian + fmt, r.buf, pos)[0], pos + n
        if vtype == c.string:
            start, length, end = r.string(pos, what)
            return (start, length), end
        if vtype == c.array:
            if depth >= MAX_NESTING:
                raise FormatError(f"{what}: arrays nested deeper than {MAX_NESTING}", pos)
            etype = r.u32(pos, f"{what} element type")
            count, start = r.count(pos + 4, f"{what} element count")
            array = self.skip_array(etype, count, start, what, depth)
            return array, array.end
        raise FormatError(f"{what}: unknown value type {vtype}", pos)

    def skip_array(self, etype: int, count: int, start: int, what: str, depth: int) -> _Array:
        c, r = self.c, self.r
        remaining = r.size - start
        fmt = c.scalar_fmt.get(etype)
        if fmt is not None:
            n = count * struct.calcsize(fmt)
            r.need(start, n, f"{what}: {count:,} {c.value_names[etype]} elements ({n:,} bytes)")
            return _Array(etype, count, start, start + n, None)
        if etype not in (c.string, c.array):
            raise FormatError(f"{what}: unknown element type {etype}", start - 12)
        least = r.cnt.size if etype == c.string else 4 + r.cnt.size
        if count * least > remaining:
            raise _Short(f"{what}: {count:,} {c.value_names[etype]} elements (at least "
                         f"{count * least:,} bytes)", start, count * least, remaining)
        marks: list[int] = []
        pos = start
        for first in range(0, count, PAGE_SIZE):
            if self.parsing:  # page factories run later, outside the scan's time budget
                self.ctx.check()
            marks.append(pos)
            pos = self._walk(etype, pos, min(PAGE_SIZE, count - first), first, what, depth)
        return _Array(etype, count, start, pos, marks)

    def _walk(self, etype: int, pos: int, n: int, first: int, what: str, depth: int) -> int:
        """Offset after n variable-size elements starting at pos (element index `first`)."""
        r = self.r
        if etype == self.c.string:
            unpack, width, end = r.cnt.unpack_from, r.cnt.size, pos
            try:
                for _ in range(n):  # the hot loop of a 150k-token vocabulary: keep it bare
                    end += width + unpack(r.buf, end)[0]
                if end <= r.size:
                    return int(end)
            except (struct.error, OverflowError):
                pass
            # Past the end: read this page again element by element to say exactly where.
        for i in range(first, first + n):
            _, pos = self.skip_value(etype, pos, f"{what}[{i:,}]", depth + 1)
        return pos

    # The file, top to bottom

    def run(self) -> None:
        r, root = self.r, self.root
        root.attrs.update(version=self.version,
                          byte_order="big-endian" if self.endian == ">" else "little-endian")
        if self.version not in (1, 2, 3):
            raise FormatError(f"unknown GGUF version {self.version} (known: 1 to 3)", 4)
        header = root.child(HEADER, f"header (GGUF v{self.version})", offset=0, member=self.member)
        header.child(FIELD, f"version = {self.version}", offset=4, length=4, member=self.member,
                     attrs={"value": self.version})
        try:
            self.n_tensors, pos = r.count(8, "tensor count")
            self.n_kv, pos = r.count(pos, "KV count")
        except _Short as short:
            self.truncated(short, "the rest of the header, every tensor info and the tensor data")
            return
        w = r.cnt.size
        header.child(FIELD, f"tensor count = {self.n_tensors:,}", offset=8, length=w, member=self.member,
                     attrs={"value": self.n_tensors})
        header.child(FIELD, f"KV count = {self.n_kv:,}", offset=8 + w, length=w, member=self.member,
                     attrs={"value": self.n_kv})
        root.attrs.update(tensors=self.n_tensors, kv_pairs=self.n_kv)
        least = self.n_kv * (w + 4 + 1) + self.n_tensors * (w + 4 + 4 + 8)
        if least > r.size - pos:
            self.counts_note = (f"; the declared {self.n_kv:,} KV pairs and {self.n_tensors:,} tensors need "
                                f"at least {least:,} bytes, the file has {r.size - pos:,} after the counts")
        kvs_end = self.read_kvs(pos)
        if kvs_end is None:
            return
        alignment = self.alignment()
        root.attrs["alignment"] = alignment
        infos, end = self.read_infos(kvs_end)
        header.length = end
        self.check_tensors(infos, end, alignment, complete=len(infos) == self.n_tensors)

    def truncated(self, short: _Short, missing: str) -> None:
        self.ctx.report(Truncated, f"truncated: {safe_text(short.what, 200)} needs {short.need:,} bytes at "
                        f"offset {short.offset:,} but only {short.have:,} remain; missing: {missing}"
                        f"{self.counts_note}", node=self.root, offset=short.offset)

    def over_limit(self, count: int, limit: int, what: str, pos: int) -> None:
        self.ctx.report(LimitExceeded, f"the header declares {count:,} {what}; Airlock read the first "
                        f"{limit:,} and did not inspect the rest of the file", node=self.root, offset=pos)

    counts_note = ""
    n_tensors = 0
    n_kv = 0

    # Key/value pairs

    def read_kvs(self, pos: int) -> int | None:
        r, n = self.r, self.n_kv
        group = self.root.child(GROUP, f"metadata ({n:,})", offset=pos, member=self.member)
        end: int | None = None
        try:
            for i in range(min(n, MAX_KV_PAIRS)):
                self.ctx.tick(64)
                start = pos
                koff, klen, pos = r.string(pos, f"KV #{i + 1} key")
                key = r.text(koff, klen, 512)
                what = f"KV #{i + 1} {safe_text(key, 80)!r}"
                vtype = r.u32(pos, f"{what} value type")
                value, pos = self.skip_value(vtype, pos + 4, what)
                self.kvs.append(_KV(i, key, start, pos, vtype, value))
            if n <= MAX_KV_PAIRS:
                end = pos
            else:
                self.over_limit(n, MAX_KV_PAIRS, "KV pairs", pos)  # end stays None: stop here
        except _Short as short:
            i = len(self.kvs)
            self.truncated(short, f"KV pairs {i + 1:,} to {n:,} of {n:,}, the {self.n_tensors:,} tensor "
                           "info(s) and the tensor data")
        except FormatError as exc:
            self.ctx.report(MalformedHeader, f"malformed: {exc.message}; {n - len(self.kvs):,} KV pairs, "
                            "the tensor infos and the tensor data were not read", node=self.root,
                            offset=exc.offset)
        self.add_kv_nodes(group)
        return end

    def add_kv_nodes(self, group: Node) -> None:
        from airlock.core.templates import analyze_template  # jinja2 only when a template is present

        kvs = self.kvs
        if len(kvs) <= PAGE_SIZE:
            self.kv_nodes = [group.add(self.kv_node(kv)) for kv in kvs]
        else:
            group.set_lazy_children(len(kvs), lambda a, b: [self.kv_node(kv) for kv in kvs[a:b]])
            self.kv_nodes = [group] * len(kvs)
        seen: set[str] = set()
        for kv, node in zip(kvs, self.kv_nodes, strict=True):
            if kv.key in seen:
                self.ctx.report(DuplicateKey, f"duplicate key {safe_text(kv.key, 80)!r} (KV "
                                f"#{kv.index + 1}): readers disagree on which value counts", node=node,
                                offset=kv.offset)
            seen.add(kv.key)
            if _is_template(kv.key) and kv.vtype == self.c.string:
                start, length = kv.value
                text = self.r.text(start, length, length)
                if node is group:  # too many keys to show each: give the template a node of its own
                    node = self.root.child(TEMPLATE, safe_text(kv.key, 120), offset=kv.offset,
                                           length=kv.end - kv.offset, member=self.member)
                analyze_template(text, self.ctx, node)

    def kv_node(self, kv: _KV) -> Node:
        c, key = self.c, safe_text(kv.key, 120)
        attrs: dict[str, Any] = {"key": key, "type": c.value_names.get(kv.vtype, str(kv.vtype))}
        span = (kv.offset, kv.end - kv.offset)
        if isinstance(kv.value, _Array):
            return self.array_node(key, kv.value, attrs, span)
        if kv.vtype == c.string:
            start, length = kv.value
            text = self.r.text(start, length)
            attrs.update(value=safe_text(text, 400), size=length)
            if _is_template(kv.key):
                attrs["text"] = self.r.text(start, length, length)
                return self.node(TEMPLATE, f"{key} ({length:,} bytes)", span, attrs)
            return self.node(METADATA, f"{key} = {safe_text(text, 120)}", span, attrs)
        attrs["value"] = kv.value
        return self.node(METADATA, f"{key} = {_scalar(kv.value)}", span, attrs)

    def node(self, kind: str, label: str, span: tuple[int, int], attrs: dict[str, Any]) -> Node:
        return Node(kind, label, offset=span[0], length=span[1], member=self.member, attrs=attrs)

    def array_node(self, label: str, arr: _Array, attrs: dict[str, Any], span: tuple[int, int]) -> Node:
        ename = self.c.value_names.get(arr.etype, str(arr.etype))
        attrs.update(type="array", element_type=ename, count=arr.count, size=arr.end - arr.start)
        preview = ", ".join(n.label.split("] ", 1)[-1] for n in self.elements(arr, 0, min(arr.count, 3)))
        more = ", …" if arr.count > 3 else ""
        node = self.node(ARRAY, f"{label} = [{ename} × {arr.count:,}] [{safe_text(preview, 100)}{more}]",
                         span, attrs)
        if arr.count:
            node.set_lazy_children(arr.count, lambda a, b: self.elements(arr, a, b))
        return node

    def elements(self, arr: _Array, start: int, stop: int) -> list[Node]:
        """Nodes for elements start..stop-1, read from the map when a view asks for them."""
        c, r, member = self.c, self.r, self.member
        if start >= stop:
            return []  # an empty array has no page marks to start from
        fmt = c.scalar_fmt.get(arr.etype)
        if fmt is not None:
            size = struct.calcsize(fmt)
            values = struct.unpack_from(f"{r.endian}{stop - start}{fmt}", r.buf, arr.start + start * size)
            return [Node(ELEMENT, f"[{i:,}] {_scalar(v)}", offset=arr.start + i * size, length=size,
                         member=member, attrs={"value": v}) for i, v in enumerate(values, start)]
        assert arr.marks is not None
        pos = arr.marks[start // PAGE_SIZE]
        for _ in range(start % PAGE_SIZE):
            _, pos = self.skip_value(arr.etype, pos, "element")
        out = []
        for i in range(start, stop):
            value, end = self.skip_value(arr.etype, pos, f"element {i:,}")
            if isinstance(value, _Array):
                out.append(self.array_node(f"[{i:,}]", value, {}, (pos, end - pos)))
            else:
                text = r.text(*value)
                out.append(self.node(ELEMENT, f"[{i:,}] {safe_text(text, 120)}", (pos, end - pos),
                                     {"value": safe_text(text, 400), "size": value[1]}))
            pos = end
        return out

    def alignment(self) -> int:
        for kv, node in zip(self.kvs, self.kv_nodes, strict=True):
            if kv.key != "general.alignment":
                continue
            if kv.vtype != self.c.uint32:
                kind = self.c.value_names.get(kv.vtype)
                self.ctx.report(MalformedHeader, f"general.alignment is a {kind}, not the uint32 llama.cpp "
                                "requires", node=node, offset=kv.offset)
            elif kv.value == 0 or kv.value & (kv.value - 1):
                self.ctx.report(MalformedHeader, f"general.alignment {kv.value:,} is not a power of two",
                                node=node, offset=kv.offset)
            else:
                return int(kv.value)
        return DEFAULT_ALIGNMENT

    # Tensor infos and data

    def read_infos(self, pos: int) -> tuple[list[_Tensor], int]:
        r, n, w = self.r, self.n_tensors, self.r.cnt.size
        infos: list[_Tensor] = []
        try:
            for j in range(min(n, MAX_TENSORS)):
                self.ctx.tick(256)
                start = pos
                noff, nlen, pos = r.string(pos, f"tensor info #{j + 1} name")
                name = r.text(noff, nlen, 512)
                what = f"tensor info #{j + 1} {safe_text(name, 80)!r}"
                n_dims = r.u32(pos, f"{what} dimension count")
                pos += 4
                if n_dims > MAX_DIMS and n_dims * w > r.size - pos:
                    raise FormatError(f"{what} has {n_dims:,} dimensions (at most {MAX_DIMS})", pos - 4)
                r.need(pos, n_dims * w, f"{what} dimensions")
                dims = struct.unpack_from(f"{r.endian}{n_dims}{'Q' if w == 8 else 'I'}", r.buf, pos)
                pos += n_dims * w
                ttype = r.u32(pos, f"{what} type")
                r.need(pos + 4, 8, f"{what} data offset")
                (data,) = struct.unpack_from(r.endian + "Q", r.buf, pos + 4)
                pos += 12
                infos.append(_Tensor(name, start, tuple(int(d) for d in dims), ttype, int(data), nlen))
            if n > MAX_TENSORS:
                self.over_limit(n, MAX_TENSORS, "tensors", pos)
        except _Short as short:
            self.truncated(short, f"tensor infos {len(infos) + 1:,} to {n:,} of {n:,} and the tensor data")
        except FormatError as exc:
            self.ctx.report(MalformedHeader, f"malformed: {exc.message}; {n - len(infos):,} tensor infos "
                            "were not read", node=self.root, offset=exc.offset)
        return infos, pos

    def check_tensors(self, infos: list[_Tensor], header_end: int, alignment: int, *, complete: bool) -> None:
        ctx, size, quant = self.ctx, self.r.size, self.c.quant
        data_start = -(-header_end // alignment) * alignment
        self.root.attrs["data_offset"] = data_start
        problems: list[tuple[type[Rule], _Tensor, str]] = []
        seen: set[str] = set()
        for t in infos:
            ctx.tick(1024)
            label = repr(safe_text(t.name, 80))
            if t.name in seen:
                problems.append((DuplicateTensor, t, f"duplicate tensor name {label}"))
            seen.add(t.name)
            if t.name_len >= MAX_NAME:
                problems.append((BadShape, t, f"tensor name {label} is {t.name_len} bytes (llama.cpp: "
                                 f"< {MAX_NAME})"))
            if len(t.dims) > MAX_DIMS:
                problems.append((BadShape, t, f"tensor {label} has {len(t.dims)} dimensions (at most "
                                 f"{MAX_DIMS})"))
            numel = 1
            for d in t.dims:
                numel *= d
            if any(d > INT64_MAX for d in t.dims) or numel > INT64_MAX:
                problems.append((BadShape, t, f"tensor {label} shape {t.dims} is negative or overflows "
                                 "int64"))
                continue
            if t.ttype not in quant:
                problems.append((UnknownTensorType, t, f"tensor {label} has unknown type {t.ttype}"))
                continue
            _, block, per_block = quant[t.ttype]
            if t.dims and t.dims[0] % block:
                problems.append((BadShape, t, f"tensor {label}: first dimension {t.dims[0]:,} is not a "
                                 f"multiple of the {quant[t.ttype][0]} block size {block}"))
                continue
            t.nbytes = numel // block * per_block
        layout, end, padded = self.layout(infos, alignment)
        past = [t for t in infos if t.nbytes is not None and data_start + t.data + t.nbytes > size]
        anchors = self.add_tensor_nodes(infos, data_start, {id(t) for t in past})
        for rule, t, message in problems:
            ctx.report(rule, message, node=anchors.get(t.name, self.root), offset=t.offset)
        if layout:
            t, want = layout[0]
            ctx.report(BadLayout, f"tensor {safe_text(t.name, 80)!r} has data offset {t.data:,} where "
                       f"llama.cpp expects {want:,} (the aligned end of the tensor before it); "
                       f"{len(layout):,} of {len(infos):,} tensors are out of place (holes, overlaps or "
                       "reordering)",
                       node=anchors.get(t.name, self.root), offset=t.offset)
        if past and complete:
            first = min(past, key=lambda t: t.data)
            needed = max(data_start + t.data + (t.nbytes or 0) for t in past)
            ctx.report(Truncated, f"truncated: the file ends at {size:,} but tensor data runs to {needed:,}; "
                       f"{len(past):,} of {len(infos):,} tensors are missing or cut (first "
                       f"{safe_text(first.name, 80)!r}), {human_size(needed - size)} missing",
                       node=anchors.get(first.name, self.root), offset=size)
        if complete and end is not None:
            self.trailing(header_end if not infos else data_start + end, data_start + padded)

    def layout(self, infos: list[_Tensor],
               alignment: int) -> tuple[list[tuple[_Tensor, int]], int | None, int]:
        """Tensors not where llama.cpp's loader expects them, and the end of the data (bare, padded)."""
        expected, wrong = 0, list[tuple[_Tensor, int]]()
        for t in infos:
            if t.nbytes is None:
                return wrong, None, 0  # the size of everything after an unknown type is unknown
            if t.data != expected:
                wrong.append((t, expected))
            expected += -(-t.nbytes // alignment) * alignment
        ends = [t.data + (t.nbytes or 0) for t in infos]
        return wrong, max(ends, default=0), max([expected, *ends])

    def add_tensor_nodes(self, infos: list[_Tensor], data_start: int, past: set[int]) -> dict[str, Node]:
        from airlock.core.formats.safetensors import add_tensor_tree

        quant, member = self.c.quant, self.member
        group = self.root.child(GROUP, f"tensors ({len(infos):,})", offset=data_start, member=member,
                                attrs={"size": sum(t.nbytes or 0 for t in infos)})

        def leaf(label: str, t: _Tensor) -> Node:
            dtype = quant[t.ttype][0] if t.ttype in quant else f"unknown ({t.ttype})"
            attrs: dict[str, Any] = {"name": safe_text(t.name), "dtype": dtype, "shape": t.dims,
                                     "size": t.nbytes, "data_offset": data_start + t.data,
                                     "info_offset": t.offset}
            if id(t) in past:
                attrs["missing"] = True
            return Node(TENSOR, label, offset=data_start + t.data, length=t.nbytes, member=member,
                        attrs=attrs)

        return add_tensor_tree(group, [(t.name, t.nbytes or 0, t) for t in infos], leaf)

    def trailing(self, start: int, padded_end: int) -> None:
        """Bytes after the last tensor that are more than zero padding: shown and sniffed."""
        source, ctx = self.source, self.ctx
        length = source.size - start
        if length <= 0:
            return
        if source.size <= padded_end and not source.read(start, length).strip(b"\0"):
            return  # alignment padding
        node = self.root.child(DATA, f"bytes after the tensor data ({length:,})", offset=start, length=length,
                               member=self.member, attrs={"size": length,
                                                          "preview": safe_text(source.read(start, 32), 48)})
        label = f"<bytes after the GGUF data at {start}>"
        before = len(ctx.findings)
        data = source.read(start, min(length, HIDDEN_SNIFF_CAP))
        nested = ctx.parse_nested(Source.from_bytes(data, name=label, member=label, path=source.path), node,
                                  label=label)
        worst = max(ctx.findings[before:], key=lambda f: f.severity, default=None)
        what = f"they read as {nested.attrs.get('format', 'unknown')}"
        if worst is not None and worst.severity >= Severity.MEDIUM:
            what += f" ({worst.severity.label}: {safe_text(worst.message, 120)})"
        ctx.report(TrailingData, f"{length:,} bytes after the tensor data at offset {start:,}; {what}. "
                   "llama.cpp ignores them, but they can hide content", node=node, offset=start)


def _is_template(key: str) -> bool:
    return key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template.")


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse(source: Source, ctx: ScanContext) -> Node:
    root = ctx.current or Node(FILE, source.name, offset=0, length=source.size, member=source.member)
    if source.size < 8:
        raise FormatError(f"truncated: {source.size} bytes, shorter than the 8-byte magic and version", 0)
    parser = _Parser(source, ctx, root)
    try:
        parser.run()
    finally:
        parser.parsing = False
    return root
