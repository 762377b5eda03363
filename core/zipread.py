"""A zip reader that reads archives the way torch's PyTorchStreamReader (miniz) does.

Central directory first, then each member's LOCAL header for where its data starts (miniz adds
the local name and extra lengths; the central ones can differ). Nothing is extracted to disk and
nothing is decompressed unless a caller asks for one member, under the file's decompression
budget. Everything that makes two readers disagree is collected as an `Issue` for the format
module to report: local-vs-central names, encryption/patch flag bits, unknown compression,
duplicate or escaping names, overlapping members.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Callable
from typing import Any

from airlock.core.decompress import IN_MEMORY_BYTES, Decompressed, Inflater, decompress
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.source import MemorySource, Source

EOCD = b"PK\x05\x06"
EOCD64 = b"PK\x06\x06"
EOCD64_LOCATOR = b"PK\x06\x07"
CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"

_EOCD_FMT = struct.Struct("<4s4H2LH")          # 22 bytes
_LOC64_FMT = struct.Struct("<4sLQL")           # 20 bytes
_EOCD64_FMT = struct.Struct("<4sQ2H2L4Q")      # 56 bytes
_CENTRAL_FMT = struct.Struct("<4s4B4HL2L5H2L")  # 46 bytes
_LOCAL_FMT = struct.Struct("<4s2B4HL2L2H")     # 30 bytes
_MAX_COMMENT = 0xFFFF

STORED = 0
DEFLATED = 8
FLAG_ENCRYPTED = 0x1
FLAG_DESCRIPTOR = 0x8
FLAG_PATCHED = 0x20
FLAG_STRONG_ENCRYPTION = 0x40
FLAG_UTF8 = 0x800


class LocalNameMismatch(Rule):
    id = "ZIP001"
    severity = Severity.HIGH
    title = "Local header name differs from the central directory"
    help = "torch (miniz) finds members by the central directory name, Python's zipfile refuses the "\
        "member, other tools use the local name: each sees different content."


class EscapingName(Rule):
    id = "ZIP002"
    severity = Severity.HIGH
    title = "Member name escapes the extraction folder"
    help = "A member name with '..' or an absolute path writes outside the target folder when the "\
        "archive is extracted (zip slip)."


class DuplicateName(Rule):
    id = "ZIP003"
    severity = Severity.HIGH
    title = "Duplicate member name"
    help = "Two members share a name: readers disagree on which one they return."


class BadCrc(Rule):
    id = "ZIP004"
    severity = Severity.HIGH
    title = "Wrong CRC on a pickle or code member"
    help = "torch does not check CRCs, Python's zipfile does: the member was changed after the "\
        "archive was written, and readers disagree on whether it is valid."


class NoCrc(Rule):
    id = "ZIP005"
    severity = Severity.INFO
    title = "Archive written without CRCs"
    help = "Every member has CRC 0: torch's no-CRC save mode. Python's zipfile refuses such members."


class ZipMember:
    __slots__ = ("central_offset", "compressed_size", "crc", "data_offset", "flags", "header_offset", "index",
                 "local_name", "method", "name", "raw_name", "size")

    def __init__(self, index: int, raw_name: bytes, name: str, flags: int, method: int, crc: int,
                 compressed_size: int, size: int, header_offset: int, central_offset: int,
                 data_offset: int | None = None, local_name: bytes | None = None) -> None:
        self.index = index
        self.raw_name = raw_name
        self.name = name
        self.flags = flags
        self.method = method
        self.crc = crc
        self.compressed_size = compressed_size
        self.size = size
        self.header_offset = header_offset  # absolute offset of the local header in the source
        self.central_offset = central_offset  # absolute offset of the central directory entry
        self.data_offset = data_offset  # absolute offset of the (compressed) data, from the local header
        self.local_name = local_name

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


class Issue:
    __slots__ = ("member", "message", "offset", "rule", "severity")

    def __init__(self, rule: type[Rule], message: str, offset: int | None, member: ZipMember | None = None,
                 severity: Severity | None = None) -> None:
        self.rule = rule
        self.message = message
        self.offset = offset
        self.member = member
        self.severity = severity


class ZipArchive:
    __slots__ = ("central_offset", "central_size", "comment", "end", "eocd_offset", "issues", "members",
                 "start", "zip64")

    def __init__(self, members: list[ZipMember], start: int, central_offset: int, central_size: int,
                 eocd_offset: int, end: int, zip64: bool = False, comment: bytes = b"",
                 issues: list[Issue] | None = None) -> None:
        self.members = members
        self.start = start  # first byte of the archive proper: bytes before it are a prefix
        self.central_offset = central_offset
        self.central_size = central_size
        self.eocd_offset = eocd_offset
        self.end = end  # just past the end-of-central-directory record and its comment
        self.zip64 = zip64
        self.comment = comment
        self.issues: list[Issue] = [] if issues is None else issues

    def by_name(self) -> dict[str, ZipMember]:
        """Name → member; with duplicates, the first central entry (miniz's binary search is not
        defined for duplicates either; they are reported separately)."""
        table: dict[str, ZipMember] = {}
        for m in self.members:
            table.setdefault(m.name, m)
        return table


def find_eocd(source: Source) -> int | None:
    """Offset of the end-of-central-directory record, searched from the end like miniz and zipfile.
    Searched once per source: three sniffers and the parser ask."""
    if "eocd" not in source.cache:
        source.cache["eocd"] = _search_eocd(source)
    found: int | None = source.cache["eocd"]
    return found


def _search_eocd(source: Source) -> int | None:
    size = source.size
    if size < _EOCD_FMT.size:
        return None
    lo = max(0, size - _EOCD_FMT.size - _MAX_COMMENT)
    tail = source.read(lo, size - lo)
    pos = tail.rfind(EOCD)
    while pos >= 0:
        if pos + _EOCD_FMT.size <= len(tail):
            (_, _, _, _, _, cd_size, cd_offset, _) = _EOCD_FMT.unpack_from(tail, pos)
            # A real record has its central directory before it (or is a zip64 placeholder).
            if cd_offset == 0xFFFFFFFF or cd_size <= lo + pos:
                return lo + pos
        pos = tail.rfind(EOCD, 0, pos)
    return None


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & FLAG_UTF8:
        return raw.decode("utf-8", "replace")
    return raw.decode("cp437")


def _zip64_extra(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 1:
            values = [struct.unpack_from("<Q", body, i)[0] for i in range(0, len(body) - 7, 8)]
            if size == 0xFFFFFFFF and values:
                size = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
        pos += 4 + length
    return size, csize, offset


def open_archive(source: Source, *, max_members: int = 1_000_000,
                 check: Callable[[], None] | None = None) -> ZipArchive:
    """Read the central directory and every local header. Raises FormatError if there is no zip.
    `check` (the scan's clock) is called every 1,024 members; past the time budget, the error says
    how many members were read."""
    eocd = find_eocd(source)
    if eocd is None:
        raise FormatError("no end-of-central-directory record: not a zip archive", None)
    (_, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len) = _EOCD_FMT.unpack(
        source.read(eocd, _EOCD_FMT.size))
    comment = source.read(eocd + _EOCD_FMT.size, comment_len)
    zip64 = False
    record_start = eocd  # where the directory's trailer records begin
    loc_at = eocd - _LOC64_FMT.size
    if loc_at >= 0 and source.read(loc_at, 4) == EOCD64_LOCATOR:
        (_, _, eocd64_offset, _) = _LOC64_FMT.unpack(source.read(loc_at, _LOC64_FMT.size))
        # zipfile expects the zip64 record right before its locator; miniz follows the locator's
        # offset. Take the record where it physically is, else where the locator points.
        phys = loc_at - _EOCD64_FMT.size
        at = phys if phys >= 0 and source.read(phys, 4) == EOCD64 else eocd64_offset
        raw = source.read(at, _EOCD64_FMT.size)
        if len(raw) < _EOCD64_FMT.size or raw[:4] != EOCD64:
            raise FormatError("malformed zip64: the zip64 end record is missing where its locator says",
                              loc_at)
        (_, _, _, _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset) = _EOCD64_FMT.unpack(raw)
        zip64 = True
        record_start = at
    if disk != cd_disk or n_disk != n_total:
        raise FormatError("multi-disk (spanned) zip archives are not supported by torch or zipfile", eocd)
    # Like zipfile: bytes in front of the archive shift every offset by `concat`.
    concat = record_start - cd_size - cd_offset
    if concat < 0:
        raise FormatError(f"malformed zip: the central directory ({cd_size:,} bytes at {cd_offset:,}) "
                          f"runs past its end record at {record_start:,}", eocd)
    if n_total > max_members:
        raise LimitExceeded(f"zip has {n_total:,} members, more than the limit of {max_members:,}", eocd)
    cd_abs = cd_offset + concat
    directory = source.read(cd_abs, cd_size)
    archive = ZipArchive([], concat, cd_abs, cd_size, eocd, eocd + _EOCD_FMT.size + comment_len,
                         zip64, comment)
    pos = 0
    for index in range(n_total):
        if check is not None and index and not index & 1023:
            try:
                check()
            except LimitExceeded as exc:
                raise LimitExceeded(f"{exc.message} after reading {index:,} of the {n_total:,} members' "
                                    "headers", cd_abs + pos) from None
        if pos + _CENTRAL_FMT.size > len(directory):
            raise FormatError(f"truncated central directory: entry {index} of {n_total} is missing",
                              cd_abs + pos)
        fields = _CENTRAL_FMT.unpack_from(directory, pos)
        if fields[0] != CENTRAL:
            raise FormatError(f"malformed central directory: bad signature at entry {index}", cd_abs + pos)
        (flags, method, _, _, crc, csize, usize, n_len, e_len, c_len) = fields[5:15]
        offset = fields[18]
        end = pos + _CENTRAL_FMT.size + n_len + e_len + c_len
        if end > len(directory):
            raise FormatError(f"truncated central directory entry {index}", cd_abs + pos)
        raw_name = directory[pos + _CENTRAL_FMT.size : pos + _CENTRAL_FMT.size + n_len]
        extra = directory[pos + _CENTRAL_FMT.size + n_len : pos + _CENTRAL_FMT.size + n_len + e_len]
        usize, csize, offset = _zip64_extra(extra, usize, csize, offset)
        member = ZipMember(index, raw_name, _decode_name(raw_name, flags), flags, method, crc, csize, usize,
                           offset + concat, cd_abs + pos)
        archive.members.append(member)
        _read_local(source, archive, member)
        pos = end
    if archive.members:
        archive.start = min(concat, min(m.header_offset for m in archive.members))
    _check(archive, source)
    return archive


def _read_local(source: Source, archive: ZipArchive, m: ZipMember) -> None:
    head = source.read(m.header_offset, _LOCAL_FMT.size)
    if len(head) < _LOCAL_FMT.size or head[:4] != LOCAL:
        archive.issues.append(Issue(Malformed, f"malformed zip: member {m.name!r} has no local header at "
                                    f"{m.header_offset:,}; torch and zipfile refuse it", m.header_offset, m))
        return
    fields = _LOCAL_FMT.unpack(head)
    n_len, e_len = fields[10], fields[11]
    m.local_name = source.read(m.header_offset + _LOCAL_FMT.size, n_len)
    m.data_offset = m.header_offset + _LOCAL_FMT.size + n_len + e_len
    if m.data_offset + m.compressed_size > source.size:
        archive.issues.append(Issue(Malformed, f"truncated zip: member {m.name!r} needs "
                                    f"{m.compressed_size:,} bytes at {m.data_offset:,}, but the file ends at "
                                    f"{source.size:,}", m.data_offset, m))


def _escapes(name: str) -> bool:
    norm = name.replace("\\", "/")
    return norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/")


def _check(archive: ZipArchive, source: Source) -> None:
    issues = archive.issues
    seen: set[bytes] = set()
    for m in archive.members:
        if m.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
            issues.append(Issue(Malformed, f"malformed zip: member {m.name!r} is encrypted (flag bits "
                                f"0x{m.flags:04x}); torch and zipfile refuse it", m.central_offset, m))
        if m.flags & FLAG_PATCHED:
            issues.append(Issue(Malformed, f"malformed zip: member {m.name!r} is patch data (flag bit 5); "
                                "torch and zipfile refuse it", m.central_offset, m))
        if m.method not in (STORED, DEFLATED):
            issues.append(Issue(Malformed, f"malformed zip: member {m.name!r} uses compression method "
                                f"{m.method}, which torch (miniz) cannot read", m.central_offset, m))
        if m.local_name is not None and m.local_name != m.raw_name:
            issues.append(Issue(LocalNameMismatch, f"member {m.name!r} is named {m.local_name[:200]!r} in "
                                "its local header: torch reads it by the central name, zipfile refuses it, "
                                "other tools see the local name", m.header_offset, m))
        if _escapes(m.name):
            issues.append(Issue(EscapingName, f"member name {m.name!r} escapes the extraction folder "
                                "('..' or an absolute path)", m.central_offset, m))
        if m.raw_name in seen:
            issues.append(Issue(DuplicateName, f"member name {m.name!r} appears twice in the central "
                                "directory: readers disagree on which one they return", m.central_offset, m))
        seen.add(m.raw_name)
    spans = sorted(((m.header_offset, m.data_offset + m.compressed_size, m) for m in archive.members
                    if m.data_offset is not None), key=lambda span: span[:2])
    for (_, end_a, a), (start_b, _, b) in itertools.pairwise(spans):
        if start_b < end_a:
            issues.append(Issue(Malformed, f"malformed zip: members {a.name!r} and {b.name!r} overlap at "
                                f"{start_b:,} (a zip bomb or a reader differential)", start_b, b))
    sized = [m for m in archive.members if m.size]
    if sized and all(m.crc == 0 for m in sized):
        issues.append(Issue(NoCrc, "every member has CRC 0 (torch's no-CRC save mode)",
                            archive.central_offset))


def _check_readable(source: Source, m: ZipMember) -> int:
    """The member's data offset; FormatError if torch and zipfile could not read it."""
    if m.data_offset is None:
        raise FormatError(f"member {m.name!r} has no readable local header", m.header_offset)
    if m.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_PATCHED):
        raise FormatError(f"member {m.name!r} is encrypted or patch data", m.central_offset)
    if m.data_offset + m.compressed_size > source.size:
        raise FormatError(f"truncated: member {m.name!r} runs past the end of the file", m.data_offset)
    if m.method not in (STORED, DEFLATED):
        raise FormatError(f"member {m.name!r} uses unsupported compression method {m.method}",
                          m.central_offset)
    return m.data_offset


