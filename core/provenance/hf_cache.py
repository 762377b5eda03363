"""The Hugging Face cache, read as huggingface_hub lays it out (never through the library).

    <cache>/models--org--name/            (datasets--…, spaces--…)
        blobs/<etag>                      the content: SHA-256 for LFS files, git blob SHA-1 otherwise;
                                          <etag>.incomplete while downloading
        snapshots/<commit>/<path>         symlinks to ../../blobs/<etag> (copies where links are missing)
        refs/<branch or tag>              the commit it points at (refs/main: a floating ref)
        .no_exist/<commit>/<path>         empty markers for files the repository does not have
    <cache>/.locks/models--org--name/<etag>.lock

A scan sees every revision once, each file under its snapshot path, and the blobs no snapshot links
to (orphans, unfinished downloads) under blobs/; lock files, `.no_exist` markers and refs (read as
the revision's names) are not files of the model. Verification checks each file against the hash
its blob is named by: no manifest is needed.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from typing import Any

PREFIXES = ("models--", "datasets--", "spaces--")
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256_NAME = re.compile(r"[0-9a-f]{64}")
MAX_REF_BYTES = 4096
SKIPPED_DIRS = (".no_exist", "refs")


def is_repo_folder(path: str) -> bool:
    name = os.path.basename(os.path.normpath(path))
    return name.startswith(PREFIXES) and (os.path.isdir(os.path.join(path, "snapshots"))
                                          or os.path.isdir(os.path.join(path, "blobs")))


def repo_id(folder_name: str) -> tuple[str, str]:
    """('model' | 'dataset' | 'space', 'org/name') from `models--org--name`."""
    kind, _, rest = folder_name.partition("--")
    return kind.rstrip("s"), rest.replace("--", "/")


def read_refs(repo_folder: str) -> dict[str, list[str]]:
    """commit → the refs naming it (`main`, `v1.0`, `pr/3`), from refs/ (small text files)."""
    return dict(_read_refs(os.path.realpath(repo_folder)))


@functools.lru_cache(maxsize=256)
def _read_refs(repo_folder: str) -> tuple[tuple[str, list[str]], ...]:
    refs: dict[str, list[str]] = {}
    base = os.path.join(repo_folder, "refs")
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as fh:
                    text = fh.read(MAX_REF_BYTES).decode("ascii", "replace").strip()
            except OSError:
                continue
            ref = os.path.relpath(path, base).replace(os.sep, "/")
            refs.setdefault(text, []).append(ref)
    return tuple(refs.items())


def snapshot_files(snapshot: str) -> Iterator[str]:
    """Paths (relative, with /) of the files of one snapshot. Links to folders are not followed."""
    for dirpath, dirnames, filenames in os.walk(snapshot):
        dirnames.sort()
        for name in sorted(filenames):
            yield os.path.relpath(os.path.join(dirpath, name), snapshot).replace(os.sep, "/")


def snapshots(repo_folder: str) -> list[str]:
    try:
        return sorted(e for e in os.listdir(os.path.join(repo_folder, "snapshots"))
                      if os.path.isdir(os.path.join(repo_folder, "snapshots", e)))
    except OSError:
        return []


def linked_blobs(repo_folder: str) -> set[str]:
    """Real paths of the blobs some snapshot file links to."""
    linked = set()
    for revision in snapshots(repo_folder):
        snap = os.path.join(repo_folder, "snapshots", revision)
        for rel in snapshot_files(snap):
            path = os.path.join(snap, rel)
            if os.path.islink(path):
                linked.add(os.path.realpath(path))
    return linked


def blobs(repo_folder: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(repo_folder, "blobs")))
    except OSError:
        return []


def orphan_blobs(repo_folder: str) -> list[str]:
    """Names of blobs no snapshot links to (unfinished `.incomplete` downloads included)."""
    linked = linked_blobs(repo_folder)
    folder = os.path.join(repo_folder, "blobs")
    # Older huggingface_hub versions kept their `<etag>.lock` files here: empty, not content.
    return [name for name in blobs(repo_folder) if not name.endswith(".lock")
            and os.path.realpath(os.path.join(folder, name)) not in linked]


def iter_repo(repo_folder: str) -> Iterator[tuple[str, str]]:
    """(display path, real path) of every file a scan of one repository folder reports."""
    for revision in snapshots(repo_folder):
        snap = os.path.join(repo_folder, "snapshots", revision)
        for rel in snapshot_files(snap):
            path = os.path.join(snap, rel.replace("/", os.sep))
            yield path, path
    for name in orphan_blobs(repo_folder):
        path = os.path.join(repo_folder, "blobs", name)
        yield path, path


def take_repos(dirpath: str, dirnames: list[str]) -> Iterator[tuple[str, str]]:
    """For a folder walk at `dirpath`: the files of every repository folder among `dirnames`, which
    are then removed from `dirnames` (with the cache's `.locks`), so that the walk does not report
    each blob a second time under blobs/."""
    repos = [d for d in dirnames if d.startswith(PREFIXES) and is_repo_folder(os.path.join(dirpath, d))]
    if not repos:
        return
    for name in [*repos, ".locks"]:
        if name in dirnames:
            dirnames.remove(name)
    for name in repos:
        yield from iter_repo(os.path.join(dirpath, name))


def split(path: str) -> tuple[str, str, list[str]] | None:
    """(repository folder, 'snapshots' | 'blobs', the components after it) when `path` lies in a
    repository folder of a cache, else None. Judged from the path's own components."""
    parts = os.path.normpath(path).split(os.sep)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i].startswith(PREFIXES) and parts[i + 1] in ("snapshots", "blobs"):
            return os.sep.join(parts[: i + 1]) or os.sep, parts[i + 1], parts[i + 2 :]
    return None


