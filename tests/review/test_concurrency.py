"""Eight processes approving at once lose nothing; a process killed mid-transaction leaves the database
consistent. Against SQLite (WAL) and a real PostgreSQL server."""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airlock.core.cli import main
from airlock.core.review.queries import open_store

CHILD = Path(__file__).with_name("writer_child.py")
PROCESSES = 8
AIRLOCK = [sys.executable, "-c", "import sys; from airlock.core.cli import main; sys.exit(main())"]


def count_rows(url: str) -> int:
    from sqlalchemy import func, select

    from airlock.core.review.db import decisions

    with open_store(url, write=False) as store:
        assert store.engine is not None
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(decisions)).scalar_one())


@pytest.mark.slow
def test_eight_cli_processes_approving_at_once_lose_nothing(db_url, tmp_path):
    files = []
    for worker in range(PROCESSES):
        mine = []
        for i in range(3):
            path = tmp_path / f"w{worker}_{i}.pkl"
            path.write_bytes(pickle.dumps({"worker": worker, "i": i}, protocol=4))
            mine.append(str(path))
        files.append(mine)
    procs = [subprocess.Popen([*AIRLOCK, "approve", *mine, "--note", f"worker {w}", "--db", db_url, "--no-policy"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w, mine in enumerate(files)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _, _ in results] == [0] * PROCESSES, results
    assert count_rows(db_url) == PROCESSES * 3
    with open_store(db_url, write=False) as store:
        for mine in files:
            for path in mine:
                from airlock.core.provenance.hashing import sha256_file

                (record,) = store.history(sha256_file(path)[0])
                assert record["path"] == path


@pytest.mark.slow
def test_eight_writers_in_tight_loops_lose_no_transaction(db_url):
    open_store(db_url).close()  # the schema exists before the race (its creation is raced below)
    count = 25
    start_at = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, str(CHILD), "loop", db_url, str(start_at), str(w), str(count)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(PROCESSES)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCESSES, outputs
    assert count_rows(db_url) == PROCESSES * count


@pytest.mark.slow
def test_eight_processes_creating_a_new_database_at_once_migrate_it_once(db_url):
    start_at = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, str(CHILD), "loop", db_url, str(start_at), str(w), "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(PROCESSES)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCESSES, outputs
    assert count_rows(db_url) == PROCESSES * 2
    from sqlalchemy import select

    from airlock.core.review.db import schema_versions

    with open_store(db_url, write=False) as store:
        assert store.engine is not None
        with store.engine.connect() as conn:
            assert [r[0] for r in conn.execute(select(schema_versions.c.version))] == [1]


def test_a_process_killed_mid_transaction_leaves_the_database_consistent(db_url, tmp_path, capsys):
    model = tmp_path / "before.pkl"
    model.write_bytes(pickle.dumps("approved before the crash"))
    assert main(["approve", str(model), "--note", "before", "--db", db_url, "--no-policy"]) == 0
    capsys.readouterr()
    proc = subprocess.Popen([sys.executable, str(CHILD), "hang", db_url, "200"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "inside", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert count_rows(db_url) == 1  # nothing of the killed transaction, the earlier decision intact
    if not db_url.startswith("postgresql"):
        with sqlite3.connect(db_url) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # The lock it held is gone: the next decision goes through.
    after = tmp_path / "after.pkl"
    after.write_bytes(pickle.dumps("approved after the crash"))
    assert main(["approve", str(after), "--note", "after", "--db", db_url, "--no-policy"]) == 0
    assert main(["history", "--db", db_url, str(model)]) == 0
    capsys.readouterr()
    assert count_rows(db_url) == 2
