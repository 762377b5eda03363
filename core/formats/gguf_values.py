"""GGUF values: the byte reader, gguf-py's constants, and the typed values of the key/value pairs.

A helper of the `gguf` format module, not a format (it is not in the registry). It is separate
because values are the one part of a GGUF header that is read twice: once during the scan, only
to find where each string or array ends (a 152k-token vocabulary is never built), and again, a
page at a time, when a view expands a large array long after the scan. `ValueReader` keeps what
that second read needs (the reader, the byte order, the constants, a page index per array) and
builds element nodes only when asked. Nothing here reports a finding: a file that ends early
raises `Short`, anything llama.cpp and gguf-py both refuse raises `FormatError`, and what only
some readers refuse, or what the spec forbids but readers take, is noted in `ValueReader.notes`;
the parser turns all three into findings.

Which reader is followed where they differ (ggml's `gguf_init_from_reader`, read from llama.cpp's
`ggml/src/gguf.cpp`, against gguf-py's `GGUFReader`):
- arrays of arrays: the spec allows them and gguf-py reads them, llama.cpp refuses the file ("invalid
  GGUF type 9" for the element type). Noted as refused; the walk goes on as gguf-py reads it.
- strings longer than 1 GiB and arrays of more than 2^30 elements (GGUF_MAX_STRING_LENGTH,
  GGUF_MAX_ARRAY_ELEMENTS): llama.cpp refuses, gguf-py reads. Noted as refused, walked on.
- booleans other than 0 and 1: the spec calls them invalid; both readers take any non-zero byte
  as true. Noted as a spec violation (low).
- unknown value or element types: both refuse. `FormatError`: nothing after it can be located.
"""

from __future__ import annotations

import bisect
import functools
import re
import struct
from collections.abc import Iterator
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import ARRAY, ELEMENT, METADATA, PAGE_SIZE, TEMPLATE, Node

MAX_NESTING = 8  # arrays of arrays: llama.cpp refuses any; gguf-py reads them, so walked this deep
PREVIEW_BYTES = 1024  # of a string value, for its label
MAX_STRING_LENGTH = 1024**3  # GGUF_MAX_STRING_LENGTH in gguf.cpp
MAX_ARRAY_ELEMENTS = 1024**3  # GGUF_MAX_ARRAY_ELEMENTS in gguf.cpp
MAX_UTF8_CHECK = 64 * 1024**2  # longer single strings are not decoded to check them

# Kinds of notes: what llama.cpp refuses (a high finding) and what only the spec forbids (low).
REFUSED = "refused"
SPEC = "spec"


class Consts:
    __slots__ = ("array", "bool", "quant", "scalar_fmt", "string", "uint32", "value_names")

    def __init__(self, value_names: dict[int, str], scalar_fmt: dict[int, str], string: int, array: int,
                 uint32: int, boolean: int, quant: dict[int, tuple[str, int, int]]) -> None:
        self.value_names = value_names
        self.scalar_fmt = scalar_fmt
        self.string = string
        self.array = array
        self.uint32 = uint32
        self.bool = boolean
        self.quant = quant  # type → (name, block size, bytes per block)


def gguf_constants() -> Any:
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
def consts() -> Consts:
    constants = gguf_constants()
    GGML_QUANT_SIZES, GGMLQuantizationType = constants.GGML_QUANT_SIZES, constants.GGMLQuantizationType
    v = constants.GGUFValueType
    fmt = {v.UINT8: "B", v.INT8: "b", v.UINT16: "H", v.INT16: "h", v.UINT32: "I", v.INT32: "i",
           v.FLOAT32: "f", v.BOOL: "?", v.UINT64: "Q", v.INT64: "q", v.FLOAT64: "d"}
    quant = {int(t): (t.name, *GGML_QUANT_SIZES[t]) for t in GGMLQuantizationType if t in GGML_QUANT_SIZES}
    return Consts({int(t): t.name.lower() for t in v}, {int(k): c for k, c in fmt.items()},
                  int(v.STRING), int(v.ARRAY), int(v.UINT32), int(v.BOOL), quant)


class Short(Exception):
    """The file ends before a field: becomes the one `truncated` finding."""

    def __init__(self, what: str, offset: int, need: int, have: int) -> None:
        super().__init__(what)
        self.what, self.offset, self.need, self.have = what, offset, need, have


