"""`airlock verify`: is this the file that was recorded, reviewed or signed? Findings, as `scan` gives.

Always (no key needed): a Hugging Face cache's files against their blob names, sharded checkpoint
indexes against their shards, and whether a folder is signed. With `--manifest`: SHA256SUMS lines.
With `--lock`: the lock's hashes, files and revision pins (and a rescan, to tell when the findings
changed). With `--key`/`--cert`: the OpenSSF model signature. The result is a list of report
entries (path, format, severity, findings) for the text, JSON and SARIF writers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from airlock.core.findings import Rule, Severity
from airlock.core.provenance import hashing, hf_cache, manifest, shards, signing
from airlock.core.provenance.rules import (
    CacheLayout,
    ContentMismatch,
    ExtraFile,
    FileMissing,
    FloatingPin,
    NotInAnySnapshot,
    RevisionMismatch,
    SignatureInvalid,
    SignedNotVerified,
    Unsigned,
    Unverifiable,
)
from airlock.core.text import safe_text

# Files that describe a folder rather than belong to the model: never "extra".
NEVER_EXTRA = ("airlock.lock", signing.DEFAULT_NAME, "SHA256SUMS", "sha256sums.txt")
SKIPPED_DIRS = (".git", ".locks", ".no_exist", "refs")


class Report:
    """Report entries by path, in the order they were first seen."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def file(self, path: str, kind: str = "file") -> dict[str, Any]:
        # One entry per file however a check spells its path (a lock's records are absolute, the
        # cache check uses the path given): shown as first seen.
        key = os.path.normpath(os.path.abspath(path))
        entry = self.entries.get(key)
        if entry is None:
            entry = {"path": path, "format": kind, "severity": "none", "findings": []}
            self.entries[key] = entry
        return entry

    def add(self, path: str, rule: type[Rule], message: str, severity: Severity | None = None,
            kind: str = "file") -> None:
        entry = self.file(path, kind)
        level = (severity or rule.severity).label
        entry["findings"].append({"rule": rule.id, "severity": level, "message": safe_text(message, 2000),
                                  "offset": None, "member": None, "node": None})
        if Severity.parse(level) > Severity.parse(entry["severity"]):
            entry["severity"] = level

    def result(self) -> list[dict[str, Any]]:
        return list(self.entries.values())


def walk(path: str) -> list[str]:
    """Regular files under a path (the path itself for a file), sorted, skipping git and cache
    bookkeeping folders."""
    if not os.path.isdir(path):
        return [path]
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        out += [os.path.join(dirpath, name) for name in sorted(filenames)]
    return out


def repo_folders(path: str) -> list[str]:
    """Hugging Face repository folders at or under `path`, or the one a snapshot path lies in."""
    where = hf_cache.split(os.path.join(path, "x"))
    if where is not None:
        return [where[0]]
    if hf_cache.is_repo_folder(path):
        return [path]
    found = []
    for dirpath, dirnames, _ in os.walk(path):
        dirnames.sort()
        for name in list(dirnames):
            if name.startswith(hf_cache.PREFIXES) and hf_cache.is_repo_folder(os.path.join(dirpath, name)):
                found.append(os.path.join(dirpath, name))
                dirnames.remove(name)
    return found


