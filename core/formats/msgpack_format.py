"""MessagePack files: Flax checkpoints (`flax.serialization.to_bytes`) and msgpack-numpy payloads.

Read by an own bounded reader of the msgpack spec (never `msgpack.unpackb` with hooks that build
objects): every length is checked against the bytes left before anything is read, nesting is capped,
and the tree keeps at most MAX_NODES nodes (the rest is still read and judged).

Flax writes a state dict whose arrays are extension type 1 (a msgpack (shape, dtype name, bytes)
triple), complex numbers type 2 and numpy scalars type 3 (the same triple, shape ()); chunked big
arrays are maps marked `__msgpack_chunked_array__`. Those become tensor nodes with the offset of
their bytes. What is not plain data:
- an extension type Flax does not write (not 1-3, not the msgpack timestamp -1): its meaning is the
  loader's `ext_hook`, which Airlock cannot see (MSG001, medium);
- a msgpack-numpy object array (`{nd: true, kind: "O", data: …}`): msgpack_numpy.decode runs
  `pickle.loads` on `data` (MSG002, high), and the pickle itself is scanned by the symbolic machine;
- an array whose bytes disagree with its shape and dtype, trailing bytes (msgpack's `ExtraData`),
  truncation or a reserved byte (0xc1): malformed, the loader raises.
"""

from __future__ import annotations

import struct
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats.contract import file_node
from airlock.core.pickle import scan_pickle
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import FIELD, GROUP, TENSOR, Node

NAME = "msgpack"
EXTENSIONS = (".msgpack", ".flax", ".mpk")

MAX_DEPTH = 100  # Flax trees are a few levels deep; recursion stays far from Python's limit
MAX_NODES = 50_000  # tree nodes built per file; deeper content is still read and judged
MAX_ARRAY_NODES = 1_000  # elements of one msgpack array shown one by one
FLAX_EXT = {1: "ndarray", 2: "complex", 3: "numpy scalar", -1: "timestamp"}
ITEMSIZE = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "bfloat16": 2,
            "int32": 4, "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8, "complex64": 8,
            "complex128": 16}


class UnknownExtension(Rule):
    id = "MSG001"
    severity = Severity.MEDIUM
    title = "msgpack extension type Flax does not write"
    help = ("The file holds a msgpack extension type whose meaning is whatever the loading code's ext_hook "
            "makes of it (Flax writes only types 1-3); Airlock cannot see that code.")


class PickledArray(Rule):
    id = "MSG002"
    severity = Severity.HIGH
    title = "msgpack-numpy object array (decoded with pickle.loads)"
    help = ("msgpack_numpy.decode runs pickle.loads on the data of an array whose kind is 'O': loading the "
            "file runs that pickle. Its content is scanned below.")