def open_member(source: Source, m: ZipMember, ctx: Any, *, crc: bool = False,
                in_memory: bool = False) -> Decompressed:
    """The member as a Source, without copying it whole: a window of the archive when stored (read
    into memory when `in_memory` and small: the pickle machine is fastest on bytes), else inflated
    under the file's decompression budget (`airlock.core.decompress`). FormatError if it cannot be
    read at all; a stream that breaks or goes over budget gives the bytes before, and the error."""
    start = _check_readable(source, m)
    name = f"{source.member}!{m.name}" if source.member else m.name
    if m.method == STORED:
        sub = source.slice(start, m.compressed_size, name=name, member=name)
        if (in_memory or crc) and sub.size <= IN_MEMORY_BYTES:
            sub = MemorySource(sub.read(0, sub.size), name=name, member=name, path=source.path)
        checksum = member_crc(sub) if crc else None
        return Decompressed(sub, start + m.compressed_size, None, checksum, sub.size)
    raw = source.slice(start, m.compressed_size, name=name, member=name)
    out = decompress(lambda: Inflater(raw, "deflate"), ctx, name=name, member=name, path=source.path,
                     what=f"member {m.name!r}", declared=m.size, crc=crc)
    if out.error is not None and out.error.offset is None:
        out.error.offset = start
    return out


