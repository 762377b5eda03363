"""tar archives, plain or gzip/bz2/xz-compressed (`.tar .tgz .tar.gz .tar.bz2 .tar.xz`), by content.

Read with the stdlib `tarfile` — the reader `tarfile.extractall`, ONNX's model zoo, Keras' `get_file` and
NeMo use — so members are what those loaders see. Plain archives are read in place (headers by offset,
members through `Source.read`); compressed ones are streamed (`mode="r|"`) from a decompressor that
charges every byte it produces to the file's decompression budget, so nothing is ever expanded whole.
Every member is scanned like a file (nested to the depth limit): in place in a plain archive, whatever its
size; from a compressed one through airlock.core.decompress (its first 64 MiB and last 1 MiB kept, the rest
decompressed again from the archive's start when a parser reads there), each byte counted against the same
budget, and one that does not fit is a `high` "not inspected further".

Extraction hazards are findings: a member whose name is absolute or climbs out with `..`, a link whose
target lies outside the archive, a member written through an earlier symbolic link (all `high`: on
Pythons without extraction filters `extractall` writes there), device files and FIFOs, and names that
appear twice (extraction keeps the last; both are scanned).

A tar whose first members are torch's legacy `sys_info`/`storages`/`tensors`/`pickle` is left to
`torch_legacy`; a tar holding `model_config.yaml` is a NeMo archive (`airlock.core.formats.nemo`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airlock.core.context import ScanContext
from airlock.core.decompress import ChargedBelow, Inflater, decompress, decompressor, skip_then
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.findings import Malformed, NotInspected, Rule, Severity, TrailingData
from airlock.core.formats.contract import file_node
from airlock.core.formats.tar_stream import DecompressingReader, compression
from airlock.core.limits import DEFAULT_LIMITS
from airlock.core.source import Source, SourceFile
from airlock.core.text import safe_text
from airlock.core.tree import DATA, MEMBER, Node

if TYPE_CHECKING:
    import tarfile

NAME = "tar"
EXTENSIONS = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
OVERLAPS = ("torch_legacy",)  # torch.save's oldest layout is a tar, handed to torch_legacy

MAX_MEMBER_NODES = 10_000  # members shown and scanned one by one; the rest are summarised
_CHUNK = 1 << 20
_LEGACY_TORCH = ("sys_info", "storages", "tensors", "pickle")


class EscapingMember(Rule):
    id = "TAR001"
    severity = Severity.HIGH
    title = "Archive member escapes the extraction folder"
    help = "An absolute name, a `..` component, a link pointing outside the archive, or a member written "\
        "through a symbolic link: extracting the archive writes (or links) outside its folder."


class SpecialMember(Rule):
    id = "TAR002"
    severity = Severity.MEDIUM
    title = "Device file or FIFO in an archive"
    help = "Extraction creates a device node or FIFO; no model archive needs one."


class DuplicateMember(Rule):
    id = "TAR003"
    severity = Severity.MEDIUM
    title = "Archive member name appears twice"
    help = "Extraction keeps the last copy, a reader that stops at the first sees another file; every copy "\
        "was scanned."


def header_ok(block: bytes) -> bool:
    """A tar header block: its checksum (unsigned or signed, as tarfile accepts) matches."""
    if len(block) < 512 or block[:1] == b"\0":
        return False
    field = block[148:156].split(b"\0", 1)[0].strip()
    try:
        stored = int(field or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 256 + sum(block[156:512])
    signed = unsigned - sum(2 * b for b in block[:148] + block[156:512] if b > 127)
    return stored in (unsigned, signed)


def first_header(source: Source) -> tuple[bytes, str | None]:
    """The first 512 bytes of the tar (decompressed if need be) and the compression."""
    kind = compression(source.head(8))
    if kind is None:
        return source.head(512), None
    try:
        dec = decompressor(kind)
        return bytes(dec.decompress(source.read(0, 64 * 1024), 512)), kind
    except Exception:  # noqa: BLE001 - a corrupt stream is simply not a tar here
        return b"", kind


def sniff_source(source: Source) -> int:
    block, kind = first_header(source)
    if not header_ok(block):
        return 0
    if _block_name(block) in _LEGACY_TORCH:
        return 0  # torch's legacy tar: torch_legacy reads it (a compressed one once decompressed)
    # A header with a valid checksum at offset 0 is what tarfile reads, even when a member is a zip whose
    # end record the zip sniffers find (torch.load wants its zip at offset 0 too). Compressed: above the
    # plain gzip/bz2/xz wrapper (85), the archive is the content.
    return 98 if kind is None else 88


def sniff(head: bytes, size: int) -> int:
    return sniff_source(Source.from_bytes(head, "<head>"))


def _block_name(block: bytes) -> str:
    return block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")


def first_names(source: Source, limit: int = 16) -> list[str]:
    """Names of the first members (for sniffers), read once per source. A compressed archive is read
    only as far as its first MiB of decompressed data."""
    cached: Any = source.cache.get("tar_names")
    if cached is not None:
        return list(cached)
    names: list[str] = []
    block, kind = first_header(source)
    if header_ok(block):
        import tarfile

        ctx = ScanContext(DEFAULT_LIMITS.replace(max_decompressed_bytes=1 << 20, time_budget_s=5.0))
        try:
            with _open(source, kind, ctx) as archive:
                while len(names) < limit:
                    info = archive.next()
                    if info is None:
                        break
                    names.append(info.name)
        except (tarfile.TarError, OSError, EOFError, ValueError, OverflowError, LimitExceeded):
            pass
    source.cache["tar_names"] = names
    return list(names)


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    names = walk(source, ctx, root)
    if is_nemo(names):  # model_config.yaml came too late for the sniffer to see it
        root.attrs["format"] = "nemo"
    return root


# NeMo's .nemo is a tar holding this file: known here, so that the tar reader can name a NeMo
# archive whose config comes late without importing the nemo module (which imports this one).
NEMO_CONFIG = "model_config.yaml"


def is_nemo(names: list[str]) -> bool:
    return any(posixpath.basename(name) == NEMO_CONFIG for name in names)


def walk(source: Source, ctx: ScanContext, root: Node) -> list[str]:
    """Scan every member under `root`; returns the member names."""
    import tarfile

    kind = first_header(source)[1]
    if kind is not None:
        root.attrs["compression"] = kind
    try:
        archive = _open(source, kind, ctx)
    except (tarfile.TarError, OSError, EOFError, ValueError, OverflowError) as exc:
        raise FormatError(f"not a readable tar: {safe_text(str(exc), 200)}", 0) from None
    state = _Walk(source, ctx, root, kind)
    with archive:
        while True:
            ctx.check()
            try:
                info = archive.next()
            except (tarfile.TarError, OSError, EOFError, ValueError, OverflowError, UnicodeError) as exc:
                ctx.report(Malformed, f"malformed tar after {len(state.names):,} member(s): "
                           f"{safe_text(str(exc), 200)}", node=root,
                           offset=archive.offset if kind is None else None)
                break
            if info is None:
                break
            # tarfile keeps every TarInfo it has read; a million-member archive would hold them all.
            archive.members.clear()  # type: ignore[attr-defined]  # tarfile's own list, not in its stubs
            if len(state.names) >= MAX_MEMBER_NODES:
                ctx.report(NotInspected, f"more than {MAX_MEMBER_NODES:,} members: the rest were not "
                           "inspected", node=root, offset=info.offset if kind is None else None)
                break
            state.member(archive, info)
        end = archive.offset
    from airlock.core.formats.model_folder_context import check_archive_code

    check_archive_code(ctx, state.code, [normalise(n) for n in state.names])
    root.attrs["members"] = len(state.names)
    if kind is None:
        if end >= source.size and state.names:
            # tarfile stops quietly where the bytes end; a complete archive ends with zero blocks.
            ctx.report(Malformed, f"truncated tar: the archive stops after {len(state.names):,} member(s) "
                       "without its end-of-archive blocks", node=root, offset=source.size)
        _trailing(source, ctx, root, end)
    return state.names


def _open(source: Source, kind: str | None, ctx: ScanContext) -> tarfile.TarFile:
    import tarfile

    if kind is None:
        return tarfile.open(fileobj=SourceFile(source), mode="r:")
    return tarfile.open(fileobj=DecompressingReader(source, kind, ctx), mode="r|")


class _Walk:
    """Per-archive state: names seen (duplicates), symbolic links (writes through them)."""

    def __init__(self, source: Source, ctx: ScanContext, root: Node, kind: str | None) -> None:
        self.source = source
        self.ctx = ctx
        self.root = root
        self.kind = kind
        self.names: list[str] = []
        self.seen: set[str] = set()
        self.symlinks: set[str] = set()
        self.torch_prefixes: set[str] = set()  # folders of torch checkpoints: `<prefix>/data.pkl`
        self.code: list[tuple[str, Node]] = []  # *.py members: code shipped inside the archive

    def member(self, archive: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        name = info.name
        self.names.append(name)
        offset = info.offset if self.kind is None else None
        node = self.root.child(MEMBER, safe_text(name, 200), offset=offset,
                               length=info.size if self.kind is None else None, member=self.source.member,
                               attrs={"size": info.size, "type": _type(info)})
        if self.kind is not None:
            node.attrs["offset in decompressed stream"] = info.offset
        self._hazards(info, node)
        if info.isfile():
            self._scan(archive, info, node)
            if name.endswith(".py"):
                self.code.append((normalise(name), node))

    def _hazards(self, info: tarfile.TarInfo, node: Node) -> None:
        name = info.name
        norm = normalise(name)
        if escapes(name):
            self.ctx.report(EscapingMember, f"member {safe_text(name, 160)!r} is written outside the "
                            "extraction folder", node=node)
        elif info.issym() and escapes(posixpath.join(posixpath.dirname(norm), info.linkname)):
            self.ctx.report(EscapingMember, f"symbolic link {safe_text(name, 160)!r} points outside the "
                            f"archive, to {safe_text(info.linkname, 160)!r}", node=node)
        elif info.islnk() and escapes(info.linkname):
            self.ctx.report(EscapingMember, f"hard link {safe_text(name, 160)!r} points outside the archive, "
                            f"to {safe_text(info.linkname, 160)!r}", node=node)
        parents = [posixpath.dirname(norm)]
        while parents[-1] not in ("", "/", "."):
            parents.append(posixpath.dirname(parents[-1]))
        through = next((p for p in parents if p in self.symlinks), None)
        if through is not None:
            self.ctx.report(EscapingMember, f"member {safe_text(name, 160)!r} is written through the "
                            f"symbolic link {safe_text(through, 160)!r}, wherever that points", node=node)
        if info.issym():
            self.symlinks.add(norm)
        if info.ischr() or info.isblk() or info.isfifo():
            what = "FIFO" if info.isfifo() else "device file"
            self.ctx.report(SpecialMember, f"member {safe_text(name, 160)!r} is a {what}", node=node)
        if norm in self.seen and not info.isdir():
            self.ctx.report(DuplicateMember, f"member {safe_text(name, 160)!r} appears more than once; "
                            "extraction keeps the last copy", node=node)
        self.seen.add(norm)

    def _scan(self, archive: tarfile.TarFile, info: tarfile.TarInfo, node: Node) -> None:
        ctx, size, name = self.ctx, info.size, safe_text(info.name, 160)
        member = f"{self.source.member}!{info.name}" if self.source.member else info.name
        if self.kind is None and not info.issparse():
            # A plain archive holds the member's bytes as they are: scanned in place, whatever their size
            # (a model zoo's .tar of a 2 GB checkpoint), never copied into memory.
            have = max(min(size, self.source.size - info.offset_data), 0)
            if have < size:
                ctx.report(Malformed, f"truncated tar: member {name!r} declares {size:,} bytes but only "
                           f"{have:,} remain", node=node)
            data = self.source.slice(info.offset_data, have, name=member, member=member)
            self._judge(info, node, data, member)
            return
        left = ctx.limits.max_decompressed_bytes - ctx.decompressed_bytes
        if size > left:
            ctx.report(LimitRule, f"member {name!r} has {size:,} bytes, more than the {max(left, 0):,} bytes "
                       "left of the per-file decompression budget: not inspected further", node=node)
            return
        out = decompress(self._opener(archive, info), ctx if self.kind is None else ChargedBelow(ctx),
                         name=member, member=member, path=self.source.path, what=f"tar member {name}",
                         declared=size)
        if out.error is not None:
            if out.total < size and not isinstance(out.error, LimitExceeded):
                ctx.report(Malformed, f"truncated tar: member {name!r} declares {size:,} bytes but only "
                           f"{out.total:,} remain ({safe_text(out.error.message, 120)})", node=node)
            else:
                ctx.report(LimitRule if isinstance(out.error, LimitExceeded) else Malformed,
                           f"tar member {name!r}: {safe_text(out.error.message, 200)}", node=node)
        try:
            self._judge(info, node, out.source, member)
        finally:
            out.done()

    def _opener(self, archive: tarfile.TarFile, info: tarfile.TarInfo) -> Callable[[], Iterable[bytes]]:
        """The member's bytes, in bounded chunks: the first time from tarfile's reader (a compressed
        archive is read as a stream, once); again, for a member too long to keep (over 64 MiB, see
        airlock.core.decompress), by decompressing the archive from its start up to the member."""
        size, first = info.size, [archive.extractfile(info)]
        source, kind, at = self.source, self.kind, info.offset_data

        def opener() -> Iterable[bytes]:
            reader = first.pop() if first else None
            if reader is not None:
                return _read_chunks(reader, size)
            if kind is None:  # a sparse member of a plain archive: a fresh tarfile reads it in place again
                return _sparse_again(source, info)  # (the walk's archive may be closed by then)
            return skip_then(Inflater(source, kind), at, size)

        return opener

    def _judge(self, info: tarfile.TarInfo, node: Node, data: Source, member: str) -> None:
        if is_torch_storage(normalise(info.name), self.torch_prefixes, data.read(0, 4096)):
            node.attrs["storage"] = True  # tensor bytes of a torch checkpoint: data, not content
            return
        if info.name.endswith("/data.pkl"):
            self.torch_prefixes.add(normalise(info.name)[: -len("data.pkl")])
        label = safe_text(posixpath.basename(info.name.rstrip("/")) or info.name, 120)
        self.ctx.parse_nested(data, node, label=label)


def _sparse_again(source: Source, info: tarfile.TarInfo) -> Iterator[bytes]:
    import tarfile

    with tarfile.open(fileobj=SourceFile(source), mode="r:") as again:
        yield from _read_chunks(again.extractfile(info), info.size)


def _read_chunks(reader: Any, size: int) -> Iterator[bytes]:
    """A tarfile member reader's bytes in bounded chunks; a break in the archive is a FormatError."""
    import tarfile

    if reader is None:
        return
    got = 0
    while got < size:
        try:
            chunk = reader.read(min(_CHUNK, size - got))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise FormatError(f"the archive breaks off after {got:,} of the member's {size:,} bytes "
                              f"({safe_text(str(exc), 120)})", None) from None
        if not chunk:
            return
        got += len(chunk)
        yield chunk


