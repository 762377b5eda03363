"""7z archives: every member decoded through the archive's own coders, streamed and bounded, and scanned.

A torch checkpoint compressed as 7z instead of zip still holds a pickle that runs once extracted. The
header is read by airlock.core.formats.sevenz_header; members are decoded here with the standard
library — `lzma.LZMADecompressor(FORMAT_RAW, filters=...)` for LZMA, LZMA2 and their BCJ/Delta
pre-filters, `bz2`, raw `zlib` (Deflate), or copied — always with `max_length`, every byte produced
charged to the file's decompression budget. (py7zr is not used: 1.1.4 hands its writer chunks of up to
128 MB, measured at 422 MB resident for a 156 KB archive of 1 GiB of zeros.) The LZMA dictionary is
capped at what the folder can produce, so a header cannot make the decoder allocate gigabytes.

Members are read one at a time through airlock.core.decompress (up to 64 MiB kept, past that the head and
tail, the rest decoded again from the folder's start when a parser reads there), checked against their CRC
(7-Zip refuses a mismatch), and scanned like files; in a torch "folder" (`archive/data.pkl` +
`archive/data/N`) storages are tensor bytes, not content. A coder Airlock does not decode (AES
encryption, PPMd, BCJ2, Zstandard...) leaves its members "not inspected": medium, never clean.
"""

from __future__ import annotations

import posixpath
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.decompress import ChargedBelow, decompress, skip_then
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats import sevenz_header as h
from airlock.core.formats.contract import file_node
from airlock.core.formats.tar import EscapingMember, escapes, is_torch_storage, normalise
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import MEMBER, Node

NAME = "7z"
EXTENSIONS = (".7z",)

MAX_MEMBER_NODES = 10_000
MAX_HEADER_NESTING = 4  # an encoded header whose content is another encoded header...
_CHUNK = 1 << 20

# lzma is imported when a 7z file is read, not at start-up: every scan would pay for it.
_LZMA_FILTERS = {  # method id -> the lzma module's filter constant
    b"\x03\x03\x01\x03": "FILTER_X86", b"\x03\x03\x02\x05": "FILTER_POWERPC",
    b"\x03\x03\x04\x01": "FILTER_IA64", b"\x03\x03\x05\x01": "FILTER_ARM",
    b"\x03\x03\x07\x01": "FILTER_ARMTHUMB", b"\x03\x03\x08\x05": "FILTER_SPARC",
}
_METHOD_NAMES = {
    b"\x00": "Copy", b"\x03": "Delta", b"\x21": "LZMA2", b"\x03\x01\x01": "LZMA", b"\x04\x01\x08": "Deflate",
    b"\x04\x01\x09": "Deflate64", b"\x04\x02\x02": "BZip2", b"\x03\x04\x01": "PPMd",
    b"\x03\x03\x01\x1b": "BCJ2", b"\x06\xf1\x07\x01": "AES-256 encryption", b"\x04\xf7\x11\x01": "Zstandard",
    b"\x04\xf7\x11\x02": "Brotli", b"\x04\xf7\x11\x04": "LZ4", b"\x0a": "ARM64", b"\x0b": "RISC-V",
    **{k: "BCJ" for k in _LZMA_FILTERS},
}


class UnsupportedCoder(Rule):
    id = "SZ001"
    severity = Severity.MEDIUM
    title = "7z coder not supported: members not inspected"
    help = "The archive's members are packed with a coder Airlock does not decode (encryption, PPMd, BCJ2, "\
        "Zstandard...); they were not inspected and are not known to be safe."
    incomplete = True


class Unsupported(Exception):
    """A folder's coder chain Airlock cannot decode."""


def sniff(head: bytes, size: int) -> int:
    return 95 if head[:6] == h.SIGNATURE else 0


def method_name(method: bytes) -> str:
    return _METHOD_NAMES.get(method, f"method {method.hex() or 'none'}")


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    streams, entries = read_archive(source, ctx)
    root.attrs["members"] = len(entries)
    root.attrs["folders"] = len(streams.folders) if streams else 0
    _Members(source, ctx, root, streams, entries).scan()
    return root