def check_hf_repo(repo: str, report: Report, only_snapshot: str | None = None) -> None:
    """Every snapshot file against its blob's name; orphan blobs against their own names."""
    blobs = os.path.realpath(os.path.join(repo, "blobs"))
    jobs: list[tuple[str, str, str, str]] = []  # (shown path, real file, algorithm, expected)
    links = _links_to_blobs(repo)
    for revision in hf_cache.snapshots(repo):
        if only_snapshot is not None and revision != only_snapshot:
            continue
        snap = os.path.join(repo, "snapshots", revision)
        if not hf_cache.COMMIT.fullmatch(revision):
            report.add(snap, CacheLayout, f"snapshot folder {revision!r} is not named by a 40-hex commit")
        for rel in hf_cache.snapshot_files(snap):
            shown = os.path.join(snap, rel.replace("/", os.sep))
            report.file(shown)
            if not os.path.islink(shown):
                if links and not _confirmed(report, shown):
                    # huggingface_hub links every file where the file system allows it (else it copies
                    # them all): one plain file among links was replaced after the download (an edit,
                    # `sed -i`, a swap), and nothing can check it.
                    report.add(shown, CacheLayout, "a plain file where this repository's other snapshot "
                                                   "files link to their blobs: replaced after the download, "
                                                   "and no blob name can check it")
                else:
                    report.add(shown, Unverifiable, "a copy, not a link to a blob: no blob name to check it "
                                                    "against")
                continue
            target = os.path.realpath(shown)
            if os.path.dirname(target) != blobs:
                report.add(shown, CacheLayout, f"links outside its repository's blobs/: to {target}")
                continue
            if not os.path.exists(target):
                report.add(shown, FileMissing, f"its blob {os.path.basename(target)} is missing "
                                               f"(dangling link)")
                continue
            _expect(shown, target, os.path.basename(target), report, jobs)
    if only_snapshot is None:
        for name in hf_cache.orphan_blobs(repo):
            shown = os.path.join(repo, "blobs", name)
            what = "an unfinished download" if name.endswith(".incomplete") else "an orphan blob"
            report.add(shown, NotInAnySnapshot, f"not in any snapshot: {what}")
            if not name.endswith(".incomplete"):
                _expect(shown, shown, name, report, jobs)
    _run_hash_jobs(jobs, report)


def _confirmed(report: Report, path: str) -> bool:
    """Whether a lock or manifest checked earlier found this file's content as recorded."""
    entry = report.entries.get(os.path.normpath(os.path.abspath(path)))
    return (entry is not None and "sha256" in entry
            and not any(f["rule"] == ContentMismatch.id for f in entry["findings"]))


def _links_to_blobs(repo: str) -> bool:
    """Whether huggingface_hub linked this repository's snapshot files to blobs (it copies only where
    the file system has no symbolic links, and then it copies every file)."""
    for revision in hf_cache.snapshots(repo):
        snap = os.path.join(repo, "snapshots", revision)
        if any(os.path.islink(os.path.join(snap, rel.replace("/", os.sep)))
               for rel in hf_cache.snapshot_files(snap)):
            return True
    return False


def check_hf_file(path: str, report: Report) -> bool:
    """One file given on its own: checked against its blob name when it lies in a cache snapshot."""
    where = hf_cache.split(path)
    if where is None or where[1] != "snapshots":
        return False
    blobs = os.path.realpath(os.path.join(where[0], "blobs"))
    report.file(path)
    target = os.path.realpath(path)
    if not os.path.islink(path) and _links_to_blobs(where[0]) and not _confirmed(report, path):
        report.add(path, CacheLayout, "a plain file where this repository's other snapshot files link to "
                                      "their blobs: replaced after the download, and no blob name can "
                                      "check it")
    elif not os.path.islink(path):
        report.add(path, Unverifiable, "a copy, not a link to a blob: no blob name to check it against")
    elif os.path.dirname(target) != blobs:
        report.add(path, CacheLayout, f"links outside its repository's blobs/: to {target}")
    else:
        jobs: list[tuple[str, str, str, str]] = []
        _expect(path, target, os.path.basename(target), report, jobs)
        _run_hash_jobs(jobs, report)
    return True


def _expect(shown: str, real: str, blob_name: str, report: Report,
            jobs: list[tuple[str, str, str, str]]) -> None:
    expected = hf_cache.expected_hash(blob_name)
    if expected is None:
        report.add(shown, Unverifiable, f"blob {blob_name!r} is not named by a SHA-256 or git SHA-1")
        return
    jobs.append((shown, real, expected[0], expected[1]))


def _run_hash_jobs(jobs: list[tuple[str, str, str, str]], report: Report) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(job: tuple[str, str, str, str]) -> tuple[str | None, str]:
        _, real, algorithm, _ = job
        try:
            digest = (hashing.sha256_file(real) if algorithm == "sha256" else hashing.git_blob_sha1(real))[0]
        except OSError as exc:
            return None, exc.strerror or str(exc)
        return digest, ""

    workers = hashing.default_jobs([j[1] for j in jobs])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for job, (digest, error) in zip(jobs, pool.map(one, jobs), strict=True):
            shown, _, algorithm, expected = job
            entry = report.file(shown)
            if digest is None:
                report.add(shown, FileMissing, f"cannot be read: {error}")
            elif digest != expected:
                report.add(shown, ContentMismatch, f"content does not match its blob name: expected "
                                                   f"{algorithm} "
                           f"{expected}, found {digest}")
            elif algorithm == "sha256":
                entry["sha256"] = digest