def is_torch_storage(name: str, prefixes: set[str], data: bytes) -> bool:
    """A storage of a torch checkpoint saved as a folder (`<prefix>/data/<key>` next to
    `<prefix>/data.pkl`): raw tensor bytes that torch reads as data, unless they parse as a pickle."""
    from airlock.core.pickle.probe import looks_like_pickle

    if "/data/" not in name:
        return False
    prefix = name.rsplit("/data/", 1)[0] + "/"
    return prefix in prefixes and looks_like_pickle(data[:4096]) <= 0


def _trailing(source: Source, ctx: ScanContext, root: Node, end: int) -> None:
    """Bytes after the end-of-archive blocks. tar pads with zeros (often to 10 KiB records); anything
    else there is read by no extractor, but can hide content: reported and read."""
    pos = min(end, source.size)
    while pos < source.size:
        ctx.tick(64)
        chunk = source.read(pos, _CHUNK)
        stripped = chunk.lstrip(b"\0")
        if stripped:
            pos += len(chunk) - len(stripped)
            break
        pos += len(chunk)
    if pos >= source.size:
        return
    size = source.size - pos
    node = root.child(DATA, f"bytes after the archive ({size:,})", offset=pos, length=size,
                      member=source.member)
    where = f"{source.member or ''}<bytes after the tar at {pos}>"
    if size > ctx.limits.max_decompressed_bytes - ctx.decompressed_bytes:
        ctx.report(TrailingData, f"{size:,} bytes after the end of the tar archive (too many to read here)",
                   node=node, offset=pos)
        return
    ctx.charge_decompressed(size, "bytes after the tar archive")
    rest = Source.from_bytes(source.read(pos, size), name=where, member=where, path=source.path)
    what = ctx.read_as(rest, node, label="trailing content")
    ctx.report(TrailingData, f"{size:,} bytes after the end of the tar archive; extractors ignore them; "
               f"{what}", node=node, offset=pos)


def normalise(name: str) -> str:
    norm = posixpath.normpath(name.replace("\\", "/"))
    return "" if norm == "." else norm


def escapes(name: str) -> bool:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return True
    return posixpath.normpath(norm).split("/")[0] == ".."


def _type(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "directory"
    if info.issym():
        return f"symbolic link to {safe_text(info.linkname, 120)}"
    if info.islnk():
        return f"hard link to {safe_text(info.linkname, 120)}"
    if info.isfile():
        return "file"
    return "FIFO" if info.isfifo() else "device" if info.ischr() or info.isblk() else "special"
