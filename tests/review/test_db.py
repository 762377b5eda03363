"""The approvals database: where it is, the schema versions, and a newer schema refused untouched."""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, inspect, text

from airlock.core.cli import main
from airlock.core.review import db as review_db
from airlock.core.review.db import ReviewDbError, SchemaTooNew, decisions, resolve, schema_versions
from airlock.core.review.migrations import LATEST, MIGRATIONS
from airlock.core.review.queries import open_store


def sqlalchemy_url(url: str) -> str:
    return resolve(url).location if url.startswith("postgresql") else f"sqlite:///{url}"


def test_resolve_names_every_kind_of_location(tmp_path, monkeypatch):
    assert resolve(str(tmp_path / "a.db")).kind == "sqlite"
    assert resolve(f"sqlite:///{tmp_path}/b.db").location == f"{tmp_path}/b.db"
    target = resolve("postgresql://me:pw@db.example/approvals")
    assert target.kind == "postgresql" and target.location.startswith("postgresql+psycopg://")
    assert "pw" not in target.shown and "***" in target.shown
    assert resolve("postgres://me@h/x").location == "postgresql+psycopg://me@h/x"
    monkeypatch.setenv("AIRLOCK_DB", str(tmp_path / "env.db"))
    assert resolve(None).location == str(tmp_path / "env.db")
    assert resolve(str(tmp_path / "given.db")).location == str(tmp_path / "given.db")  # --db wins
    monkeypatch.delenv("AIRLOCK_DB")
    default = resolve(None)
    assert default.is_default and default.location == review_db.default_path()
    assert default.location.endswith(os.path.join("airlock", "approvals.sqlite3"))
    for bad in ("mysql://u@h/d", "sqlite://", "sqlite:///"):
        with pytest.raises(ReviewDbError):
            resolve(bad)


def test_migrations_are_ordered_and_the_schema_matches_the_declared_tables(db_url):
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    open_store(db_url).close()
    engine = create_engine(sqlalchemy_url(db_url))
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns(decisions.name)}
            versions = [row[0] for row in conn.execute(text("SELECT version FROM airlock_schema ORDER BY version"))]
            indexes = {i["name"] for i in inspect(conn).get_indexes(decisions.name)}
    finally:
        engine.dispose()
    assert columns == {c.name for c in decisions.columns}
    assert versions == [m.version for m in MIGRATIONS]
    assert "airlock_decisions_sha256" in indexes
    open_store(db_url).close()  # opening again applies nothing twice


def _make_newer(url: str) -> None:
    open_store(url).close()
    engine = create_engine(sqlalchemy_url(url))
    with engine.begin() as conn:
        conn.execute(insert(schema_versions).values(version=LATEST + 1, applied_at="2099-01-01T00:00:00+00:00",
                                                    airlock_version="99.0"))
    engine.dispose()


def _fingerprint(url: str) -> object:
    """The database's content: the file's bytes for SQLite, every row for PostgreSQL."""
    if not url.startswith("postgresql"):
        return hashlib.sha256(Path(url).read_bytes()).hexdigest(), sorted(n for n in os.listdir(os.path.dirname(url))
                                                                    if n.startswith(os.path.basename(url)))
    engine = create_engine(sqlalchemy_url(url))
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM airlock_schema ORDER BY version"))]
        rows += [tuple(r) for r in conn.execute(text("SELECT * FROM airlock_decisions ORDER BY id"))]
        tables = sorted(inspect(conn).get_table_names())
    engine.dispose()
    return rows, tables


def test_a_database_from_a_newer_airlock_is_refused_and_left_as_it_is(db_url, capsys, tmp_path):
    _make_newer(db_url)
    before = _fingerprint(db_url)
    with pytest.raises(SchemaTooNew, match=rf"schema version {LATEST + 1}.*newer Airlock.*not changed"):
        open_store(db_url)
    (tmp_path / "files").mkdir()
    model = tmp_path / "files" / "m.pkl"
    model.write_bytes(pickle.dumps([1, 2, 3]))
    for argv in (["approve", str(model), "--note", "x"], ["reject", str(model), "--note", "x"],
                 ["history", str(model)], ["scan", "--require-approved", str(model)]):
        code = main([*argv, "--db", db_url])
        err = capsys.readouterr().err
        assert code == 2, argv
        assert "newer Airlock" in err and "Traceback" not in err
    assert _fingerprint(db_url) == before


def test_a_rollback_journal_database_of_a_newer_airlock_keeps_its_journal_mode(tmp_path):
    """Even SQLite's journal mode (stored in the file header) is not switched to WAL before the version
    check."""
    path = tmp_path / "old-mode.sqlite3"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        review_db.metadata.create_all(conn)
        conn.execute(insert(schema_versions).values(version=LATEST + 5, applied_at="x", airlock_version="9"))
    engine.dispose()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew):
        open_store(str(path))
    assert path.read_bytes() == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_file_that_is_not_a_database_is_a_clear_error_and_stays_unchanged(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"just text, not SQLite\n" * 300)
    before = path.read_bytes()
    with pytest.raises(ReviewDbError, match="not a database"):
        open_store(str(path))
    assert path.read_bytes() == before


def test_read_only_use_of_a_missing_sqlite_file_creates_nothing(tmp_path):
    path = tmp_path / "absent.sqlite3"
    with open_store(str(path), write=False) as store:
        assert store.history("0" * 64) == [] and store.latest(["0" * 64]) == {}
        with pytest.raises(ReviewDbError, match="read-only"):
            store.record([])
    assert not path.exists()