def read_archive(source: Source, ctx: ScanContext) -> tuple[h.Streams | None, list[h.Entry]]:
    offset, size, crc = h.signature(source.read(0, h.SIGNATURE_HEADER))
    if size == 0:
        return None, []  # an empty archive
    if offset + size > source.size:
        raise FormatError(f"truncated 7z: the header ({size:,} bytes at {offset:,}) runs past the end of the "
                          f"{source.size:,}-byte file", 12)
    if size > ctx.limits.max_header_bytes:
        raise LimitExceeded(f"7z header of {size:,} bytes is over the {ctx.limits.max_header_bytes:,}-byte "
                            "budget", offset)
    data = source.read(offset, size)
    if zlib.crc32(data) != crc:
        raise FormatError("7z header CRC mismatch (7-Zip refuses the archive)", offset)
    r = h.Reader(data, offset)
    prop = r.byte()
    for _ in range(MAX_HEADER_NESTING):
        if prop != h.ENCODED_HEADER:
            break
        packed = h.read_streams(r)
        if not packed.folders:
            raise r.fail("an encoded header without a folder")
        try:
            decoder = FolderDecoder(source, packed, 0, ctx)
        except Unsupported as exc:
            raise FormatError(f"7z header packed with {exc}: the file list cannot be read", offset) from None
        folder_size = packed.folders[0].size
        if folder_size > ctx.limits.max_header_bytes:
            raise LimitExceeded(f"7z header unpacks to {folder_size:,} bytes, over the budget", offset)
        data = decoder.read(folder_size)
        if len(data) < folder_size:
            raise FormatError("truncated 7z: the packed header ends early", decoder.pos)
        r = h.Reader(data, offset)  # offsets in an unpacked header are not file offsets: point at it
        prop = r.byte()
    if prop != h.HEADER:
        raise r.fail(f"header property {prop} where the header should start")
    streams: h.Streams | None = None
    entries: list[h.Entry] = []
    while (prop := r.byte()) != h.END:
        if prop == h.ARCHIVE_PROPERTIES:
            while r.byte():
                r.take(r.count("property bytes"))
        elif prop == h.ADDITIONAL_STREAMS:
            h.read_streams(r)
        elif prop == h.MAIN_STREAMS:
            streams = h.read_streams(r)
        elif prop == h.FILES_INFO:
            entries = h.read_files(r)
        else:
            raise r.fail(f"unexpected header property {prop}")
    return streams, entries


def _chain(folder: h.Folder) -> tuple[str, list[dict[str, Any]]]:
    """How to decode a folder: ("lzma", raw filters) / ("bz2"|"deflate"|"copy", []). Only chains of
    one-in/one-out coders, each fed by the next, from the one packed stream to the unbound output
    (7-Zip lists the last decoding step first, py7zr the first: the bind pairs say which)."""
    coders = folder.coders
    names = " + ".join(method_name(c.method) for c in coders)
    if not all(c.num_in == c.num_out == 1 for c in coders) or len(folder.packed) != 1:
        raise Unsupported(f"coders {names} (a chain with several streams)")
    feeds = {out: inp for inp, out in folder.bind_pairs}  # coder i's output is coder feeds[i]'s input
    order = [folder.packed[0]]
    while order[-1] in feeds and len(order) <= len(coders):
        order.append(feeds[order[-1]])
    if sorted(order) != list(range(len(coders))):
        raise Unsupported(f"coders {names} (bound in an unexpected way)")
    steps = [coders[i] for i in order]  # in decoding order
    if len(steps) == 1:
        simple = {b"\x00": "copy", b"\x04\x02\x02": "bz2", b"\x04\x01\x08": "deflate"}.get(steps[0].method)
        if simple is not None:
            return simple, []
    import lzma

    # lzma's raw filter chain is given in encoding order: the compressor last.
    filters = [_lzma_filter(c, folder.size, names) for c in reversed(steps)]
    if filters[-1]["id"] not in (lzma.FILTER_LZMA1, lzma.FILTER_LZMA2) or any(
            f["id"] in (lzma.FILTER_LZMA1, lzma.FILTER_LZMA2) for f in filters[:-1]):
        raise Unsupported(f"coders {names}")
    return "lzma", filters


