"""GGUF (llama.cpp): a header of typed key/value pairs and tensor infos, then aligned tensor data.

Our own reader over the map, because gguf-py's `GGUFReader` builds every array eagerly (7.6 s
and 523 MB for a 152k-token vocabulary) and raises on a truncated file. gguf-py is used only
for its constants (value types, quantization types and their block sizes). Every count, length
and dimension product is checked against the bytes that remain before anything is read, with
Python ints (no wrap-around). Large arrays keep only a page index (one offset per 256 elements)
and build element nodes when expanded. The checks mirror what ggml's `gguf_init_from_file`
refuses, so a file llama.cpp would reject, or read differently from another tool, is a finding.

The value reader (byte reader, gguf-py's constants, typed values and their lazy pages) is in
`gguf_values`; the tensor infos, their checks and the tensor data are in `gguf_tensors`; the rules
both stages report are in `gguf_rules`.
"""

from __future__ import annotations

import re
import struct

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError
from airlock.core.findings import LimitExceeded
from airlock.core.formats.contract import file_node
from airlock.core.formats.gguf_rules import DuplicateKey, MalformedHeader, SpecViolation, Truncated
from airlock.core.formats.gguf_tensors import check_tensors, read_infos
from airlock.core.formats.gguf_values import (
    KV,
    REFUSED,
    SPEC,
    Array,
    Reader,
    Short,
    ValueReader,
    consts,
    is_template,
)
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import FIELD, GROUP, HEADER, PAGE_SIZE, TEMPLATE, Node

NAME = "gguf"
EXTENSIONS = (".gguf",)

DEFAULT_ALIGNMENT = 32
MAX_KEY_BYTES = 65535  # the spec's limit on a key; llama.cpp takes keys up to 1 GiB
MAX_TEMPLATE_CHARS = 4 * 1024**2  # of a template rebuilt from an array (real templates: KiBs)
MAX_SPEC_FINDINGS = 20  # low spec-violation findings per file; the rest are counted in one more
_KEY = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")
# Real files have tens of KV pairs; a hostile count with a file full of tiny records would
# otherwise cost a record per entry (memory, not just time). Tensor infos: gguf_tensors.MAX_TENSORS.
MAX_KV_PAIRS = 100_000


def sniff(head: bytes, size: int) -> int:
    if head[:4] != b"GGUF":
        return 0
    if len(head) >= 8:
        le, be = struct.unpack_from("<I", head, 4)[0], struct.unpack_from(">I", head, 4)[0]
        if 1 <= le <= 3 or 1 <= be <= 3:
            return 100
    return 80  # an unknown version is still ours to report


