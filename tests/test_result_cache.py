"""`airlock scan --cache DB`: results keyed by content + version + policy + limits (airlock.core.result_cache).

Real SQLite files, real scans through the command line; remote files from a real local Range server
keyed by the hub's X-Linked-Etag (the LFS SHA-256), which a local copy of the same bytes shares."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import corpus
import pytest
import range_server

EVIL = corpus.call("posix", "system", corpus.MARKER)
BENIGN = corpus.asm(corpus.PROTO(2), corpus.STR("weights"), corpus.STOP)


def _scan(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "--no-policy", "--format", "jsonl",
                           "--jobs", "1", *args], capture_output=True, timeout=300, check=False,
                          env={**os.environ, **(env or {})})
    assert proc.returncode in (0, 1), proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    return proc.returncode, [json.loads(line) for line in proc.stdout.decode().splitlines()]


def _mirror(folder: Path) -> None:
    folder.mkdir()
    (folder / "evil.pkl").write_bytes(EVIL)
    (folder / "ok.pkl").write_bytes(BENIGN)
    (folder / "sub").mkdir()
    (folder / "sub" / "ok.pkl").write_bytes(BENIGN)  # the same bytes under the same name as ok.pkl: one key


def test_second_run_scans_nothing_and_a_changed_file_is_rescanned(tmp_path: Path) -> None:
    mirror, db = tmp_path / "mirror", str(tmp_path / "cache.sqlite3")
    _mirror(mirror)
    code1, first = _scan("--cache", db, str(mirror))
    assert code1 == 1 and not any(e.get("cached") for e in first)
    code2, second = _scan("--cache", db, str(mirror))
    assert code2 == 1 and all(e.get("cached") for e in second)
    strip = [{k: v for k, v in e.items() if k != "cached"} for e in second]
    assert sorted(strip, key=lambda e: e["path"]) == sorted(first, key=lambda e: e["path"])
    (mirror / "ok.pkl").write_bytes(corpus.call("os", "system", corpus.MARKER))  # changed: rescanned
    _, third = _scan("--cache", db, str(mirror))
    by_path = {Path(e["path"]).name: e for e in third}
    assert not by_path["ok.pkl"].get("cached") and by_path["ok.pkl"]["severity"] == "critical"
    assert by_path["evil.pkl"]["cached"]
    # the same bytes under the same name elsewhere: one key, the path is the new one's
    (mirror / "copy").mkdir()
    (mirror / "copy" / "evil.pkl").write_bytes(EVIL)
    _, fourth = _scan("--cache", db, str(mirror / "copy" / "evil.pkl"))
    assert fourth[0]["cached"] and fourth[0]["path"] == str(mirror / "copy" / "evil.pkl")


def test_a_cache_inside_the_scanned_folder_is_not_scanned(tmp_path: Path) -> None:
    # New-user trial: `airlock scan --cache c.db --fail-on medium .` listed c.db, c.db-wal and c.db-shm as
    # unrecognised binary content (medium), so the cache made a clean folder fail, on every run.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ok.pkl").write_bytes(BENIGN)
    (mirror / "notes.db").write_bytes(b"SQLite format 3\x00" + bytes(200))  # not the cache: still scanned
    db = str(mirror / "c.db")
    for _ in range(2):
        _, entries = _scan("--cache", db, str(mirror))
        assert sorted(Path(e["path"]).name for e in entries) == ["notes.db", "ok.pkl"]


@pytest.mark.parametrize(("first", "then", "want"), [
    ("notes.txt", "model.safetensors", "high"),  # text named as SafeTensors: FC001, whatever was cached
    ("empty.bin", "model.pt", "high"),  # a 0-byte .pt is not "empty, nothing to inspect"
    ("model.pt", "empty.bin", "info"),  # ...and a 0-byte .bin (ambiguous name) does not inherit the .pt's
])
def test_the_name_is_part_of_the_key(tmp_path: Path, first: str, then: str, want: str) -> None:
    """Regression (new-user trial): a result cached under one name was reused under a name that claims a
    format, and a hostile-by-name file passed."""
    db = str(tmp_path / "cache.sqlite3")
    data = b"" if "empty" in (first + then) or first == "model.pt" else b"just some notes\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / first).write_bytes(data)
    (tmp_path / "b" / then).write_bytes(data)
    _, uncached = _scan(str(tmp_path / "b" / then))
    _scan("--cache", db, str(tmp_path / "a" / first))
    _, cached = _scan("--cache", db, str(tmp_path / "b" / then))
    assert not cached[0].get("cached") and cached[0]["severity"] == uncached[0]["severity"] == want


def test_results_that_depend_on_the_folder_are_not_kept(tmp_path: Path) -> None:
    """Regression (new-user trial): a config naming code next to it (auto_map, MF001) read the cached
    result of the same config scanned without the code beside it, and the gate passed."""
    config = b'{"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}}'
    code = b"import os\nos.system('id')\n"
    lone, repo, db = tmp_path / "lone", tmp_path / "repo", str(tmp_path / "cache.sqlite3")
    for folder in (lone, repo):
        folder.mkdir()
        (folder / "config.json").write_bytes(config)
    (lone / "other" ).mkdir()
    (lone / "other" / "modeling_x.py").write_bytes(code)
    (repo / "modeling_x.py").write_bytes(code)
    _scan("--cache", db, str(lone))
    code_uncached, uncached = _scan(str(repo))
    code_cached, cached = _scan("--cache", db, str(repo))
    assert code_cached == code_uncached == 1 and not any(e.get("cached") for e in cached)
    strip = sorted(({k: v for k, v in e.items() if k != "cached"} for e in cached), key=lambda e: e["path"])
    assert strip == sorted(uncached, key=lambda e: e["path"])


def test_settings_change_the_key(tmp_path: Path) -> None:
    mirror, db = tmp_path / "mirror", str(tmp_path / "cache.sqlite3")
    _mirror(mirror)
    _scan("--cache", db, str(mirror))
    _, other_limits = _scan("--cache", db, "--max-decompressed", "1MiB", str(mirror))
    assert not any(e.get("cached") for e in other_limits)


def test_documents_and_workers_through_the_cache(tmp_path: Path) -> None:
    mirror, db = tmp_path / "mirror", str(tmp_path / "cache.sqlite3")
    _mirror(mirror)
    _scan("--cache", db, "--jobs", "2", str(mirror))
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "--no-policy", "--format", "json",
                           "--jobs", "2", "--cache", db, str(mirror)], capture_output=True, timeout=300, check=False)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and [Path(e["path"]).name for e in doc["files"]] == ["evil.pkl", "ok.pkl", "ok.pkl"]
    assert all(e["cached"] for e in doc["files"])


def test_unusable_cache_is_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "--no-policy", "--cache",
                           str(tmp_path / "no" / "such" / "dir.sqlite3"), str(tmp_path)],
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 2 and b"cannot use the cache" in proc.stderr


def test_remote_files_keyed_by_the_hubs_lfs_hash(tmp_path: Path) -> None:
    import hashlib

    root = tmp_path / "served"
    path = range_server.hf_path(root, "org/name", "main", "evil.pkl")
    path.write_bytes(EVIL)
    db = str(tmp_path / "cache.sqlite3")
    with range_server.serve(root) as server:
        env = {"HF_ENDPOINT": server.endpoint}
        server.mode = "redirect"
        range_server.LFS_OID = hashlib.sha256(EVIL).hexdigest()  # what the hub's X-Linked-Etag says
        _, first = _scan("--cache", db, "hf://org/name/evil.pkl", env=env)
        assert first[0]["severity"] == "critical" and not first[0].get("cached")
        _, second = _scan("--cache", db, "hf://org/name/evil.pkl", env=env)
        assert second[0]["cached"] and second[0]["path"] == "hf://org/name/evil.pkl"
        # a local copy of the same bytes: keyed by its SHA-256, the same key as the hub's LFS oid
        local = tmp_path / "evil.pkl"  # the same name: a file's name is part of its key
        local.write_bytes(EVIL)
        _, third = _scan("--cache", db, str(local), env=env)
        assert third[0]["cached"]


@pytest.fixture(autouse=True)
def _restore_oid() -> Any:
    saved = range_server.LFS_OID
    yield
    range_server.LFS_OID = saved


# The memo of local files' SHA-256 by (path, size, mtime_ns, ctime_ns, inode, device).

def _touched_again(path: Path, data: bytes, before: os.stat_result) -> None:
    """Rewrite `path` with `data` of the same size and set its mtime back: only ctime tells (rewritten
    until the clock has moved on, so that ctime really differs from `before`'s)."""
    for _ in range(1000):
        path.write_bytes(data)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        if os.stat(path).st_ctime_ns != before.st_ctime_ns:
            return
        time.sleep(0.01)
    raise AssertionError("the file system's ctime never moved")


def test_an_unchanged_file_is_not_hashed_again_and_a_changed_one_is(tmp_path: Path, monkeypatch: Any) -> None:
    from airlock.core import result_cache
    from airlock.core.limits import DEFAULT_LIMITS

    monkeypatch.setattr(result_cache, "MEMO_SETTLE_NS", -1)  # the files here are seconds old at most
    path, db = tmp_path / "model.pkl", str(tmp_path / "cache.sqlite3")
    path.write_bytes(EVIL)
    first = result_cache.ResultCache(db, "settings")
    key = first.content_key(str(path), DEFAULT_LIMITS)
    assert key == "sha256:" + hashlib.sha256(EVIL).hexdigest() and first.hashed == 1
    assert first.content_key(str(path), DEFAULT_LIMITS) == key and first.hashed == 1
    first.close()
    second = result_cache.ResultCache(db, "settings")  # the next run: the memo is in the file
    assert second.content_key(str(path), DEFAULT_LIMITS) == key and second.hashed == 0
    # the same size, the mtime set back: the content is still hashed again, and the key follows it
    changed = BENIGN.ljust(len(EVIL), b"\x00")[: len(EVIL)]
    _touched_again(path, changed, os.stat(path))
    assert second.content_key(str(path), DEFAULT_LIMITS) == "sha256:" + hashlib.sha256(changed).hexdigest()
    assert second.hashed == 1
    # replaced by another file (a new inode) with the old bytes: hashed again too
    other = tmp_path / "other.pkl"
    other.write_bytes(changed)
    os.replace(other, path)
    assert second.content_key(str(path), DEFAULT_LIMITS) == "sha256:" + hashlib.sha256(changed).hexdigest()
    assert second.hashed == 2
    second.close()


def test_a_file_written_just_now_is_not_memoized(tmp_path: Path) -> None:
    """A write within the same clock tick would not show in its times: a fresh file is hashed each run."""
    from airlock.core import result_cache
    from airlock.core.limits import DEFAULT_LIMITS

    path = tmp_path / "fresh.pkl"
    path.write_bytes(BENIGN)
    cache = result_cache.ResultCache(str(tmp_path / "cache.sqlite3"), "settings")
    for _ in range(2):
        cache.content_key(str(path), DEFAULT_LIMITS)
    assert cache.hashed == 2
    cache.close()


def test_entries_of_an_older_shape_are_not_reused(monkeypatch: Any) -> None:
    """An entry stored before a field existed (member_formats, which refuse-formats reads) must miss."""
    from airlock.core import result_cache
    from airlock.core.limits import DEFAULT_LIMITS

    now = result_cache.settings_key(None, DEFAULT_LIMITS)
    monkeypatch.setattr(result_cache, "ENTRY_SHAPE", result_cache.ENTRY_SHAPE - 1)
    assert result_cache.settings_key(None, DEFAULT_LIMITS) != now