def check_manifest(path: str, scope: list[str], report: Report) -> None:
    """SHA256SUMS: every line's file present with that hash; files under `scope` it does not list
    are extra. Raises ManifestError for a line that does not parse."""
    with open(path, "rb") as fh:
        data = fh.read(manifest.MAX_MANIFEST_BYTES + 1)
    if len(data) > manifest.MAX_MANIFEST_BYTES:
        raise manifest.ManifestError(f"{path}: larger than {manifest.MAX_MANIFEST_BYTES:,} bytes")
    entries = manifest.parse(data, path)
    folder = os.path.dirname(os.path.abspath(path))
    listed: dict[str, tuple[str, str]] = {}
    lines: dict[str, int] = {}
    for e in entries:
        name = os.fsdecode(e.name)
        real = name if os.path.isabs(name) else os.path.join(folder, name)
        key = os.path.normpath(os.path.abspath(real))
        if key in listed and listed[key][1] != e.sha256:
            # `sha256sum -c` checks both lines and one fails; keeping either would pass what the
            # other line says was reviewed.
            raise manifest.ManifestError(f"{path}, line {e.line}: {safe_text(name, 200)} is listed again "
                                         f"with another sha256 (line {lines[key]}): a manifest gives one "
                                         f"hash per file")
        listed[key] = (real, e.sha256)
        lines.setdefault(key, e.line)
    present = [(real, sha) for real, sha in listed.values() if os.path.isfile(real)]
    for real, _ in listed.values():
        if not os.path.isfile(real):
            hint = ""
            name = os.path.relpath(real, folder)
            if not os.path.isabs(name) and os.path.isfile(name):  # present under the current folder instead
                hint = (f" (names in a manifest are relative to its own folder, {folder}; {name} exists "
                        "under the current folder: keep the manifest beside the files it lists, as "
                        "`sha256sum -c` is run)")
            report.add(real, FileMissing, f"listed in {os.path.basename(path)} but missing{hint}")
    for (real, sha), got in zip(present, hashing.hash_files([r for r, _ in present]), strict=True):
        entry = report.file(real)
        if got.sha256 is None:
            report.add(real, FileMissing, f"cannot be read: {got.error}")
        elif got.sha256 != sha:
            report.add(real, ContentMismatch, f"content does not match {os.path.basename(path)}: "
                                              f"expected sha256 "
                       f"{sha}, found {got.sha256}")
        else:
            entry["sha256"], entry["size"] = got.sha256, got.size
    ignore = {os.path.normpath(os.path.abspath(path))}
    _extras(scope, set(listed) | ignore, report, f"not listed in {os.path.basename(path)}")


def model_files(path: str) -> list[str]:
    """The files a scan or `airlock lock` of `path` lists: in a Hugging Face cache each revision's
    files under their snapshot paths and only the blobs no snapshot links to (a linked blob is the
    snapshot file itself, not an extra one); `.git`, `.locks`, `.no_exist` and `refs/` left out."""
    from airlock.core.scan import iter_files

    return [shown for shown, _ in iter_files(path)]


def outside_snapshots(path: str) -> bool:
    """A blob of a Hugging Face cache that no snapshot links to (an orphan, an unfinished download): no
    revision holds it and nothing loads it through the cache. Never pinned, never "extra"; the cache
    check reports it (info, "not in any snapshot")."""
    where = hf_cache.split(path)
    return where is not None and where[1] == "blobs"


def not_pinned(path: str) -> bool:
    """Files a lock never pins and never counts as extra: blobs outside every snapshot, and the download
    bookkeeping huggingface_hub keeps in a `--local-dir` folder (`.cache/huggingface/download/*.lock` and
    `*.metadata`, rewritten by each download: pinned, a re-download would read as tampering)."""
    if outside_snapshots(path):
        return True
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    return any(parts[i:i + 2] == [".cache", "huggingface"] and parts[i + 2] in LOCAL_DIR_BOOKKEEPING
               for i in range(len(parts) - 2))