def member_crc(source: Source) -> int:
    if isinstance(source, MemorySource):
        return zlib.crc32(source.data) & 0xFFFFFFFF
    value, pos = 0, 0
    while pos < source.size:
        chunk = source.read(pos, 1 << 20)
        value = zlib.crc32(chunk, value)
        pos += len(chunk)
    return value & 0xFFFFFFFF


def read_member(source: Source, m: ZipMember, cap: int, ctx: Any = None) -> bytes:
    """The member's bytes, decompressed: for small members (records, code) and the converter.
    FormatError if it cannot be read, LimitExceeded past `cap` (or, given a scan context, past the
    file's decompression budget)."""
    _check_readable(source, m)
    assert m.data_offset is not None
    if m.size > cap:
        raise LimitExceeded(f"member {m.name!r} is {m.size:,} bytes, more than the limit of {cap:,}",
                            m.data_offset)
    if m.method == STORED:
        return source.read(m.data_offset, m.compressed_size)
    if ctx is not None:
        ctx.charge_decompressed(m.size, f"member {m.name!r}")  # at most this much is inflated
    dec: Any = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pos, end, step = m.data_offset, m.data_offset + m.compressed_size, 1 << 20
    try:
        while pos < end and not dec.eof:
            chunk = dec.unconsumed_tail + source.read(pos, min(step, end - pos))
            pos += min(step, end - pos)
            out += dec.decompress(chunk, cap - len(out) + 1)
            while dec.unconsumed_tail and len(out) <= cap:
                more = dec.decompress(dec.unconsumed_tail, cap - len(out) + 1)
                if not more:
                    break
                out += more
            if len(out) > cap:
                raise LimitExceeded(f"member {m.name!r} inflates past {cap:,} bytes", m.data_offset)
    except zlib.error as exc:
        raise FormatError(f"member {m.name!r}: corrupt deflate data after {len(out):,} bytes ({exc})",
                          m.data_offset) from None
    if not dec.eof:
        raise FormatError(f"truncated: member {m.name!r} deflate stream ends early", m.data_offset)
    if len(out) != m.size:
        raise FormatError(f"member {m.name!r} inflates to {len(out):,} bytes, but the directory says "
                          f"{m.size:,}", m.data_offset)
    return bytes(out)