class Reader:
    """Reads through the source a window at a time (never a memory map: a file truncated while it
    is read must be a finding, not SIGBUS). `span(pos, n)` gives bytes holding pos..pos+n and
    where pos is in them; bytes already in memory are used as they are."""

    def __init__(self, source: Source, endian: str, wide: bool) -> None:
        self.size, self.endian = source.size, endian
        self.source = source
        view = source.view()
        self._window = getattr(view, "window", None)
        self._data: Any = b"" if self._window is not None else view  # the window (or all bytes)
        self._base, self._len = 0, len(self._data)
        self.u32s = struct.Struct(endian + "I")
        self.cnt = struct.Struct(endian + ("Q" if wide else "I"))  # GGUF v1 used 32-bit counts

    def span(self, pos: int, n: int) -> tuple[Any, int]:
        i = pos - self._base
        if i >= 0 and i + n <= self._len:
            return self._data, i
        if self._window is None:  # in memory: past the end, the caller's unpack fails (Short)
            return self._data, pos
        self._data, self._base = self._window(pos, n)
        self._len = len(self._data)
        return self._data, pos - self._base

    def read(self, start: int, n: int) -> bytes:
        data, i = self.span(start, n)
        return bytes(data[i : i + n])

    def read_apart(self, start: int, n: int) -> bytes:
        """Bytes start..start+n read from the source itself, not through the shared window: what a
        search worker uses while the window serves the view's pages on another thread."""
        return bytes(self.source.read(start, n))

    def need(self, pos: int, n: int, what: str) -> None:
        if n > self.size - pos:
            raise Short(what, pos, n, max(self.size - pos, 0))

    def u32(self, pos: int, what: str) -> int:
        self.need(pos, 4, what)
        return int(self.u32s.unpack_from(*self.span(pos, 4))[0])

    def count(self, pos: int, what: str) -> tuple[int, int]:
        self.need(pos, self.cnt.size, what)
        return int(self.cnt.unpack_from(*self.span(pos, self.cnt.size))[0]), pos + self.cnt.size

    def string(self, pos: int, what: str) -> tuple[int, int, int]:
        """(start of the bytes, length, end) of a length-prefixed string."""
        length, start = self.count(pos, f"{what} length")
        self.need(start, length, f"{what} ({length:,} bytes)")
        return start, length, start + length

    def text(self, start: int, length: int, limit: int = PREVIEW_BYTES) -> str:
        n = min(length, limit)
        data, i = self.span(start, n)
        return bytes(data[i : i + n]).decode("utf-8", errors="backslashreplace")


class Array:
    __slots__ = ("count", "end", "etype", "marks", "start")

    def __init__(self, etype: int, count: int, start: int, end: int, marks: list[int] | None) -> None:
        self.etype = etype
        self.count = count
        self.start = start  # first element
        self.end = end
        self.marks = marks  # offset of every PAGE_SIZE-th element, for variable-size elements


class KV:
    __slots__ = ("end", "index", "key", "offset", "value", "vtype")

    def __init__(self, index: int, key: str, offset: int, end: int, vtype: int, value: Any) -> None:
        self.index = index
        self.key = key
        self.offset = offset
        self.end = end
        self.vtype = vtype
        self.value = value  # scalar, (start, length) of a string, or Array


