"""Values in a Keras config that make the loader read something besides the config.

Two kinds, both judged for every string the config walk (keras_config.ConfigWalker) meets:

- Embedded serialized objects. keras' `TorchModuleWrapper.get_config()` stores `torch.save(module)`
  as base64 in `config.module`, and its `from_config()` hands the decoded bytes to
  `torch.load(weights_only=False)` (refused in safe mode, run with `safe_mode=False`); custom layers
  do the same with pickles. A string that is base64 or hex of a pickle, a zip (torch checkpoint),
  compressed data, HDF5, NumPy or GGUF is decoded, charged to the file's decompression budget, and
  scanned as a nested source, so a payload inside is judged like a file of its own.
- File paths and URLs in layer arguments: `StringLookup` / `IntegerLookup` / `TextVectorization`
  read a string `vocabulary` as a file when the layer is built (through `tf.io.gfile`, which also
  opens `gs://`, `s3://` and `hdfs://`), keras-hub tokenizers read `vocabulary`, `merges` and `proto`
  the same way, and `keras.utils.get_file` fetches `origin` into `fname`. A path outside the archive
  (absolute, `~`, climbing with `..`, or not among the archive's members) is read from the loading
  machine; a URL is fetched.
"""

from __future__ import annotations

import base64
import binascii
import re

from airlock.core.context import ScanContext
from airlock.core.findings import Rule, Severity
from airlock.core.pickle.opcodes import PROTO
from airlock.core.pickle.probe import looks_like_pickle, probe
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import DATA, Node


class EmbeddedObject(Rule):
    id = "KRS006"
    severity = Severity.MEDIUM
    title = "Serialized object embedded in a Keras config"
    help = ("A config value is base64 or hex of a pickle, torch checkpoint, zip or other serialized "
            "file: TorchModuleWrapper (and custom layers) deserialize such blobs with torch.load or "
            "pickle when the model loads. Its content is scanned as a nested file.")


class PathOutsideArchive(Rule):
    id = "KRS007"
    severity = Severity.HIGH
    title = "Keras config reads a file outside the model"
    help = ("A layer argument that Keras opens as a file (a lookup layer's vocabulary, a tokenizer's "
            "merges or proto, get_file's fname) names a path outside the archive: loading reads that "
            "file from the loading machine, or fails when it is missing.")


class UrlInConfig(Rule):
    id = "KRS008"
    severity = Severity.MEDIUM
    title = "Keras config names a URL"
    help = "A layer argument is a URL: the loader that acts on it fetches it when the model loads."


# Argument names whose string value Keras (or keras-hub) opens as a file or fetches.
PATH_KEYS = frozenset({
    "vocabulary", "vocabulary_file", "vocab_file", "vocab_path", "merges", "merges_file", "proto",
    "spm_model_file", "tokenizer_file", "origin", "fname", "filepath", "file_path", "cache_dir",
    "cache_subdir",
})
READ_KEYS = frozenset({"vocabulary", "vocabulary_file", "vocab_file", "vocab_path", "merges", "merges_file",
                       "proto", "spm_model_file", "tokenizer_file"})
# Argument names that hold a path only when the value looks like one.
LOOSE_PATH_KEYS = frozenset({"path", "filename", "file", "directory", "dir"})
ARGUMENT_KEYS = PATH_KEYS | LOOSE_PATH_KEYS
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{1,15})://\S+")
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")

MIN_BLOB_CHARS = 32  # the shortest os.system pickle is ~28 base64 characters
_HEX = re.compile(r"[0-9A-Fa-f]+")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_B64_URLSAFE = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_HEAD_CHARS = 5464  # base64 characters of the first 4,096 bytes
_MAGICS = (
    (b"PK\x03\x04", "a zip (a torch checkpoint, .keras or .npz)"), (b"PK\x05\x06", "an empty zip"),
    (b"\x1f\x8b", "gzip data"), (b"BZh", "bzip2 data"), (b"\xfd7zXZ\x00", "xz data"),
    (b"\x04\x22\x4d\x18", "lz4 data"), (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"\x89HDF\r\n\x1a\n", "HDF5"), (b"\x93NUMPY", "a NumPy array"), (b"GGUF", "a GGUF file"),
)


def classify_path(value: str, members: frozenset[str] | None) -> tuple[str, str] | None:
    """("url", scheme) or ("outside", why) for a string an argument opens; None when it stays inside."""
    url = _URL.fullmatch(value)
    if url is not None:
        scheme = url.group(1).lower()
        if scheme != "file":
            return "url", scheme
        value = value[len("file://"):]
    if value.startswith(("/", "\\", "~")) or _DRIVE.match(value):
        return "outside", "an absolute path on the loading machine"
    parts: list[str] = []
    for part in re.split(r"[\\/]", value):
        if part == "..":
            if not parts:
                return "outside", "a relative path that climbs out of the model's folder"
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    inside = "/".join(parts)
    if members is not None and inside and (inside in members or any(m.startswith(inside + "/")
                                                                     for m in members)):
        return None
    where = "in this archive" if members is not None else "in the file"
    return "outside", f"a relative path that is not {where} (resolved against the loader's working directory)"