LOCAL_DIR_BOOKKEEPING = ("download", "upload", ".gitignore")


def _extras(scope: list[str], known: set[str], report: Report, why: str) -> None:
    for root in scope:
        for file in model_files(root):
            full = os.path.normpath(os.path.abspath(file))
            if (full in known or os.path.basename(file) in NEVER_EXTRA or not_pinned(file)
                    or not counts_as_extra(file)):
                continue
            report.add(file, ExtraFile, why)


def counts_as_extra(path: str) -> bool:
    """Model and configuration files count; READMEs, licences, other text and images do not. Judged by
    a model or config extension, else by content: a sniffed model format, or content no format
    recognises (fail closed: nothing shows it harmless); known-inert content (text, images) and empty
    files under other names do not count."""
    ext = os.path.splitext(path)[1].lower()
    name = os.path.basename(path).upper()
    text_name = ext in (".md", ".txt", ".rst") or name.startswith(("LICENSE", "LICENCE", "README"))
    if ext in CONFIG_EXTENSIONS and not text_name:
        return True
    from airlock.core import formats
    from airlock.core.dispatch import sniff
    from airlock.core.source import Source

    if not text_name and formats.known_extensions().get(ext, INERT) != INERT:  # a model format's extension
        return True
    try:
        with Source.open(path) as source:
            if source.size == 0:
                return False  # nothing a loader could load; an empty model-named file was counted above
            module, _ = sniff(source)
    except OSError:
        return True
    if text_name:
        # A name never lowers a verdict: a README or notes.txt holding a pickle is a model file added
        # after the lock; one holding text, a model card's front matter or anything unrecognised is not.
        from airlock.core.review.gate import NOT_MODELS

        return module is not None and module.NAME not in NOT_MODELS and module.NAME != INERT
    return module is None or module.NAME != INERT


INERT = "inert"  # the format module of known-inert content (text, images, SentencePiece, LFS pointers)


CONFIG_EXTENSIONS = (".json", ".yaml", ".yml", ".toml", ".py", ".jinja", ".model", ".tiktoken", ".cfg",
                     ".ini",
                     ".msgpack", ".pb", ".tflite", ".mlmodel", ".bin", ".pt", ".pth", ".ckpt", ".safetensors")


def check_shards(scope: list[str], report: Report) -> None:
    for root in scope:
        for file in walk(root):
            if shards.is_index(os.path.basename(file)):
                report.file(file)
                for rule, message in shards.check(file):
                    report.add(file, rule, message)


def check_signature(folder: str, report: Report, *, key: str | None, certs: list[str] | None,
                    signature: str | None, require: bool) -> signing.SignatureResult:
    """Raises signing.BadKey for a key that cannot be used."""
    result = signing.verify(folder, key=key, certs=certs, signature=signature)
    shown = result.signature or signing.signature_path(folder, signature)
    raise_to = Severity.HIGH if require else None
    if result.state == "unsigned":
        if key or certs:  # asked to verify a signature that is not there: never a pass
            given = "key" if key else "certificate chain"
            report.add(folder, Unsigned, f"no model signature ({os.path.basename(shown)}): unsigned, so the "
                       f"{given} given verifies nothing", severity=Severity.HIGH, kind="folder")
        else:
            report.add(folder, Unsigned, "no model signature (model.sig): unsigned", severity=raise_to,
                       kind="folder")
    elif result.state == "not-verified":
        report.add(shown, SignedNotVerified, "signed, not verified: give --key or --cert to verify the "
                                             "signature",
                   severity=raise_to, kind="signature")
    elif result.state == "invalid":
        report.add(shown, SignatureInvalid, f"signature does not verify: {result.message}", kind="signature")
    elif result.state == "mismatch":
        for rel, signed, actual in result.changed:
            report.add(os.path.join(folder, rel), ContentMismatch, f"changed since it was signed by "
                                                                   f"{result.signer}: "
                       f"signed sha256 {signed}, found {actual}")
        for rel in result.added:
            report.add(os.path.join(folder, rel), ExtraFile, f"added after signing: not in the "
                                                             f"signature of {result.signer}")
        for rel in result.removed:
            report.add(os.path.join(folder, rel), FileMissing, f"removed after signing: signed by "
                                                               f"{result.signer}")
    else:
        report.file(shown, "signature")
    return result