class ValueReader:
    """Locates values while the header is scanned, and builds their nodes when a view asks."""

    def __init__(self, r: Reader, c: Consts, ctx: ScanContext, member: str | None) -> None:
        self.r, self.c, self.ctx, self.member = r, c, ctx, member
        self.parsing = True
        # (kind, offset, message) of what a reader refuses or the spec forbids, noted while the
        # parser walks the KV pairs (`noting`), not when previews or pages re-read the same values;
        # the parser reports them against their KV.
        self.noting = False
        self.notes: list[tuple[str, int, str]] = []

    def note(self, kind: str, offset: int, message: str) -> None:
        if self.noting:
            self.notes.append((kind, offset, message))

    def skip_value(self, vtype: int, pos: int, what: str, depth: int = 0) -> tuple[Any, int]:
        """Read a scalar, or only locate a string or array. Returns (value, end)."""
        c, r = self.c, self.r
        fmt = c.scalar_fmt.get(vtype)
        if fmt is not None:
            n = struct.calcsize(fmt)
            r.need(pos, n, what)
            data, i = r.span(pos, n)
            if vtype == c.bool and data[i] > 1:
                self.note(SPEC, pos, f"{what}: boolean byte {data[i]} (the spec allows only 0 and 1; "
                          "llama.cpp and gguf-py read it as true)")
            return struct.unpack_from(r.endian + fmt, data, i)[0], pos + n
        if vtype == c.string:
            start, length, end = r.string(pos, what)
            self._check_string(start, length, what, depth)
            return (start, length), end
        if vtype == c.array:
            if depth >= MAX_NESTING:
                raise FormatError(f"{what}: arrays nested deeper than {MAX_NESTING}", pos)
            etype = r.u32(pos, f"{what} element type")
            count, start = r.count(pos + 4, f"{what} element count")
            array = self.skip_array(etype, count, start, what, depth)
            return array, array.end
        raise FormatError(f"{what}: unknown value type {vtype}", pos)

    def _check_string(self, start: int, length: int, what: str, depth: int) -> None:
        if length > MAX_STRING_LENGTH:
            self.note(REFUSED, start - self.r.cnt.size, f"{what}: a string of {length:,} bytes (llama.cpp "
                      f"refuses strings over {MAX_STRING_LENGTH:,} bytes; gguf-py reads it)")
        elif depth == 0 and self.noting and length <= MAX_UTF8_CHECK:
            # Element strings are not decoded here: a 150k-token vocabulary would cost a decode each.
            try:
                self.r.read(start, length).decode("utf-8")
            except UnicodeDecodeError as exc:
                self.note(SPEC, start + exc.start, f"{what}: not UTF-8 at byte {exc.start:,} of the string "
                          "(the spec requires UTF-8; llama.cpp takes the bytes, gguf-py fails to decode it)")

    def skip_array(self, etype: int, count: int, start: int, what: str, depth: int) -> Array:
        c, r = self.c, self.r
        remaining = r.size - start
        header = start - 4 - r.cnt.size  # the element type, then the count
        fmt = c.scalar_fmt.get(etype)
        if fmt is not None:
            n = count * struct.calcsize(fmt)
            r.need(start, n, f"{what}: {count:,} {c.value_names[etype]} elements ({n:,} bytes)")
            self._check_count(count, header, what)
            if etype == c.bool and self.noting:
                self._check_bools(start, n, what)
            return Array(etype, count, start, start + n, None)
        if etype not in (c.string, c.array):
            raise FormatError(f"{what}: unknown element type {etype}", header)
        least = r.cnt.size if etype == c.string else 4 + r.cnt.size
        if count * least > remaining:
            raise Short(f"{what}: {count:,} {c.value_names[etype]} elements (at least "
                        f"{count * least:,} bytes)", start, count * least, remaining)
        self._check_count(count, header, what)
        if etype == c.array and depth == 0:
            self.note(REFUSED, header, f"{what}: an array of arrays (the spec allows it and gguf-py reads "
                      "it, but llama.cpp refuses the file: element type 9 is invalid there)")
        marks: list[int] = []
        pos = start
        for first in range(0, count, PAGE_SIZE):
            if self.parsing:  # page factories run later, outside the scan's time budget
                self.ctx.check()
            marks.append(pos)
            pos = self._walk(etype, pos, min(PAGE_SIZE, count - first), first, what, depth)
        return Array(etype, count, start, pos, marks)

    def _check_count(self, count: int, header: int, what: str) -> None:
        if count > MAX_ARRAY_ELEMENTS:
            self.note(REFUSED, header, f"{what}: {count:,} elements (llama.cpp refuses arrays of more than "
                      f"{MAX_ARRAY_ELEMENTS:,}; gguf-py reads them)")

    def _check_bools(self, start: int, n: int, what: str) -> None:
        invalid = 0
        end, step = start + n, 1 << 20
        for chunk in range(start, end, step):
            self.ctx.check()
            invalid += len(self.r.read(chunk, min(step, end - chunk)).translate(None, b"\0\1"))
        if invalid:
            self.note(SPEC, start, f"{what}: {invalid:,} boolean element(s) neither 0 nor 1 (the spec calls "
                      "them invalid; llama.cpp and gguf-py read them as true)")

    def _walk(self, etype: int, pos: int, n: int, first: int, what: str, depth: int) -> int:
        """Offset after n variable-size elements starting at pos (element index `first`)."""
        r = self.r
        if etype == self.c.string:
            unpack, width, end = r.cnt.unpack_from, r.cnt.size, pos
            data, i = r.span(pos, width)
            base = pos - i
            last = base + len(data) - width  # the last offset whose length field is in `data`
            try:
                for _ in range(n):  # the hot loop of a 150k-token vocabulary: keep it bare
                    if end > last:
                        data, i = r.span(end, width)
                        base, last = end - i, end - i + len(data) - width
                    end += width + unpack(data, end - base)[0]
                if end <= r.size and end - pos <= MAX_STRING_LENGTH:
                    return int(end)
            except (struct.error, OverflowError):
                pass
            # Past the end, or a page so long that one string may be over llama.cpp's limit: read
            # this page again element by element to say exactly where.
        for i in range(first, first + n):
            _, pos = self.skip_value(etype, pos, f"{what}[{i:,}]", depth + 1)
        return pos

    # Nodes

    def kv_node(self, kv: KV) -> Node:
        c, key = self.c, safe_text(kv.key, 120)
        attrs: dict[str, Any] = {"key": key, "type": c.value_names.get(kv.vtype, str(kv.vtype))}
        span = (kv.offset, kv.end - kv.offset)
        if isinstance(kv.value, Array):
            return self.array_node(key, kv.value, attrs, span)
        if kv.vtype == c.string:
            start, length = kv.value
            text = self.r.text(start, length)
            attrs.update(value=safe_text(text, 400), size=length)
            if is_template(kv.key):
                attrs["text"] = self.r.text(start, length, length)
                return self.node(TEMPLATE, f"{key} ({length:,} bytes)", span, attrs)
            return self.node(METADATA, f"{key} = {safe_text(text, 120)}", span, attrs)
        attrs["value"] = kv.value
        return self.node(METADATA, f"{key} = {scalar(kv.value)}", span, attrs)

    def node(self, kind: str, label: str, span: tuple[int, int], attrs: dict[str, Any]) -> Node:
        return Node(kind, label, offset=span[0], length=span[1], member=self.member, attrs=attrs)

    def array_node(self, label: str, arr: Array, attrs: dict[str, Any], span: tuple[int, int]) -> Node:
        ename = self.c.value_names.get(arr.etype, str(arr.etype))
        attrs.update(type="array", element_type=ename, count=arr.count, size=arr.end - arr.start)
        preview = ", ".join(n.label.split("] ", 1)[-1] for n in self.elements(arr, 0, min(arr.count, 3)))
        more = ", …" if arr.count > 3 else ""
        node = self.node(ARRAY, f"{label} = [{ename} × {arr.count:,}] [{safe_text(preview, 100)}{more}]",
                         span, attrs)
        if arr.count:
            leaves = arr.etype != self.c.array  # strings and numbers: searchable without building nodes
            finder = (lambda needle, a, b: self.find_elements(arr, needle, a, b)) if leaves else None
            node.set_lazy_children(arr.count, lambda a, b: self.elements(arr, a, b), finder)
        return node

    def string_elements(self, arr: Array) -> Iterator[str]:
        """The text of each element of an array of strings, in order (the array was walked already)."""
        r, pos = self.r, arr.start
        for _ in range(arr.count):
            length = int(r.cnt.unpack_from(*r.span(pos, r.cnt.size))[0])
            pos += r.cnt.size
            yield r.read(pos, length).decode("utf-8", errors="replace")
            pos += length

    def find_elements(self, arr: Array, needle: str, start: int, stop: int) -> list[int]:
        """Elements start..stop-1 whose kind or value contains `needle` (casefolded), without their nodes.

        Strings are searched in the file's bytes, lowercased as ASCII, wherever that is the same as
        casefolding their text: an ASCII needle, valid UTF-8, none of the few characters whose casefold
        is ASCII (ß → ss). Otherwise each string is decoded and casefolded as its node would be.
        """
        c, r = self.c, self.r
        if start >= stop or not needle:
            return list(range(start, stop))
        if needle in ELEMENT:
            return list(range(start, stop))  # the kind column says "element" on every row
        fmt = c.scalar_fmt.get(arr.etype)
        if fmt is not None:
            size = struct.calcsize(fmt)
            data = r.read_apart(arr.start + start * size, (stop - start) * size)
            values = struct.unpack_from(f"{r.endian}{stop - start}{fmt}", data)
            hits = {v for v in set(values) if needle in scalar(v).casefold()}
            return [i for i, v in enumerate(values, start) if v in hits]
        assert arr.marks is not None
        marks = arr.marks
        first_page, last_page = start // PAGE_SIZE, (stop - 1) // PAGE_SIZE
        low = marks[first_page]
        high = marks[last_page + 1] if last_page + 1 < len(marks) else arr.end
        region = r.read_apart(low, high - low)  # whole pages: strings and their length fields
        if _bytes_searchable(region, needle):
            # One pass over the bytes finds the pages worth walking; most searches walk none.
            lowered, pages = region.lower(), []
            at = lowered.find(needle.encode())
            while at >= 0:
                page = bisect.bisect_right(marks, low + at, first_page, last_page + 1) - 1
                pages.append(page)
                next_page = marks[page + 1] - low if page + 1 < len(marks) else len(region)
                at = lowered.find(needle.encode(), next_page)
        else:
            pages = list(range(first_page, last_page + 1))
        found = []
        for page in pages:
            a, b = max(start, page * PAGE_SIZE), min(stop, (page + 1) * PAGE_SIZE)
            found += self._find_in_page(arr, needle, page, a, b)
        return found

    def _find_in_page(self, arr: Array, needle: str, page: int, start: int, stop: int) -> list[int]:
        """Elements start..stop-1 (all on one page) whose text contains needle (casefolded)."""
        r = self.r
        assert arr.marks is not None
        unpack, width = r.cnt.unpack_from, r.cnt.size
        low = arr.marks[page]
        high = arr.marks[page + 1] if page + 1 < len(arr.marks) else arr.end
        page_bytes = r.read_apart(low, high - low)  # the page's strings and their length fields
        pos = low
        spans = []  # (start, end) of each string's bytes; the scan walked them: lengths are in bounds
        for i in range(page * PAGE_SIZE, stop):
            begin = pos + width
            pos = begin + unpack(page_bytes, pos - low)[0]
            if i >= start:
                spans.append((begin, pos))
        if pos > high:
            raise FormatError("an element ends past its page", spans[-1][0])
        region = page_bytes[spans[0][0] - low:spans[-1][1] - low]
        if _bytes_searchable(region, needle):
            return _find_in_bytes(region, needle.encode(), spans, start)
        texts = (page_bytes[begin - low:end - low].decode("utf-8", errors="backslashreplace")
                 for begin, end in spans)
        return [i for i, text in enumerate(texts, start) if needle in text.casefold()]

    def elements(self, arr: Array, start: int, stop: int) -> list[Node]:
        """Nodes for elements start..stop-1, read from the map when a view asks for them."""
        c, r, member = self.c, self.r, self.member
        if start >= stop:
            return []  # an empty array has no page marks to start from
        fmt = c.scalar_fmt.get(arr.etype)
        if fmt is not None:
            size = struct.calcsize(fmt)
            count = stop - start
            at = arr.start + start * size
            values = struct.unpack_from(f"{r.endian}{count}{fmt}", *r.span(at, count * size))
            return [Node(ELEMENT, f"[{i:,}] {scalar(v)}", offset=arr.start + i * size, length=size,
                         member=member, attrs={"value": v}) for i, v in enumerate(values, start)]
        assert arr.marks is not None
        pos = arr.marks[start // PAGE_SIZE]
        for _ in range(start % PAGE_SIZE):
            _, pos = self.skip_value(arr.etype, pos, "element")
        out = []
        for i in range(start, stop):
            value, end = self.skip_value(arr.etype, pos, f"element {i:,}")
            if isinstance(value, Array):
                out.append(self.array_node(f"[{i:,}]", value, {}, (pos, end - pos)))
            else:
                text = r.text(*value)
                out.append(self.node(ELEMENT, f"[{i:,}] {safe_text(text, 120)}", (pos, end - pos),
                                     {"value": safe_text(text, 400), "size": value[1]}))
            pos = end
        return out


# Non-ASCII characters whose casefold holds ASCII letters: where they occur, lowercasing bytes is not
# casefolding text.
_CASEFOLD_TO_ASCII = re.compile(b"|".join(re.escape(ch.encode()) for ch in "ßİŉſǰẖẗẘẙẚẞKﬀﬁﬂﬃﬄﬅﬆ"))


def _bytes_searchable(region: bytes, needle: str) -> bool:
    if not needle.isascii():
        return False
    if region.isascii():
        return True
    try:
        region.decode("utf-8")
    except UnicodeDecodeError:
        return False  # the nodes show \xNN for these bytes: search their text instead
    return _CASEFOLD_TO_ASCII.search(region) is None


def _find_in_bytes(region: bytes, needle: bytes, spans: list[tuple[int, int]], first: int) -> list[int]:
    """Indices of the spans (absolute offsets; region starts at the first) that contain needle."""
    lowered = region.lower()
    base = spans[0][0]
    ends = [end - base for _, end in spans]
    found: list[int] = []
    at = lowered.find(needle)
    while at >= 0:
        k = bisect.bisect_right(ends, at)  # the string this occurrence starts in (or a length field)
        if k >= len(spans):
            break
        begin, end = spans[k][0] - base, ends[k]
        if at >= begin and at + len(needle) <= end:
            found.append(first + k)
            at = lowered.find(needle, end)  # one hit per string is enough
        else:
            at = lowered.find(needle, max(at + 1, begin))
    return found


def is_template(key: str) -> bool:
    return key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template.")


def scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
