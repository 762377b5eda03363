"""A content-addressed cache of scan results (`airlock scan --cache DB`): a mirror rescans only what changed.

A file's result is keyed by its content and by everything else a result depends on: its name (a name
claims a format, `model.safetensors` holding text is high where `notes.txt` is not, and sniffers weigh
names), Airlock's version, the policy digest (built-in allow/deny data plus the user's file) and the
limits. Results that depend on the files around one are never kept: formats that read sidecars or judge
a file by its folder (configs, code, templates, ONNX external data, shards…, `READS_NEIGHBOURS`) and
names that loaders run by their folder (`*.py`, `*.jinja`). The
content key of a local file is its SHA-256 (read whole: the user asked for the cache); of a remote
file, the registry's own hash when the server gives one (the hub's X-Linked-Etag on a `resolve`
URL is the LFS object's SHA-256, so a local copy and the hub share a key), else the URL with its
ETag. A remote file without an ETag is scanned every time (nothing says it did not change).

Stored: the report entry as the scan made it, before the chain of custody's additions (hashes,
the policy's marks, the approvals gate), which are made afresh on every run. A cached entry says
`"cached": true`.

Hashing a large mirror on every run costs more than the scans it saves, so a local file's SHA-256 is
memoized in a second table by what says it did not change: (path, size, mtime_ns, ctime_ns, inode,
device). The key stays the content's hash; the memo only spares re-reading a file that is provably
the same file, untouched: any write changes mtime, and ctime too (which a user cannot set back, as
`touch -d` or `rsync -t` can set back mtime); a file whose mtime is within MEMO_SETTLE_NS of now,
or that changed while it was hashed, is hashed again next time (a write in the same clock tick
would not show in its times).

Stdlib sqlite3, not the approvals database layer (airlock.core.review.db): that layer carries
PostgreSQL, schema migrations and audit semantics for decisions people make; this is one
key→JSON table on a local disk, disposable (delete the file to empty it), where a schema change just
means a new table name. WAL mode and a busy timeout let parallel runs share the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airlock.core import __version__
from airlock.core.source import is_url

if TYPE_CHECKING:
    from airlock.core.api import Report
    from airlock.core.limits import Limits
    from airlock.core.policy_file import UserPolicy

TABLE = "scan_results_v1"
MEMO_TABLE = "file_sha256_v1"
# Bumped whenever a stored entry gains a field a later check reads (2: `member_formats`, which
# `refuse-formats` needs): entries without it are never reused, even within one version.
ENTRY_SHAPE = 2
MEMO_SETTLE_NS = 2_000_000_000  # younger files are not memoized: a write may still share their times
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def settings_key(policy: UserPolicy | None, limits: Limits) -> str:
    """What a result depends on besides the content: version, entry shape, policy digest, limits."""
    from airlock.core.policy_file import EMPTY, digest

    budgets = ",".join(f"{name}={getattr(limits, name)!r}" for name in limits.__slots__)
    text = f"{__version__}|{ENTRY_SHAPE}|{digest(policy or EMPTY)}|{budgets}"
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    def __init__(self, path: str, settings: str) -> None:
        self.path = path
        self.settings = settings
        self.hits = 0
        self.stored = 0
        self.hashed = 0  # local files read whole for their hash in this run (the memo spared the others)
        # The cache's own files (SQLite's WAL, shared memory and journal beside it): never scanned when
        # the cache lies under a scanned folder, or `--fail-on medium` fails on Airlock's own database.
        self.own_files = frozenset(os.path.realpath(path + suffix)
                                   for suffix in ("", "-wal", "-shm", "-journal"))
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (content TEXT NOT NULL, "
                         "settings TEXT NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (content, settings))")
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {MEMO_TABLE} (path TEXT PRIMARY KEY, "
                         "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, "
                         "inode INTEGER NOT NULL, device INTEGER NOT NULL, sha256 TEXT NOT NULL)")

    def close(self) -> None:
        self._db.close()

    def content_key(self, real: str, limits: Limits) -> str | None:
        """The file's content key, or None when it has none (unreadable, a remote file without ETag)."""
        if is_url(real):
            return _remote_key(real, limits)
        try:
            return "sha256:" + self._local_sha256(real)
        except OSError:
            return None  # scanned: the scan says why it cannot be read

    def _local_sha256(self, real: str) -> str:
        """The file's SHA-256: from the memo when the file is the same, untouched, else read whole."""
        import os
        import time

        from airlock.core.provenance.hashing import sha256_file

        path = os.path.abspath(real)
        before = os.stat(path)
        stamp = _stamp(before)
        row = self._db.execute(f"SELECT size, mtime_ns, ctime_ns, inode, device, sha256 FROM {MEMO_TABLE} "
                               "WHERE path = ?", (path,)).fetchone()
        if row is not None and tuple(row[:5]) == stamp and _SHA256.match(str(row[5])):
            return str(row[5])
        digest: str = sha256_file(real)[0]
        self.hashed += 1
        settled = time.time_ns() - max(before.st_mtime_ns, before.st_ctime_ns) > MEMO_SETTLE_NS
        if settled and _stamp(os.stat(path)) == stamp:  # unchanged while it was read
            self._db.execute(f"INSERT OR REPLACE INTO {MEMO_TABLE} (path, size, mtime_ns, ctime_ns, inode, "
                             "device, sha256) VALUES (?, ?, ?, ?, ?, ?, ?)", (path, *stamp, digest))
        return digest

    def get(self, content: str) -> dict[str, Any] | None:
        row = self._db.execute(f"SELECT entry FROM {TABLE} WHERE content = ? AND settings = ?",
                               (content, self.settings)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, content: str, entry: dict[str, Any]) -> None:
        self._db.execute(f"INSERT OR REPLACE INTO {TABLE} (content, settings, entry) VALUES (?, ?, ?)",
                         (content, self.settings, json.dumps(entry)))
        self.stored += 1