def looks_like_path(value: str) -> bool:
    return bool(_URL.fullmatch(value)) or "/" in value or "\\" in value or value.startswith("~")


def decoded_head(value: str) -> tuple[str, str, int] | None:
    """(encoding, compact text, decoded size) when the string is base64 or hex; None otherwise."""
    if len(value) < MIN_BLOB_CHARS:
        return None
    compact = value.replace("\n", "").replace("\r", "")
    if len(compact) % 2 == 0 and _HEX.fullmatch(compact):
        return "hex", compact, len(compact) // 2
    if len(compact) % 4 == 0 and _B64.fullmatch(compact):
        return "base64", compact, len(compact) // 4 * 3 - (len(compact) - len(compact.rstrip("=")))
    if len(compact) % 4 == 0 and _B64_URLSAFE.fullmatch(compact):
        return "urlsafe base64", compact, len(compact) // 4 * 3 - (len(compact) - len(compact.rstrip("=")))
    return None


def _decode(encoding: str, text: str) -> bytes:
    if encoding == "hex":
        return bytes.fromhex(text)
    if encoding == "base64":
        return base64.b64decode(text, validate=True)
    return base64.urlsafe_b64decode(text)


def what_it_holds(head: bytes, size: int) -> str | None:
    """What the first decoded bytes start, if it is a serialized format a loader deserializes."""
    for magic, what in _MAGICS:
        if head.startswith(magic):
            return what
    if head[:1] == bytes([PROTO]):
        return "a pickle" if looks_like_pickle(head) >= 60 else None
    # A protocol 0/1 stream: run it on the symbolic machine (a window of the whole if it is longer).
    return "a pickle" if probe(head, 0, len(head), size) >= 40 else None


def scan_blob(value: str, where: str, ctx: ScanContext, node: Node, member: str | None,
              torch_wrapper: bool) -> bool:
    """Decode and scan the string if it is an encoded serialized object. True when it was one."""
    found = decoded_head(value)
    if found is None:
        return False
    encoding, text, size = found
    chars = _HEAD_CHARS if encoding != "hex" else 8192
    try:
        head = _decode(encoding, text[:chars])
    except (binascii.Error, ValueError):
        return False
    what = what_it_holds(head, size)
    if what is None:
        return False
    ctx.charge_decompressed(size, f"the {encoding} blob at {where}")
    try:
        data = _decode(encoding, text)
    except (binascii.Error, ValueError):
        return False
    label = f"{encoding} blob ({len(data):,} bytes)"
    blob = node.child(DATA, label, member=member, attrs={"encoding": encoding, "size": len(data)})
    consequence = ("TorchModuleWrapper.from_config runs torch.load(weights_only=False) on it when the model "
                   "loads with safe_mode=False (Keras refuses it in safe mode)" if torch_wrapper else
                   "a layer that decodes it (TorchModuleWrapper, or custom code) deserializes it at load")
    ctx.report(EmbeddedObject, f"{where} holds {len(data):,} bytes of {encoding} that decode to {what}: "
               f"{consequence}; scanned below", node=blob)
    ctx.parse_nested(Source.from_bytes(data, name=label, member=member), blob, label=safe_text(label, 80))
    return True


def judge_path(key: str, value: str, where: str, ctx: ScanContext, node: Node,
               members: frozenset[str] | None) -> None:
    """KRS007 / KRS008 for a string argument Keras opens as a file or fetches."""
    url = _URL.fullmatch(value)
    fetched = url is not None and url.group(1).lower() != "file"  # a URL is judged under any name
    if key not in PATH_KEYS and not (key in LOOSE_PATH_KEYS and looks_like_path(value)) and not fetched:
        return
    verdict = classify_path(value, members)
    if verdict is None:
        return
    kind, why = verdict
    shown = safe_text(value, 200)
    if kind == "url":
        ctx.report(UrlInConfig, f"{where}: {safe_text(key, 60)} is the {why} URL {shown!r}: a loader that "
                   "acts on this argument fetches it when the model loads", node=node)
    else:
        action = ("the loader reads that file when the layer is rebuilt (and fails if it is missing)"
                  if key in READ_KEYS else "the loader reads or writes that path when it acts on it")
        ctx.report(PathOutsideArchive, f"{where}: {safe_text(key, 60)} names {shown!r}, {why}: {action}",
                   node=node)