def _lzma_filter(coder: h.Coder, size: int, names: str) -> dict[str, Any]:
    import lzma

    method, props = coder.method, coder.props
    # A dictionary larger than the data it decodes is never used: cap it, whatever the header declares.
    cap = max(size, 4096)
    if method == b"\x03\x01\x01" and len(props) == 5 and props[0] < 9 * 5 * 5:
        lc, rest = props[0] % 9, props[0] // 9
        dict_size = min(int.from_bytes(props[1:5], "little"), cap)
        return {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": rest % 5, "pb": rest // 5,
                "dict_size": max(dict_size, 4096)}
    if method == b"\x21" and len(props) == 1 and props[0] <= 40:
        d = props[0]
        dict_size = 0xFFFFFFFF if d == 40 else (2 | (d & 1)) << (d // 2 + 11)
        return {"id": lzma.FILTER_LZMA2, "dict_size": max(min(dict_size, cap), 4096)}
    if method == b"\x03" and len(props) == 1:
        return {"id": lzma.FILTER_DELTA, "dist": props[0] + 1}
    if method in _LZMA_FILTERS and not props:
        return {"id": getattr(lzma, _LZMA_FILTERS[method])}
    raise Unsupported(f"coder {method_name(method)} (in {names})")


class FolderDecoder:
    """The output of one folder, produced in bounded steps and charged to the decompression budget."""

    def __init__(self, source: Source, streams: h.Streams, index: int, ctx: ScanContext, *,
                 charge: bool = True) -> None:
        folder = streams.folders[index]
        self.kind, filters = _chain(folder)
        first = sum(len(f.packed) for f in streams.folders[:index])
        if first >= len(streams.pack_sizes):
            raise FormatError("7z folder without a pack stream", None)
        self.pos = h.SIGNATURE_HEADER + streams.pack_pos + sum(streams.pack_sizes[:first])
        self.end = self.pos + streams.pack_sizes[first]
        if self.end > source.size:
            raise FormatError(f"truncated 7z: packed data ends at {self.end:,}, past the end of the file",
                              source.size)
        self.source, self.ctx, self.charge = source, ctx, charge  # charge=False: a read again, already paid
        self.dec: Any = None
        import lzma

        if self.kind == "lzma":
            self.dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=filters)
        elif self.kind == "bz2":
            import bz2

            self.dec = bz2.BZ2Decompressor()
        elif self.kind == "deflate":
            self.dec = zlib.decompressobj(-zlib.MAX_WBITS)

    def read(self, n: int) -> bytes:
        """Up to n bytes (fewer only when the packed data ends)."""
        chunks, got = [], 0
        while got < n:
            self.ctx.check()
            try:
                piece = self._step(min(n - got, _CHUNK))
            except (_lzma_error(), zlib.error, OSError, EOFError, ValueError) as exc:
                raise FormatError(f"corrupt 7z data ({type(exc).__name__}: {exc})", self.pos) from None
            if not piece:
                break
            if self.charge:
                self.ctx.charge_decompressed(len(piece), "7z data")
            chunks.append(piece)
            got += len(piece)
        return b"".join(chunks)

    def _feed(self) -> bytes:
        data = self.source.read(self.pos, min(_CHUNK, self.end - self.pos))
        self.pos += len(data)
        return data

    def chunks(self, size: int) -> Iterator[bytes]:
        """The next `size` bytes in bounded pieces; fewer if the folder ends first."""
        got = 0
        while got < size:
            piece = self.read(min(_CHUNK, size - got))
            if not piece:
                return
            got += len(piece)
            yield piece

    def _step(self, n: int) -> bytes:
        dec = self.dec
        if dec is None:  # copy
            data = self.source.read(self.pos, min(n, self.end - self.pos))
            self.pos += len(data)
            return data
        if self.kind == "deflate":
            data = dec.unconsumed_tail or self._feed()
            return bytes(dec.decompress(data, n)) if data else b""
        if getattr(dec, "eof", False):
            return b""
        data = self._feed() if dec.needs_input else b""
        if dec.needs_input and not data:
            return b""
        return bytes(dec.decompress(data, max_length=n))


def _lzma_error() -> type[Exception]:
    import lzma

    return lzma.LZMAError