class Reader:
    def __init__(self, source: Source, ctx: ScanContext, root: Node) -> None:
        self.source = source
        self.view = source.view()
        self.size = source.size
        self.ctx = ctx
        self.root = root
        self.nodes = 0
        self.unknown_ext: dict[int, int] = {}  # code -> first offset

    def need(self, pos: int, n: int, what: str) -> None:
        if n < 0 or pos + n > self.size:
            raise FormatError(f"truncated: {what} at {pos:,} needs {n:,} bytes, {max(self.size - pos, 0):,} "
                              "left", pos)

    def take(self, pos: int, n: int, what: str) -> bytes:
        self.need(pos, n, what)
        data: bytes = self.view[pos:pos + n]
        return data

    def node(self, parent: Node | None, kind: str, label: str, offset: int, length: int | None = None,
             attrs: dict[str, Any] | None = None) -> Node | None:
        if parent is None or self.nodes >= MAX_NODES:
            return None
        self.nodes += 1
        return parent.child(kind, safe_text(label, 200), offset=offset, length=length,
                            member=self.source.member, attrs=attrs)

    def header(self, pos: int) -> tuple[str, int, int]:
        """(kind, count or length or value, position after the header) of the object at pos."""
        b = self.take(pos, 1, "type byte")[0]
        if b <= 0x7F:
            return "int", b, pos + 1
        if b >= 0xE0:
            return "int", b - 0x100, pos + 1
        if 0x80 <= b <= 0x8F:
            return "map", b & 0x0F, pos + 1
        if 0x90 <= b <= 0x9F:
            return "array", b & 0x0F, pos + 1
        if 0xA0 <= b <= 0xBF:
            return "str", b & 0x1F, pos + 1
        simple = {0xC0: ("nil", 0), 0xC2: ("bool", 0), 0xC3: ("bool", 1)}
        if b in simple:
            kind, value = simple[b]
            return kind, value, pos + 1
        sized = {0xC4: ("bin", "B"), 0xC5: ("bin", "H"), 0xC6: ("bin", "I"), 0xD9: ("str", "B"),
                 0xDA: ("str", "H"), 0xDB: ("str", "I"), 0xDC: ("array", "H"), 0xDD: ("array", "I"),
                 0xDE: ("map", "H"), 0xDF: ("map", "I"), 0xC7: ("ext", "B"), 0xC8: ("ext", "H"),
                 0xC9: ("ext", "I")}
        if b in sized:
            kind, fmt = sized[b]
            width = struct.calcsize(fmt)
            (n,) = struct.unpack(">" + fmt, self.take(pos + 1, width, "length"))
            return kind, n, pos + 1 + width
        if 0xD4 <= b <= 0xD8:
            return "ext", 1 << (b - 0xD4), pos + 1
        numbers = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b",
                   0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
        if b in numbers:
            fmt = numbers[b]
            width = struct.calcsize(fmt)
            (value,) = struct.unpack(fmt, self.take(pos + 1, width, "number"))
            if fmt in (">f", ">d"):
                return "float", 0, pos + 1 + width
            return "int", int(value), pos + 1 + width
        raise FormatError(f"malformed: byte 0x{b:02x} at {pos:,} is reserved in msgpack (never used)", pos)

    def scalar(self, pos: int) -> tuple[object, int]:
        """A small value (keys, dtype names, flags) and the end; containers come back as a marker."""
        kind, n, at = self.header(pos)
        if kind in ("str", "bin"):
            self.need(at, n, kind)
            raw = self.take(at, min(n, 4096), kind)  # keys and flags are short; a long one is cut
            return (raw.decode("utf-8", "replace") if kind == "str" else raw), at + n
        if kind in ("int", "bool"):
            return (bool(n) if kind == "bool" else n), at
        if kind == "nil":
            return None, at
        return _Container(kind), self.skip(pos, 0)

    def skip(self, pos: int, depth: int) -> int:
        """The end of the object at pos, read without building nodes (still judged)."""
        return self.read(pos, None, "", depth)

    def read(self, pos: int, parent: Node | None, label: str, depth: int) -> int:
        """Read one object at pos, add its node under parent; the position after it."""
        self.ctx.tick(1024)
        if depth > MAX_DEPTH:
            raise FormatError(f"malformed: nesting deeper than {MAX_DEPTH} levels at {pos:,}", pos)
        kind, n, at = self.header(pos)
        if kind == "map":
            return self.read_map(pos, at, n, parent, label, depth)
        if kind == "array":
            if n > self.size - at:  # every element takes at least one byte
                raise FormatError(f"truncated: array at {pos:,} declares {n:,} elements, "
                                  f"{self.size - at:,} bytes left", pos)
            node = self.node(parent, GROUP, f"{label} [{n:,}]", pos)
            for i in range(n):
                at = self.read(at, node if i < MAX_ARRAY_NODES else None, f"[{i}]", depth + 1)
            if node is not None:
                node.length = at - pos
            return at
        if kind == "ext":
            return self.read_ext(pos, at, n, parent, label)
        if kind in ("str", "bin"):
            self.need(at, n, kind)  # the whole value must be there; only its start is read
            raw = self.take(at, min(n, 200), kind)
            shown = raw.decode("utf-8", "replace") if kind == "str" else raw.hex()
            self.node(parent, FIELD, f"{label} = {shown}" if kind == "str" else f"{label} = <{n:,} bytes>",
                      pos, at + n - pos, {"type": kind, "size": n})
            return at + n
        if kind == "float":
            raw = self.take(pos + 1, at - pos - 1, "float")
            shown = f"{struct.unpack('>f' if len(raw) == 4 else '>d', raw)[0]:g}"
        else:
            shown = str(n) if kind == "int" else str(bool(n)) if kind == "bool" else kind
        self.node(parent, FIELD, f"{label} = {shown}", pos, at - pos, {"type": kind})
        return at

    def read_map(self, pos: int, at: int, n: int, parent: Node | None, label: str, depth: int) -> int:
        if 2 * n > self.size - at:
            raise FormatError(f"truncated: map at {pos:,} declares {n:,} entries, {self.size - at:,} bytes "
                              "left", pos)
        node = self.node(parent, GROUP, f"{label} {{{n:,}}}" if label else f"map {{{n:,}}}", pos)
        small: dict[str, tuple[object, int]] = {}  # scalar values by key, for msgpack-numpy
        for _ in range(n):
            key, at = self.scalar(at)
            name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            value_kind, length, _after = self.header(at)
            if value_kind in ("int", "bool", "nil") or (value_kind in ("str", "bin") and length <= 64):
                small[name] = (self.scalar(at)[0], at)
            elif value_kind == "bin":
                small[name] = (b"", at)  # a long bin: only where it is matters
            at = self.read(at, node, name, depth + 1)
        if node is not None:
            node.length = at - pos
        self.judge_numpy(small, node or parent)
        return at

    def judge_numpy(self, small: dict[str, tuple[object, int]], node: Node | None) -> None:
        """msgpack-numpy: {nd: True, kind: 'O', data: <pickle>} is decoded with pickle.loads."""
        if small.get("nd", (None, 0))[0] is not True or small.get("kind", (None, 0))[0] not in (b"O", "O"):
            return
        data = small.get("data")
        if data is None or not isinstance(data[0], bytes):
            return
        _kind, n, at = self.header(data[1])
        target = node or self.root
        self.ctx.report(PickledArray, f"msgpack-numpy object array at {data[1]:,}: msgpack_numpy.decode runs "
                        f"pickle.loads on its {n:,} data bytes (scanned below)", node=target, offset=data[1])
        scan_pickle(self.source, self.ctx, target, start=at, end=at + n, label="msgpack-numpy pickle")

    def read_ext(self, pos: int, at: int, n: int, parent: Node | None, label: str) -> int:
        code = struct.unpack(">b", self.take(at, 1, "extension type"))[0]
        data = at + 1
        self.need(data, n, "extension data")
        what = FLAX_EXT.get(code)
        if what is None:
            self.unknown_ext.setdefault(code, pos)
            self.node(parent, FIELD, f"{label} = <extension {code}, {n:,} bytes>", pos, data + n - pos,
                      {"extension": code})
        elif code in (1, 3):  # Flax packs numpy scalars as 0-d arrays
            self.read_flax_array(data, n, parent, label, pos)
        else:
            self.node(parent, FIELD, f"{label} = <{what}>", pos, data + n - pos, {"extension": code})
        return data + n

    def read_flax_array(self, data: int, n: int, parent: Node | None, label: str, pos: int) -> None:
        """Flax's ndarray: msgpack (shape, dtype name, bytes) inside the extension's data."""
        end = data + n
        kind, count, at = self.header(data)
        if kind != "array" or count != 3:
            raise FormatError(f"malformed Flax array at {pos:,}: not a (shape, dtype, bytes) triple", pos)
        kind, dims, at = self.header(at)
        if kind != "array" or dims > 64:
            raise FormatError(f"malformed Flax array at {pos:,}: its shape is not a short array", pos)
        shape = []
        for _ in range(dims):
            value, at = self.scalar(at)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                shown = safe_text(str(value), 40)
                raise FormatError(f"malformed Flax array at {pos:,}: a dimension is {shown}", pos)
            shape.append(value)
        dtype, at = self.scalar(at)
        dtype_name = dtype.decode("utf-8", "replace") if isinstance(dtype, bytes) else str(dtype)
        kind, length, at = self.header(at)
        if kind != "bin" or at + length > end:
            raise FormatError(f"malformed Flax array at {pos:,}: its bytes are not a bin inside it", pos)
        numel = 1
        for d in shape:
            numel *= d
        itemsize = ITEMSIZE.get(dtype_name)
        attrs = {"dtype": safe_text(dtype_name, 40), "shape": shape, "size": length}
        node = self.node(parent, TENSOR, label, at, length, attrs)
        target = node or parent or self.root
        if dtype_name in ("object", "O"):
            self.ctx.report(Malformed, f"Flax array {safe_text(label, 80)} has dtype object: numpy cannot "
                            "rebuild it from bytes, the load fails", node=target, offset=pos)
        elif itemsize is not None and numel * itemsize != length:
            self.ctx.report(Malformed, f"Flax array {safe_text(label, 80)}: shape {shape} of {dtype_name} "
                            f"needs {numel * itemsize:,} bytes, it has {length:,}: the load fails",
                            node=target, offset=at)