class Parser:
    """One file's header, top to bottom; `gguf_tensors` reads the tensor infos and data for it."""

    def __init__(self, source: Source, ctx: ScanContext, root: Node) -> None:
        self.source, self.ctx, self.root, self.c = source, ctx, root, consts()
        self.member = source.member
        le = struct.unpack_from("<I", source.head(8), 4)[0]
        # gguf-py's test: a big-endian file's version reads as N << 16 in little-endian.
        endian = ">" if le & 0xFFFF == 0 and le else "<"
        self.version = struct.unpack_from(endian + "I", source.head(8), 4)[0]
        self.r = Reader(source, endian, self.version >= 2)
        self.endian = endian
        self.values = ValueReader(self.r, self.c, ctx, self.member)
        self.kvs: list[KV] = []
        self.kv_notes: list[list[tuple[str, int, str]]] = []  # per KV, from the value reader
        self.kv_nodes: list[Node] = []

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
        except Short as short:
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
        infos, end = read_infos(self, kvs_end)
        header.length = end
        check_tensors(self, infos, end, alignment, complete=len(infos) == self.n_tensors)

    def truncated(self, short: Short, missing: str) -> None:
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
        self.values.noting = True
        try:
            for i in range(min(n, MAX_KV_PAIRS)):
                self.ctx.tick(64)
                start = pos
                koff, klen, pos = r.string(pos, f"KV #{i + 1} key")
                key = r.text(koff, klen, 512)
                what = f"KV #{i + 1} {safe_text(key, 80)!r}"
                self.check_key(koff, klen, key, what, start)
                vtype = r.u32(pos, f"{what} value type")
                value, pos = self.values.skip_value(vtype, pos + 4, what)
                self.kvs.append(KV(i, key, start, pos, vtype, value))
                self.kv_notes.append(self.values.notes)
                self.values.notes = []
            if n <= MAX_KV_PAIRS:
                end = pos
            else:
                self.over_limit(n, MAX_KV_PAIRS, "KV pairs", pos)  # end stays None: stop here
        except Short as short:
            i = len(self.kvs)
            self.truncated(short, f"KV pairs {i + 1:,} to {n:,} of {n:,}, the {self.n_tensors:,} tensor "
                           "info(s) and the tensor data")
        except FormatError as exc:
            self.ctx.report(MalformedHeader, f"malformed: {exc.message}; {n - len(self.kvs):,} KV pairs, "
                            "the tensor infos and the tensor data were not read", node=self.root,
                            offset=exc.offset)
        finally:
            self.values.noting = False
        self.add_kv_nodes(group)
        return end

    def check_key(self, koff: int, klen: int, key: str, what: str, start: int) -> None:
        """The spec's rules for a key: llama.cpp refuses an empty one and reads any other."""
        if klen == 0:
            self.values.note(REFUSED, start, f"{what}: an empty key (llama.cpp refuses the file)")
            return
        raw = self.r.read(koff, min(klen, MAX_KEY_BYTES + 1))
        if klen > MAX_KEY_BYTES or not raw.isascii() or not _KEY.fullmatch(raw.decode("ascii")):
            why = (f"{klen:,} bytes long, over the spec's {MAX_KEY_BYTES:,}" if klen > MAX_KEY_BYTES
                   else "not lower_snake_case ASCII segments joined by dots")
            self.values.note(SPEC, koff, f"{what}: the key is {why} (the spec calls it invalid; llama.cpp "
                             "reads it)")

    def add_kv_nodes(self, group: Node) -> None:
        from airlock.core.hidden_text import report_hidden
        from airlock.core.templates import analyze_template  # jinja2 only when a template is present

        kvs = self.kvs
        if len(kvs) <= PAGE_SIZE:
            self.kv_nodes = [group.add(self.values.kv_node(kv)) for kv in kvs]
        else:
            group.set_lazy_children(len(kvs), lambda a, b: [self.values.kv_node(kv) for kv in kvs[a:b]])
            self.kv_nodes = [group] * len(kvs)
        self.report_notes(group)
        seen: set[str] = set()
        for kv, node in zip(kvs, self.kv_nodes, strict=True):
            if kv.key in seen:
                self.ctx.report(DuplicateKey, f"duplicate key {safe_text(kv.key, 80)!r} (KV "
                                f"#{kv.index + 1}): readers disagree on which value counts", node=node,
                                offset=kv.offset)
            seen.add(kv.key)
            if not is_template(kv.key):
                if kv.vtype == self.c.string:  # invisible or look-alike text in metadata
                    start, length = kv.value
                    value = self.r.text(start, length, 1 << 20)
                    report_hidden(value, self.ctx, node, what=f"GGUF {kv.key!r}")
                continue
            text = self.template_text(kv, node)
            if text is None:
                continue
            if node is group:  # too many keys to show each: give the template a node of its own
                node = self.root.child(TEMPLATE, safe_text(kv.key, 120), offset=kv.offset,
                                       length=kv.end - kv.offset, member=self.member)
            analyze_template(text, self.ctx, node)

    def template_text(self, kv: KV, node: Node) -> str | None:
        """The text llama.cpp renders for a chat template key. The spec makes it a string; llama.cpp
        reads any type and turns it into text (gguf_kv_to_str: an array of strings becomes
        `["a", "b"]` with quotes and backslashes escaped) before its Jinja engine sees it, so a
        template split across array elements still runs."""
        if kv.vtype == self.c.string:
            start, length = kv.value
            return self.r.text(start, length, length)
        kind = self.c.value_names.get(kv.vtype, str(kv.vtype))
        value = kv.value
        strings = isinstance(value, Array) and value.etype == self.c.string
        if isinstance(value, Array):
            kind = f"array of {self.c.value_names.get(value.etype, str(value.etype))}"
        joined = " (the elements, quoted and joined)" if strings else ""
        self.ctx.report(MalformedHeader, f"{safe_text(kv.key, 80)} is a {kind}, not the string the spec "
                        f"requires: gguf-py returns it as is, llama.cpp renders it as text{joined}",
                        node=node, offset=kv.offset)
        if not strings or not isinstance(value, Array):
            return None
        parts, total = [], 0
        for text in self.values.string_elements(value):
            self.ctx.tick(256)
            total += len(text) + 4
            if total > MAX_TEMPLATE_CHARS:
                self.ctx.report(LimitExceeded, f"{safe_text(kv.key, 80)}: the array's text runs past "
                                f"{MAX_TEMPLATE_CHARS:,} characters; the template was not analysed",
                                node=node, offset=kv.offset)
                return None
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        return "[" + ", ".join(parts) + "]"

    def report_notes(self, group: Node) -> None:
        """What llama.cpp refuses (high) and what only the spec forbids (low, the first few)."""
        spec_seen = 0
        pending = [*self.kv_notes, self.values.notes]  # the last: a KV that broke off mid-way
        for index, notes in enumerate(pending):
            node = self.kv_nodes[index] if index < len(self.kv_nodes) else group
            for kind, offset, message in notes:
                if kind == REFUSED:
                    self.ctx.report(MalformedHeader, f"malformed: {message}", node=node, offset=offset)
                    continue
                spec_seen += 1
                if spec_seen <= MAX_SPEC_FINDINGS:
                    self.ctx.report(SpecViolation, message, node=node, offset=offset)
        if spec_seen > MAX_SPEC_FINDINGS:
            self.ctx.report(SpecViolation, f"{spec_seen - MAX_SPEC_FINDINGS:,} more values break the GGUF "
                            "specification the same ways", node=group)

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


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    if source.size < 8:
        raise FormatError(f"truncated: {source.size} bytes, shorter than the 8-byte magic and version", 0)
    parser = Parser(source, ctx, root)
    try:
        parser.run()
    finally:
        parser.values.parsing = False  # array pages built later run outside the scan's budget
    return root