class _Members:
    def __init__(self, source: Source, ctx: ScanContext, root: Node, streams: h.Streams | None,
                 entries: list[h.Entry]) -> None:
        self.source, self.ctx, self.root, self.streams, self.entries = source, ctx, root, streams, entries
        names = [e.name for e in entries]
        # torch checkpoints saved as a folder: `<prefix>/data.pkl`, storages in `<prefix>/data/`.
        self.torch_prefixes = {normalise(n)[: -len("data.pkl")] for n in names if n.endswith("/data.pkl")}
        self.code: list[tuple[str, Node]] = []  # *.py members: code shipped inside the archive

    def scan(self) -> None:
        with_streams = [e for e in self.entries if e.has_stream and not e.is_anti]
        for entry in self.entries[:MAX_MEMBER_NODES]:
            if not entry.has_stream:
                self._node(entry, 0)
        if self.streams is None:
            if with_streams:
                raise FormatError("7z archive lists files with data but has no streams", None)
            return
        queue = iter(with_streams)
        for index, sizes in enumerate(self.streams.substreams):
            members = [(entry, size, crc) for (size, crc), entry in zip(sizes, queue, strict=False)]
            self._folder(index, members)
        from airlock.core.formats.model_folder_context import check_archive_code

        check_archive_code(self.ctx, self.code, [normalise(e.name) for e in self.entries])

    def _node(self, entry: h.Entry, size: int) -> Node:
        node = self.root.child(MEMBER, safe_text(entry.name, 200), member=self.source.member,
                               attrs={"size": size, "type": "directory" if entry.is_dir else "file"})
        if escapes(entry.name):
            self.ctx.report(EscapingMember, f"member {safe_text(entry.name, 160)!r} is written outside the "
                            "extraction folder", node=node)
        return node

    def _folder(self, index: int, members: list[tuple[h.Entry, int, int | None]]) -> None:
        assert self.streams is not None
        nodes = [self._node(entry, size) for entry, size, _ in members[: MAX_MEMBER_NODES]]
        try:
            decoder = FolderDecoder(self.source, self.streams, index, self.ctx)
        except Unsupported as exc:
            self.ctx.report(UnsupportedCoder, f"{len(members):,} member(s) packed with {exc}: not inspected "
                            f"({', '.join(safe_text(e.name, 60) for e, _, _ in members[:3])}"
                            f"{'...' if len(members) > 3 else ''})", node=nodes[0] if nodes else self.root)
            return
        start = 0  # the member's offset in its folder's output
        for (entry, size, crc), node in zip(members, nodes, strict=False):
            name = safe_text(entry.name, 160)
            left = self.ctx.limits.max_decompressed_bytes - self.ctx.decompressed_bytes
            if size > left:
                rest = len(members) - nodes.index(node)
                self.ctx.report(LimitRule, f"member {name!r} unpacks to {size:,} "
                                f"bytes, more than the {max(left, 0):,} bytes left of the per-file budget: "
                                f"it and the {rest - 1:,} member(s) after it in its folder were not "
                                "inspected further", node=node)
                return
            member = f"{self.source.member}!{entry.name}" if self.source.member else entry.name
            out = decompress(self._opener(decoder, index, start, size), ChargedBelow(self.ctx), name=member,
                             member=member, path=self.source.path, what=f"7z member {name}", declared=size,
                             crc=crc is not None)
            start += size
            try:
                if out.total < size:
                    self.ctx.report(Malformed, f"truncated 7z: member {name!r} declares {size:,} bytes but "
                                    f"its folder ends after {out.total:,}", node=node)
                elif out.error is not None:
                    self.ctx.report(LimitRule if isinstance(out.error, LimitExceeded) else Malformed,
                                    f"7z member {name!r}: {safe_text(out.error.message, 200)}", node=node)
                elif crc is not None and out.crc != crc:
                    self.ctx.report(Malformed, f"member {name!r}: CRC mismatch (7-Zip and py7zr refuse to "
                                    "extract it); scanned anyway", node=node)
                self._member(entry, out.source, node)
            finally:
                out.done()
            if out.error is not None:
                return  # the folder's decoder broke or the budget is spent: nothing after it can be read

    def _opener(self, decoder: FolderDecoder, index: int, start: int,
                size: int) -> Callable[[], Iterable[bytes]]:
        """A member's bytes: the first time from the folder's decoder, which goes on to the next member;
        again (a member over 64 MiB that a parser reads past its head) from a fresh decoder of the folder,
        skipping what comes before it, not charged twice."""
        first = [decoder]
        source, streams, ctx = self.source, self.streams, self.ctx
        assert streams is not None

        def opener() -> Iterable[bytes]:
            if first:
                return first.pop().chunks(size)
            again = FolderDecoder(source, streams, index, ctx, charge=False)
            return skip_then(again.chunks(start + size), start, size)

        return opener

    def _member(self, entry: h.Entry, data: Source, node: Node) -> None:
        attrs = entry.attributes or 0
        if attrs & 0x8000 and stat.S_ISLNK(attrs >> 16):  # a POSIX symlink: its data is the target
            target = data.read(0, 4096).decode("utf-8", "replace")
            node.attrs["type"] = f"symbolic link to {safe_text(target, 120)}"
            if escapes(posixpath.join(posixpath.dirname(normalise(entry.name)), target)):
                self.ctx.report(EscapingMember, f"symbolic link {safe_text(entry.name, 160)!r} points "
                                f"outside the archive, to {safe_text(target, 160)!r}", node=node)
            return
        if is_torch_storage(normalise(entry.name), self.torch_prefixes, data.read(0, 4096)):
            node.attrs["storage"] = True  # tensor bytes of a torch checkpoint: data, not content
            return
        label = safe_text(posixpath.basename(entry.name) or entry.name, 120)
        self.ctx.parse_nested(data, node, label=label)
        if entry.name.endswith(".py"):
            self.code.append((normalise(entry.name), node))