class _Container:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __str__(self) -> str:
        return f"<{self.kind}>"


def sniff(head: bytes, size: int) -> int:
    """A map whose first key is a short UTF-8 string, and whose head reads as msgpack."""
    if not head or not (0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
        return 0
    at = 1 if head[0] <= 0x8F else 3 if head[0] == 0xDE else 5
    if at >= len(head) or not 0xA1 <= head[at] <= 0xBF:
        return 0
    key = head[at + 1:at + 1 + (head[at] & 0x1F)]
    if len(key) != head[at] & 0x1F:
        return 0
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return 0
    return 55 if text.isprintable() else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    reader = Reader(source, ctx, root)
    try:
        end = reader.read(0, root, "", 0)
    except FormatError as exc:
        ctx.report(Malformed, f"malformed msgpack: {exc.message}; msgpack.unpackb raises", node=root,
                   offset=exc.offset)
        end = None
    root.attrs["nodes shown"] = reader.nodes
    for code, offset in sorted(reader.unknown_ext.items()):
        ctx.report(UnknownExtension, f"msgpack extension type {code} (Flax writes 1-3): what it becomes is "
                   "the loader's ext_hook", node=root, offset=offset)
    if end is not None and end < source.size:
        ctx.report(Malformed, f"{source.size - end:,} bytes after the msgpack object: msgpack.unpackb raises "
                   "ExtraData", node=root, offset=end)
    return root
