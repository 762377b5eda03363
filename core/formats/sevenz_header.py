"""The 7z archive header, read from the bytes (7-Zip's 7zFormat.txt), never through py7zr.

Returns plain records: pack streams, folders (a folder is a chain of coders whose output holds one or
more files back to back), the files and the size and CRC of each one's stream. Every count is checked
against the bytes left before anything is allocated; a record that does not fit is a `FormatError` with
the offset where it broke. Decoding the packed streams is airlock.core.formats.sevenz's job.
"""

from __future__ import annotations

import struct
import zlib

from airlock.core.errors import FormatError

SIGNATURE = b"7z\xbc\xaf\x27\x1c"
SIGNATURE_HEADER = 32

(END, HEADER, ARCHIVE_PROPERTIES, ADDITIONAL_STREAMS, MAIN_STREAMS, FILES_INFO, PACK_INFO, UNPACK_INFO,
 SUBSTREAMS_INFO, SIZE, CRC, FOLDER, CODERS_UNPACK_SIZE, NUM_UNPACK_STREAM, EMPTY_STREAM, EMPTY_FILE, ANTI,
 NAME, CTIME, ATIME, MTIME, WIN_ATTRIBUTES, COMMENT, ENCODED_HEADER, START_POS, DUMMY) = range(26)

MAX_CODERS = 32
MAX_STREAMS = 64


class Coder:
    __slots__ = ("method", "num_in", "num_out", "props")

    def __init__(self, method: bytes, num_in: int, num_out: int, props: bytes) -> None:
        self.method, self.num_in, self.num_out, self.props = method, num_in, num_out, props


class Folder:
    __slots__ = ("bind_pairs", "coders", "crc", "packed", "unpack_sizes")

    def __init__(self, coders: list[Coder], bind_pairs: list[tuple[int, int]], packed: list[int]) -> None:
        self.coders = coders
        self.bind_pairs = bind_pairs  # (in stream index, out stream index)
        self.packed = packed          # in stream indices fed from pack streams
        self.unpack_sizes: list[int] = []
        self.crc: int | None = None

    @property
    def size(self) -> int:
        """The folder's final output: the one out stream no bind pair consumes."""
        bound = {out for _, out in self.bind_pairs}
        free = [i for i in range(len(self.unpack_sizes)) if i not in bound]
        return self.unpack_sizes[free[0]] if len(free) == 1 else 0


class Streams:
    __slots__ = ("folders", "pack_pos", "pack_sizes", "substreams")

    def __init__(self) -> None:
        self.pack_pos = 0
        self.pack_sizes: list[int] = []
        self.folders: list[Folder] = []
        self.substreams: list[list[tuple[int, int | None]]] = []  # per folder: (size, crc)