def crc_issue(archive: ZipArchive, m: ZipMember, data: bytes | int) -> Issue | None:
    """A wrong CRC on a member that is read as code (torch never checks; zipfile refuses). `data`:
    the member's bytes, or their CRC-32."""
    actual = data if isinstance(data, int) else zlib.crc32(data) & 0xFFFFFFFF
    if actual == m.crc:
        return None
    if m.crc == 0 and any(i.rule is NoCrc for i in archive.issues):
        return None  # torch's no-CRC mode, reported once for the archive
    return Issue(BadCrc, f"member {m.name!r} has CRC 0x{m.crc:08x} in the directory but its bytes give "
                 f"0x{actual:08x}: it was changed after the archive was written", m.central_offset, m)


def _directory(source: Source) -> tuple[int, int, int] | None:
    """(members, first central record, end of the directory) as the end records declare them, read
    cheaply for sniffing; None when there is no zip or the records do not add up."""
    eocd = find_eocd(source)
    if eocd is None:
        return None
    try:
        (_, _, _, _, n_total, cd_size, cd_offset, _) = _EOCD_FMT.unpack(source.read(eocd, _EOCD_FMT.size))
        record_start = eocd
        loc_at = eocd - _LOC64_FMT.size
        if loc_at >= 0 and source.read(loc_at, 4) == EOCD64_LOCATOR:
            phys = loc_at - _EOCD64_FMT.size
            raw = source.read(phys, _EOCD64_FMT.size) if phys >= 0 else b""
            if len(raw) == _EOCD64_FMT.size and raw[:4] == EOCD64:
                (*_, n_total, cd_size, cd_offset) = _EOCD64_FMT.unpack(raw)
                record_start = phys
    except struct.error:
        return None
    concat = record_start - cd_size - cd_offset
    if concat < 0:
        return None
    return n_total, cd_offset + concat, cd_offset + concat + cd_size


