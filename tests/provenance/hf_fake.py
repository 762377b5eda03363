"""A Hugging Face cache built the way huggingface_hub builds one, with its own helpers.

`repo_folder_name`, `_create_symlink` (relative links into ../../blobs) and
`_cache_commit_hash_for_specific_revision` (refs/<name> holding the commit) come from
huggingface_hub.file_download; the blob naming follows hf_hub_download: an LFS file's blob is named
by its SHA-256, any other file's by its git blob SHA-1. Lock files go to <cache>/.locks/<repo>/, files
the repository lacks get an empty `.no_exist/<commit>/<name>` marker, an unfinished download is
`blobs/<etag>.incomplete`. Nothing touches the network.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
from pathlib import Path

from huggingface_hub.file_download import (
    _cache_commit_hash_for_specific_revision,
    _create_symlink,
    repo_folder_name,
)

COMMIT_1 = "1" * 8 + "a" * 32
COMMIT_2 = "2" * 8 + "b" * 32
_CMD = b"echo AIRLOCK_MARKER"
EVIL = b"\x80\x02cposix\nsystem\nq\x00X" + struct.pack("<I", len(_CMD)) + _CMD + b"q\x01\x85q\x02Rq\x03."


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def safetensors_bytes(n: int = 4) -> bytes:
    header = b'{"w":{"dtype":"F32","shape":[%d],"data_offsets":[0,%d]}}' % (n, 4 * n)
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"\0" * (4 * n)


def add_file(cache: Path, repo_id: str, commit: str, name: str, data: bytes, *, lfs: bool,
             revision: str | None = None, repo_type: str = "model") -> Path:
    """What hf_hub_download leaves behind for one file; returns the snapshot path."""
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    etag = hashlib.sha256(data).hexdigest() if lfs else git_sha1(data)
    blob = storage / "blobs" / etag
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    lock = cache / ".locks" / storage.name / f"{etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    pointer = storage / "snapshots" / commit / name
    pointer.parent.mkdir(parents=True, exist_ok=True)
    _create_symlink(str(blob), str(pointer), new_blob=True)
    if revision is not None:
        _cache_commit_hash_for_specific_revision(str(storage), revision, commit)
    return pointer


def build(cache: Path) -> dict[str, Path]:
    """Two repositories: org/model at two revisions (main → COMMIT_2, v1.0 → COMMIT_1) sharing a
    blob, with an orphan blob, an unfinished download and a `.no_exist` marker; and org/evil whose
    pickle is hostile."""
    cache.mkdir(parents=True, exist_ok=True)
    config = b'{"model_type": "bert", "hidden_size": 4}\n'
    weights1 = safetensors_bytes(4)
    weights2 = safetensors_bytes(8)
    paths = {
        "config1": add_file(cache, "org/model", COMMIT_1, "config.json", config, lfs=False, revision="v1.0"),
        "weights1": add_file(cache, "org/model", COMMIT_1, "model.safetensors", weights1, lfs=True),
        "config2": add_file(cache, "org/model", COMMIT_2, "config.json", config, lfs=False, revision="main"),
        "weights2": add_file(cache, "org/model", COMMIT_2, "model.safetensors", weights2, lfs=True),
        "nested": add_file(cache, "org/model", COMMIT_2, "onnx/notes.txt", b"weights notes\n", lfs=False),
        "evil": add_file(cache, "org/evil", COMMIT_1, "pytorch_model.pkl", EVIL, lfs=True, revision="main"),
    }
    storage = cache / repo_folder_name(repo_id="org/model", repo_type="model")
    orphan = pickle.dumps({"old": 1}, protocol=4)
    (storage / "blobs" / hashlib.sha256(orphan).hexdigest()).write_bytes(orphan)
    (storage / "blobs" / (hashlib.sha256(b"partial").hexdigest() + ".incomplete")).write_bytes(b"par")
    marker = storage / ".no_exist" / COMMIT_2 / "tokenizer.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    paths["storage"] = storage
    paths["orphan"] = storage / "blobs" / hashlib.sha256(orphan).hexdigest()
    paths["incomplete"] = storage / "blobs" / (hashlib.sha256(b"partial").hexdigest() + ".incomplete")
    return paths


def tamper(pointer: Path, data: bytes) -> Path:
    """Overwrite the blob a snapshot file links to (what an attacker with cache access does)."""
    blob = Path(os.path.realpath(pointer))
    blob.write_bytes(data)
    return blob