def check_lock(lock: Any, scope: list[str], report: Report,
               rescan: Callable[[list[tuple[str, str]]], list[dict[str, Any]]] | None) -> None:
    """Files changed, missing or extra against the lock; revisions against its pins; findings
    digests against a rescan (`rescan` returns report entries with `findings_digest`)."""
    from airlock.core.provenance import lockfile
    from airlock.core.provenance.rules import Rescan

    listed: dict[str, dict[str, Any]] = {}
    in_caches = _cache_files(scope)
    for record in lock.files:
        path = lockfile.record_path(record, lock.folder)
        # A Hugging Face cache lies elsewhere on each machine (~/.cache/huggingface/hub): a file of one is
        # found by its repository, revision and name in the cache being verified, wherever that is.
        path = in_caches.get(_cache_key(path) or ("",), path)
        listed[os.path.normpath(os.path.abspath(path))] = record
    present = [(p, r) for p, r in listed.items() if os.path.isfile(p)]
    for path in listed:
        if not os.path.isfile(path):
            report.add(path, FileMissing, f"pinned in {os.path.basename(lock.path)} but missing")
    same: list[tuple[str, str]] = []
    for (path, record), got in zip(present, hashing.hash_files([p for p, _ in present]), strict=True):
        entry = report.file(path, str(record.get("format", "file")))
        if got.sha256 is None:
            report.add(path, FileMissing, f"cannot be read: {got.error}")
        elif got.sha256 != record["sha256"]:
            report.add(path, ContentMismatch, f"changed since it was locked: expected sha256 "
                                              f"{record['sha256']}, "
                       f"found {got.sha256}")
        else:
            entry["sha256"], entry["size"] = got.sha256, got.size
            same.append((path, path))
    if rescan is not None and same:
        for (path, _), now in zip(same, rescan(same), strict=True):
            record = listed[os.path.normpath(os.path.abspath(path))]
            if record.get("findings_digest") and now["findings_digest"] != record["findings_digest"]:
                report.add(path, Rescan, f"same content, but a scan now finds other things (verdict then: "
                           f"{record.get('verdict')}, now: {now['severity']}): rescan and review")
    known = set(listed) | {os.path.normpath(os.path.abspath(lock.path))}
    _extras(scope, known, report, f"not pinned in {os.path.basename(lock.path)}")
    _check_pins(lock, scope, report)


def _cache_key(path: str) -> tuple[str, ...] | None:
    """(repository folder name, 'snapshots' | 'blobs', the path inside) of a Hugging Face cache file."""
    where = hf_cache.split(path)
    if where is None or not where[2]:
        return None
    return (os.path.basename(where[0]), where[1], *where[2])


def _cache_files(scope: list[str]) -> dict[tuple[str, ...], str]:
    found: dict[tuple[str, ...], str] = {}
    for root in scope:
        if not os.path.isdir(root):
            continue
        for repo in repo_folders(root):
            for shown, _ in hf_cache.iter_repo(repo):
                key = _cache_key(shown)
                if key is not None:
                    found.setdefault(key, shown)
    return found


def _check_pins(lock: Any, scope: list[str], report: Report) -> None:
    present: dict[str, set[str]] = {}
    for root in scope:
        for repo in repo_folders(root):
            _, rid = hf_cache.repo_id(os.path.basename(repo))
            present.setdefault(rid, set()).update(hf_cache.snapshots(repo))
    for pin in lock.repositories:
        rid, revision = pin["repo_id"], pin["revision"]
        where = f"{os.path.basename(lock.path)} [[repository]] {rid}"
        if not lockfile_commit(revision):
            report.add(lock.path, FloatingPin, f"{where} pins {revision!r}, a branch or tag, not a "
                                               f"40-hex commit: "
                       "it can move to other content", kind="lock")
            continue
        revisions = present.get(rid)
        if revisions is None:
            continue  # not under the verified paths; its files are checked by hash all the same
        if revision not in revisions:
            report.add(lock.path, RevisionMismatch, f"{where} pins {revision}, but the cache holds "
                       f"{', '.join(sorted(revisions)) or 'no snapshot'}", kind="lock")


def lockfile_commit(revision: str) -> bool:
    return hf_cache.COMMIT.fullmatch(revision) is not None