def declared_members(source: Source) -> int | None:
    """How many members the end records declare (not checked against the directory). None: no zip."""
    directory = _directory(source)
    return None if directory is None else directory[0]


def peek_names(source: Source, limit: int = 4096) -> list[str] | None:
    """Names of the first `limit` members, cheaply, for sniffing. None when there is no zip."""
    directory = _directory(source)
    if directory is None:
        return None
    n_total, pos, end = directory
    names = []
    try:
        for _ in range(min(n_total, limit)):
            head = source.read(pos, _CENTRAL_FMT.size)
            if len(head) < _CENTRAL_FMT.size or head[:4] != CENTRAL or pos >= end:
                break
            fields = _CENTRAL_FMT.unpack(head)
            n_len, e_len, c_len = fields[12:15]
            names.append(_decode_name(source.read(pos + _CENTRAL_FMT.size, n_len), fields[5]))
            pos += _CENTRAL_FMT.size + n_len + e_len + c_len
    except struct.error:
        return None
    return names


def member_names(source: Source) -> list[str]:
    """`peek_names`, read once per source (several sniffers ask: .pt2, skops); [] when not a zip."""
    names: list[str] | None = source.cache.get("peek_names")
    if names is None:
        names = source.cache["peek_names"] = peek_names(source) or []
    return names


