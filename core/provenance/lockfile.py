"""`airlock.lock`: a TOML file pinning files by hash and Hugging Face repositories by commit.

    version = 1                      # the lock's schema; a newer one is refused, never guessed at
    airlock_version = "0.1.0"
    policy_digest = "<sha256>"       # the effective policy the verdicts were given under

    [[repository]]                   # one per Hugging Face repository revision found
    repo_id = "org/name"
    repo_type = "model"
    revision = "<40-hex commit>"     # a branch or tag here is reported (medium) by verify
    refs = ["main"]

    [[file]]
    path = "models--org--name/snapshots/<commit>/model.safetensors"   # relative to the lock's folder
    size = 1234
    sha256 = "<sha256>"
    format = "safetensors"
    verdict = "none"
    findings_digest = "<sha256>"
    repo_id = "org/name"             # files of a Hugging Face cache
    revision = "<commit>"

Written with tomli-w (escaping handled by a kept library), read with tomllib.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any

from airlock.core.errors import AirlockError

LOCK_VERSION = 1
DEFAULT_NAME = "airlock.lock"
MAX_LOCK_BYTES = 256 * 1024 * 1024
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")


class LockError(AirlockError):
    """A lock file that cannot be used: unreadable, not TOML, malformed or from a newer Airlock."""


class Lock:
    __slots__ = ("airlock_version", "files", "path", "policy_digest", "repositories", "version")

    def __init__(self, path: str, version: int, airlock_version: str, policy_digest: str,
                 files: list[dict[str, Any]], repositories: list[dict[str, Any]]) -> None:
        self.path = path
        self.version = version
        self.airlock_version = airlock_version
        self.policy_digest = policy_digest
        self.files = files
        self.repositories = repositories

    @property
    def folder(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))


def relative_name(path: str, folder: str) -> tuple[str, str | None]:
    """(path relative to the lock's folder with /, base64 of its bytes when it is not UTF-8)."""
    rel = os.path.relpath(os.path.abspath(path), folder).replace(os.sep, "/")
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # a name made of bytes (surrogate-escaped): keep the bytes too
        raw = os.fsencode(rel)
        return raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode("ascii")
    return rel, None


def file_entry(entry: dict[str, Any], real: str, folder: str, findings_digest: str) -> dict[str, Any]:
    """The lock's record of one scanned file (a JSON report entry with sha256 and size)."""
    rel, raw = relative_name(real, folder)
    record: dict[str, Any] = {"path": rel}
    if raw is not None:
        record["path_b64"] = raw
    record.update(size=entry["size"], sha256=entry["sha256"], format=entry["format"],
                  verdict=entry["severity"], findings_digest=findings_digest)
    hf = entry.get("huggingface")
    if hf and "revision" in hf:
        record.update(repo_id=hf["repo_id"], revision=hf["revision"])
    return record


def repositories(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries:
        hf = entry.get("huggingface")
        if hf and "revision" in hf:
            key = (hf["repo_id"], hf["revision"])
            seen.setdefault(key, {"repo_id": hf["repo_id"], "repo_type": hf["repo_type"],
                                  "revision": hf["revision"], "refs": list(hf.get("refs", []))})
    return [seen[k] for k in sorted(seen)]


def render(files: list[dict[str, Any]], repos: list[dict[str, Any]], *, airlock_version: str,
           policy_digest: str) -> str:
    import tomli_w

    doc: dict[str, Any] = {"version": LOCK_VERSION, "airlock_version": airlock_version,
                           "policy_digest": policy_digest}
    if repos:
        doc["repository"] = repos
    doc["file"] = sorted(files, key=lambda f: f["path"])
    header = ("# Written by `airlock lock`: files pinned by SHA-256, Hugging Face repositories by commit.\n"
              "# Commit it; CI checks it with `airlock verify --lock airlock.lock`.\n")
    return header + tomli_w.dumps(doc)


def write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read(path: str) -> Lock:
    import tomllib

    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_LOCK_BYTES + 1)
    except OSError as exc:
        raise LockError(f"cannot read the lock file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_LOCK_BYTES:
        raise LockError(f"{path}: larger than {MAX_LOCK_BYTES:,} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise LockError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"{path}: not valid TOML: {exc}") from None
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise LockError(f"{path}: no lock version (expected `version = {LOCK_VERSION}`)")
    if version > LOCK_VERSION:
        raise LockError(f"{path} was written by a newer Airlock ({data.get('airlock_version', '?')}, lock "
                        f"version {version}); this one reads lock version {LOCK_VERSION}: upgrade Airlock")
    files = data.get("file", [])
    repos = data.get("repository", [])
    if not isinstance(files, list) or not isinstance(repos, list):
        raise LockError(f"{path}: `file` and `repository` must be arrays of tables")
    seen: dict[str, tuple[int, str]] = {}
    for i, record in enumerate(files, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise LockError(f"{path}: [[file]] number {i} has no path")
        if not isinstance(record.get("sha256"), str) or not SHA256.fullmatch(record["sha256"]):
            raise LockError(f"{path}: [[file]] number {i} ({record['path']}) has no valid sha256")
        # One pin per file: with two, whichever was kept would pass what the other says was locked.
        key = str(record.get("path_b64") or record["path"])
        first = seen.setdefault(key, (i, record["sha256"]))
        if first[1] != record["sha256"]:
            raise LockError(f"{path}: [[file]] number {i} ({record['path']}) pins another sha256 than "
                            f"[[file]] number {first[0]} for the same file")
    for i, record in enumerate(repos, start=1):
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str)
                                                   for k in ("repo_id", "revision")):
            raise LockError(f"{path}: [[repository]] number {i} needs repo_id and revision")
    return Lock(path, version, str(data.get("airlock_version", "")), str(data.get("policy_digest", "")),
                files, repos)


def record_path(record: dict[str, Any], folder: str) -> str:
    """Where a [[file]] record's file is on this machine."""
    if isinstance(record.get("path_b64"), str):
        rel = os.fsdecode(base64.b64decode(record["path_b64"]))
    else:
        rel = str(record["path"])
    return os.path.normpath(os.path.join(folder, rel.replace("/", os.sep)))
