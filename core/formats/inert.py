"""Known-inert content: text, images and tokenizer data that no model loader runs. Reported `info`.

This is the last format to claim bytes (it sniffs lowest): a pickle written in protocol 0 is text too,
but the pickle module claims it first, and so does any other format. By content only; the name never
makes content inert. Recognised here:

- UTF-8 (or BOM-marked UTF-16) text without control characters: READMEs, licences, `vocab.txt`,
  `merges.txt`, tiktoken ranks, code. A Git LFS pointer (text that stands in for a file that was never
  downloaded) is named as such, so that a reviewer sees the real weights were not scanned.
- PNG (its chunks walked to the end: bytes after IEND are reported and read), JPEG, GIF, WebP, BMP, TIFF.
- SentencePiece models (`tokenizer.model`, `spiece.model`): a protobuf whose every top-level field is a
  length-delimited field 1–5, the pieces first; walked to the last byte.
"""

from __future__ import annotations

import codecs
import struct

from airlock.core.context import ScanContext
from airlock.core.findings import InertContent, NotInspected, TrailingData
from airlock.core.formats.contract import file_node
from airlock.core.formats.protowire import read_varint
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import DATA, Node

NAME = "inert"
EXTENSIONS = (".txt", ".md", ".rst", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")

TEXT, IMAGE, SENTENCEPIECE, LFS_POINTER = "text", "image", "sentencepiece", "git-lfs-pointer"
SCORE = 2  # below every real format: inert only when nothing else claims the bytes

WHOLE_TEXT_BYTES = 16 * 1024 * 1024  # text up to this size is checked whole; bigger, by samples
_SAMPLE = 1024 * 1024
MAX_PROTOBUF_BYTES = 64 * 1024 * 1024
LFS_PREFIX = b"version https://git-lfs.github.com/spec/"

# C0 controls that text files hold (tab, newlines, form feed, vertical tab, escape for coloured logs).
_TEXT_CONTROLS = frozenset(b"\t\n\r\x0b\x0c\x1b")
_BAD_BYTES = bytes(c for c in range(32) if c not in _TEXT_CONTROLS) + b"\x7f"

_PNG = b"\x89PNG\r\n\x1a\n"
_IMAGE_MAGIC = ((_PNG, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
                (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def image_kind(head: bytes, size: int) -> str | None:
    for magic, kind in _IMAGE_MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:2] == b"BM" and len(head) >= 6 and struct.unpack_from("<I", head, 2)[0] == size:
        return "BMP"  # "BM" alone is too weak: the header's file size must match too
    return None


def looks_like_text(chunk: bytes, *, final: bool, mid: bool = False) -> bool:
    if mid:  # a sample from the middle may start inside a multi-byte character
        skip = 0
        while skip < min(3, len(chunk)) and 0x80 <= chunk[skip] < 0xC0:
            skip += 1
        chunk = chunk[skip:]
    if chunk.translate(None, _BAD_BYTES) != chunk:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(chunk, final=final)
    except UnicodeDecodeError:
        return False
    return True


def _utf16_text(head: bytes) -> bool:
    if head[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        return False
    codec = "utf-16-le" if head[:2] == b"\xff\xfe" else "utf-16-be"
    body = head[2 : 2 + (len(head) - 2) // 2 * 2]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and ord(c) not in _TEXT_CONTROLS for c in text)


def sentencepiece_head(head: bytes) -> bool:
    """Field 1 (a piece message) that starts with its own field 1 (the piece string) and then its
    score (field 2, a float): how every SentencePiece ModelProto begins."""
    if head[:1] != b"\x0a":
        return False
    outer = read_varint(head, 1, len(head))
    if outer is None or outer[1] >= len(head) or head[outer[1]] != 0x0A:
        return False
    inner = read_varint(head, outer[1] + 1, len(head))
    if inner is None or inner[0] > outer[0]:
        return False
    after = inner[1] + inner[0]
    return after < len(head) and head[after] == 0x15


def detect(head: bytes, size: int) -> str | None:
    if size == 0:
        return None
    if image_kind(head, size) is not None:
        return IMAGE
    if sentencepiece_head(head):
        return SENTENCEPIECE
    if head.startswith(LFS_PREFIX):
        return LFS_POINTER
    if _utf16_text(head) or looks_like_text(head, final=len(head) >= size):
        return TEXT
    return None


def sniff(head: bytes, size: int) -> int:
    return SCORE if detect(head, size) is not None else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    kind = detect(source.head(), source.size)
    problem: str | None = None
    if kind == IMAGE:
        what = f"{image_kind(source.head(), source.size)} image"
        if source.head().startswith(_PNG):
            problem = _walk_png(source, ctx, root)
    elif kind == SENTENCEPIECE:
        what = "SentencePiece tokenizer model"
        problem = _walk_sentencepiece(source, ctx)
    elif kind == LFS_POINTER:
        what = (f"Git LFS pointer ({_lfs_summary(source)}): the real file was never downloaded, so it was "
                "not scanned")
        problem = None if _is_text(source, ctx) else "binary bytes follow the pointer text"
    else:
        what = "UTF-8 text" if not _utf16_text(source.head()) else "UTF-16 text"
        problem = None if _is_text(source, ctx) else "binary bytes follow a text beginning"
    if problem is not None:
        root.attrs["format"] = "unknown"
        ctx.report(NotInspected, f"starts like {safe_text(what, 80)} but {problem}: not inspected", node=root,
                   offset=0)
        return root
    root.attrs["format"] = kind if kind != IMAGE else "image"
    root.attrs["content"] = what
    ctx.report(InertContent, f"{what}, {source.size:,} bytes: no model loader runs it", node=root, offset=0)
    return root


def _is_text(source: Source, ctx: ScanContext) -> bool:
    if _utf16_text(source.head()):
        return True
    if source.size <= WHOLE_TEXT_BYTES:
        pos = 0
        decoder = codecs.getincrementaldecoder("utf-8")()
        while pos < source.size:
            ctx.check()
            chunk = source.read(pos, _SAMPLE)
            if not chunk or chunk.translate(None, _BAD_BYTES) != chunk:
                return False
            pos += len(chunk)
            try:
                decoder.decode(chunk, final=pos >= source.size)
            except UnicodeDecodeError:
                return False
        return True
    # A big text file is sampled at its start, middle and end: it is read by no loader, so a sample
    # is enough to tell text from a binary format whose first bytes happen to be printable.
    middle = source.size // 2
    return (looks_like_text(source.read(0, _SAMPLE), final=False)
            and looks_like_text(source.read(middle, _SAMPLE), final=False, mid=True)
            and looks_like_text(source.read(source.size - _SAMPLE, _SAMPLE), final=True, mid=True))


def _lfs_summary(source: Source) -> str:
    fields = {}
    for line in source.read(0, 1024).decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        fields[key] = value
    return safe_text(f"{fields.get('oid', 'no oid')}, size {fields.get('size', '?')}", 120)


def _walk_png(source: Source, ctx: ScanContext, root: Node) -> str | None:
    """Chunks up to IEND; anything after it is reported and read (a zip or pickle can hide there)."""
    pos = start = len(_PNG)
    while pos + 8 <= source.size:
        ctx.tick(256)
        length, ctype = struct.unpack(">I4s", source.read(pos, 8))
        start, pos = pos, pos + 12 + length
        if ctype == b"IEND":
            break
    else:
        return None if pos == source.size else f"the chunk at byte {start:,} runs past the end of the file"
    if pos > source.size:
        return f"the chunk at byte {start:,} runs past the end of the file"
    if pos < source.size:
        size = source.size - pos
        node = root.child(DATA, f"bytes after the image ({size:,})", offset=pos, length=size,
                          member=source.member)
        where = f"{source.member or ''}<bytes after the PNG at {pos}>"
        rest = Source.from_bytes(source.read(pos, size), name=where, member=where, path=source.path)
        what = ctx.read_as(rest, node, label="trailing content")
        ctx.report(TrailingData, f"{size:,} bytes after the PNG's IEND chunk; {what}", node=node, offset=pos)
    return None


def _walk_sentencepiece(source: Source, ctx: ScanContext) -> str | None:
    if source.size > MAX_PROTOBUF_BYTES:
        return f"is {source.size:,} bytes, over the {MAX_PROTOBUF_BYTES:,}-byte budget"
    data = source.read(0, source.size)
    pos = 0
    while pos < len(data):
        ctx.tick(1024)
        tag = read_varint(data, pos, len(data))
        if tag is None or tag[0] & 7 != 2 or not 1 <= tag[0] >> 3 <= 5:
            return f"holds an unexpected protobuf field at byte {pos:,}"
        length = read_varint(data, tag[1], len(data))
        if length is None or length[1] + length[0] > len(data):
            return f"a field at byte {pos:,} runs past the end of the file"
        pos = length[1] + length[0]
    return None