def _stamp(st: Any) -> tuple[int, int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def _remote_key(url: str, limits: Limits) -> str | None:
    from airlock.core.errors import LimitExceeded
    from airlock.core.remote import RemoteSource

    try:
        source = RemoteSource.open_url(url, budget=min(limits.max_remote_bytes, 1024),
                                       timeout=limits.remote_timeout_s, time_budget=limits.time_budget_s)
    except (LimitExceeded, ValueError):
        return None
    try:
        etag = (source.reader.etag or "").strip().removeprefix("W/").strip('"')
    finally:
        source.close()
    if not etag:
        return None
    return f"sha256:{etag}" if _SHA256.match(etag) else f"etag:{source.reader.url}:{etag}"


# Formats whose result can depend on files beside the scanned one: a config's `auto_map` and the code next
# to it, a template found by its folder, ONNX external data, shard indexes and checkpoint shards, OpenVINO's
# .bin, joblib's companion .npy files, Keras and SavedModel sidecars. Scanned afresh every time.
READS_NEIGHBOURS = frozenset({"json", "yaml", "python", "notebook", "chat_template", "onnx", "ort", "keras",
                              "safetensors-index", "openvino", "joblib", "saved_model", "tf_checkpoint"})
_RUN_BY_FOLDER = (".py", ".jinja")  # judged by the model folder around them, whatever their content


def name_key(content: str, display: str) -> str:
    """The cache key of a file: its content key and its name."""
    return f"{content}|{os.path.basename(display.rstrip('/'))}"


def through_cache(files: Iterable[tuple[str, str]], cache: ResultCache, limits: Limits,
                  scan: Callable[[Iterable[tuple[str, str]]], Iterator[Report]]) -> Iterator[Report]:
    """Reports of the listed (display, real) files: a cached file's entry without scanning it, the
    others scanned by `scan` and stored. Each report's `index` is its place in `files`."""
    from airlock.core.api import Report

    files = ((display, real) for display, real in files
             if is_url(real) or os.path.realpath(real) not in cache.own_files)
    ready: deque[Report] = deque()
    positions: list[int] = []  # index in `files` of each file handed to the scan
    keys: list[str | None] = []

    def misses() -> Iterator[tuple[str, str]]:
        for index, (display, real) in enumerate(files):
            content = None if display.endswith(_RUN_BY_FOLDER) else cache.content_key(real, limits)
            key = None if content is None else name_key(content, display)
            entry = cache.get(key) if key is not None else None
            if entry is not None:
                cache.hits += 1
                ready.append(Report(_renamed(entry, display), index=index, real_path=real))
                continue
            positions.append(index)
            keys.append(key)
            yield display, real

    for report in scan(misses()):
        while ready:
            yield ready.popleft()
        sub = report.index or 0
        key = keys[sub]
        if key is not None and _cacheable(report):
            cache.put(key, report.to_dict())
        yield Report(report.to_dict(), index=positions[sub], real_path=report.real_path)
    while ready:
        yield ready.popleft()


def _renamed(entry: dict[str, Any], display: str) -> dict[str, Any]:
    """A cached entry for the file at `display` (the same bytes may have had another name): its path,
    and the findings' node paths, which start with the file's own label."""
    from airlock.core.report.paths import path_fields
    from airlock.core.scan import _label
    from airlock.core.text import safe_text

    old = safe_text(_label(str(entry.get("path", ""))), 1000)
    new = safe_text(_label(display), 1000)
    findings = []
    for finding in entry.get("findings", []):
        node = finding.get("node")
        if isinstance(node, str) and (node == old or node.startswith(old + " / ")):
            finding = {**finding, "node": new + node[len(old):]}
        findings.append(finding)
    rest = {k: v for k, v in entry.items() if k not in ("path", "path_bytes_b64", "findings")}
    return {**path_fields(display), **rest, "findings": findings, "cached": True}


def _cacheable(report: Report) -> bool:
    """A result that depends on this run only is not kept: a remote read that failed, a worker
    that died, a file that could not be read (next time it may work); nor one that depends on the
    files around it (READS_NEIGHBOURS)."""
    if report.to_dict().get("format") in READS_NEIGHBOURS:
        return False
    for finding in report.findings:
        if finding["rule"] in ("RMT001", "AIR007", "ISO001"):  # remote read, unreadable, isolation
            return False
        if finding["rule"] == "AIR001" and "worker failed" in finding["message"]:
            return False
        if finding["rule"] == "AIR003" and "time budget" in finding["message"]:  # a loaded machine
            return False
    return True