class Entry:
    __slots__ = ("attributes", "has_stream", "is_anti", "is_dir", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.has_stream = True
        self.is_dir = False
        self.is_anti = False
        self.attributes: int | None = None


class Reader:
    def __init__(self, data: bytes, base: int) -> None:
        self.data, self.pos, self.base = data, 0, base

    def fail(self, what: str) -> FormatError:
        return FormatError(f"7z header: {what}", self.base + self.pos)

    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("truncated")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.left():
            raise self.fail(f"a field of {n:,} bytes runs past the end of the header")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def number(self) -> int:
        first, mask, value = self.byte(), 0x80, 0
        for i in range(8):
            if not first & mask:
                return value | ((first & (mask - 1)) << (8 * i))
            value |= self.byte() << (8 * i)
            mask >>= 1
        return value

    def count(self, what: str, each: int = 1, cap: int | None = None) -> int:
        n = self.number()
        if n * each > self.left() or (cap is not None and n > cap):
            raise self.fail(f"{n:,} {what} cannot fit in the {self.left():,} bytes left")
        return n

    def uint32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def bits(self, n: int) -> list[bool]:
        raw = self.take((n + 7) // 8)
        return [bool(raw[i // 8] & (0x80 >> (i % 8))) for i in range(n)]

    def defined(self, n: int) -> list[bool]:
        return [True] * n if self.byte() else self.bits(n)

    def digests(self, n: int) -> list[int | None]:
        return [self.uint32() if d else None for d in self.defined(n)]


def signature(head: bytes) -> tuple[int, int, int]:
    """(next header offset from the start of the file, its size, its CRC)."""
    if head[:6] != SIGNATURE or len(head) < SIGNATURE_HEADER:
        raise FormatError("not a 7z archive (no signature)", 0)
    if zlib.crc32(head[12:32]) != struct.unpack_from("<I", head, 8)[0]:
        raise FormatError("7z start header CRC mismatch (7-Zip refuses the archive)", 8)
    offset, size, crc = struct.unpack_from("<QQI", head, 12)
    return SIGNATURE_HEADER + offset, size, crc


def read_streams(r: Reader) -> Streams:
    streams = Streams()
    while (prop := r.byte()) != END:
        if prop == PACK_INFO:
            streams.pack_pos = r.number()
            n = r.count("pack streams")
            while (sub := r.byte()) != END:
                if sub == SIZE:
                    streams.pack_sizes = [r.number() for _ in range(n)]
                elif sub == CRC:
                    r.digests(n)
                else:
                    raise r.fail(f"unexpected property {sub} in pack info")
        elif prop == UNPACK_INFO:
            _unpack_info(r, streams)
        elif prop == SUBSTREAMS_INFO:
            _substreams(r, streams)
        else:
            raise r.fail(f"unexpected property {prop} in streams info")
    if not streams.substreams:
        streams.substreams = [[(f.size, f.crc)] for f in streams.folders]
    return streams


def _unpack_info(r: Reader, streams: Streams) -> None:
    if r.byte() != FOLDER:
        raise r.fail("folder list expected")
    n = r.count("folders", each=2)
    if r.byte():
        raise r.fail("folders stored outside the header are not supported")
    streams.folders = [_folder(r) for _ in range(n)]
    if r.byte() != CODERS_UNPACK_SIZE:
        raise r.fail("coder unpack sizes expected")
    for folder in streams.folders:
        folder.unpack_sizes = [r.number() for c in folder.coders for _ in range(c.num_out)]
    while (prop := r.byte()) != END:
        if prop != CRC:
            raise r.fail(f"unexpected property {prop} in unpack info")
        for folder, crc in zip(streams.folders, r.digests(n), strict=True):
            folder.crc = crc


def _folder(r: Reader) -> Folder:
    coders = []
    for _ in range(r.count("coders", cap=MAX_CODERS)):
        flags = r.byte()
        if flags & 0x80:
            raise r.fail("alternative coder methods are not supported")
        method = r.take(flags & 0x0F)
        num_in = num_out = 1
        if flags & 0x10:
            num_in = r.count("coder in-streams", cap=MAX_STREAMS)
            num_out = r.count("coder out-streams", cap=MAX_STREAMS)
        props = r.take(r.count("property bytes")) if flags & 0x20 else b""
        coders.append(Coder(method, num_in, num_out, props))
    total_in = sum(c.num_in for c in coders)
    total_out = sum(c.num_out for c in coders)
    if not coders or total_out < 1 or total_in < total_out - 1:
        raise r.fail("a folder without a usable coder chain")
    pairs = [(r.number(), r.number()) for _ in range(total_out - 1)]
    n_packed = total_in - len(pairs)
    if n_packed == 1:
        bound = {i for i, _ in pairs}
        packed = [i for i in range(total_in) if i not in bound][:1]
    else:
        packed = [r.number() for _ in range(n_packed)]
    return Folder(coders, pairs, packed)


def _substreams(r: Reader, streams: Streams) -> None:
    counts = [1] * len(streams.folders)
    prop = r.byte()
    if prop == NUM_UNPACK_STREAM:
        counts = [r.count("files in a folder") for _ in streams.folders]
        prop = r.byte()
    sizes: list[list[int]] = []
    for folder, n in zip(streams.folders, counts, strict=True):
        if n == 0:
            sizes.append([])
            continue
        head = [r.number() for _ in range(n - 1)] if prop == SIZE else []
        last = folder.size - sum(head)
        if last < 0:
            raise r.fail("file sizes add up to more than their folder holds")
        sizes.append([*head, last])
    if prop == SIZE:
        prop = r.byte()
    unknown = sum(n for f, n in zip(streams.folders, counts, strict=True)
                  if not (n == 1 and f.crc is not None))
    crcs: list[int | None] = [None] * unknown
    while prop != END:
        if prop == CRC:
            crcs = r.digests(unknown)
        else:
            raise r.fail(f"unexpected property {prop} in substreams info")
        prop = r.byte()
    it = iter(crcs)
    for folder, n, folder_sizes in zip(streams.folders, counts, sizes, strict=True):
        known = n == 1 and folder.crc is not None
        streams.substreams.append([(s, folder.crc if known else next(it, None)) for s in folder_sizes])


def read_files(r: Reader) -> list[Entry]:
    n = r.count("files")
    entries = [Entry("") for _ in range(n)]
    empty_stream: list[bool] = [False] * n
    empty_file: list[bool] = []
    while (prop := r.byte()) != END:
        size = r.count("property bytes")
        end = r.pos + size
        if prop == EMPTY_STREAM:
            empty_stream = r.bits(n)
        elif prop == EMPTY_FILE:
            empty_file = r.bits(sum(empty_stream))
        elif prop == ANTI:
            anti = r.bits(sum(empty_stream))
            for entry, flag in zip([e for e, s in zip(entries, empty_stream, strict=True) if s], anti,
                                   strict=False):
                entry.is_anti = flag
        elif prop == NAME:
            if r.byte():
                raise r.fail("file names stored outside the header are not supported")
            names = r.take(end - r.pos).decode("utf-16-le", "surrogatepass").split("\0")
            for entry, name in zip(entries, names, strict=False):
                entry.name = name
        elif prop == WIN_ATTRIBUTES:
            defined = r.defined(n)
            if r.byte():
                raise r.fail("attributes stored outside the header are not supported")
            for entry, has in zip(entries, defined, strict=True):
                if has:
                    entry.attributes = r.uint32()
        r.pos = end  # times, start positions, padding: skipped by their declared size
        if r.pos > len(r.data):
            raise r.fail("a file property runs past the end of the header")
    empties = iter(empty_file)
    for entry, empty in zip(entries, empty_stream, strict=True):
        if empty:
            entry.has_stream = False
            entry.is_dir = not next(empties, False)
        if entry.attributes is not None and entry.attributes & 0x10:
            entry.is_dir = True
    return entries