class PicklePrefix(Rule):
    id = "ZIP006"
    severity = Severity.CRITICAL
    title = "Pickle in front of a zip archive runs calls"
    help = "torch.load reads a file that does not start with a zip header as a legacy pickle, and "\
        "pickle.load reads the prefix too: the calls in the prefix run, while zip tools see a clean archive."


def salvage(source: Source, limit: int = 100_000) -> ZipArchive:
    """Members found by walking local headers from the start, for an archive whose central
    directory is gone (a truncated download). Streaming unzippers read files this way."""
    members: list[ZipMember] = []
    pos = 0
    while pos + _LOCAL_FMT.size <= source.size and len(members) < limit:
        head = source.read(pos, _LOCAL_FMT.size)
        if head[:4] != LOCAL:
            break
        fields = _LOCAL_FMT.unpack(head)
        flags, method, _, _, crc, csize, usize, n_len, e_len = fields[3:12]
        raw = source.read(pos + _LOCAL_FMT.size, n_len)
        extra = source.read(pos + _LOCAL_FMT.size + n_len, e_len)
        usize, csize, _ = _zip64_extra(extra, usize, csize, 0)
        data_offset = pos + _LOCAL_FMT.size + n_len + e_len
        if flags & FLAG_DESCRIPTOR and csize == 0:
            break  # the size is only in a data descriptor after the data: cannot step over it
        members.append(ZipMember(len(members), raw, _decode_name(raw, flags), flags, method, crc, csize,
                                 usize, pos, pos, data_offset, raw))
        pos = data_offset + csize
    return ZipArchive(members, 0, source.size, 0, source.size, source.size)