def describe(path: str) -> dict[str, Any] | None:
    """Where a file of a Hugging Face cache comes from: repo id, revision (the commit) and the refs
    that point at it, or for a blob outside every snapshot, that it is one. None elsewhere."""
    where = split(path)
    if where is None:
        return None
    repo_folder, area, rest = where
    if not rest:
        return None
    kind, rid = repo_id(os.path.basename(repo_folder))
    info: dict[str, Any] = {"repo_id": rid, "repo_type": kind}
    if area == "snapshots":
        revision = rest[0]
        refs = read_refs(repo_folder).get(revision, [])
        info.update(revision=revision, refs=refs, file="/".join(rest[1:]))
    else:
        info.update(blob=rest[0], in_snapshot=False, incomplete=rest[0].endswith(".incomplete"))
    return info


def expected_hash(blob_name: str) -> tuple[str, str] | None:
    """('sha256' | 'git-sha1', hex) that a blob's content must have, from its name."""
    if SHA256_NAME.fullmatch(blob_name):
        return "sha256", blob_name
    if COMMIT.fullmatch(blob_name):
        return "git-sha1", blob_name
    return None


def provenance_line(path: str) -> str | None:
    """One line for a view about where a file of a Hugging Face cache comes from, with its
    snapshot's signature state (no key: "signed, not verified" or "unsigned"). None elsewhere."""
    info = describe(path)
    if info is None:
        return None
    if "revision" not in info:
        return f"Hugging Face {info['repo_id']}: blob {info['blob'][:16]}…, not in any snapshot"
    refs = f" ({', '.join(info['refs'])})" if info["refs"] else " (no ref points at it)"
    where = split(path)
    assert where is not None
    from airlock.core.provenance.signing import state_without_key

    snapshot = os.path.join(where[0], "snapshots", info["revision"])
    return (f"Hugging Face {info['repo_id']} @ {info['revision'][:12]}{refs} · "
            f"{state_without_key(snapshot).summary()}")
