"""Every query of the review trail, as a function over a connection, and the store that runs them.

Decisions are only ever inserted: a history is every row for a hash in insertion order (the
database's own id, not the clocks of the reviewers' machines), and the latest row is the one that
counts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from airlock.core.review.db import (
    ReviewDbError,
    Target,
    create_engine_for,
    decisions,
    describe_error,
    resolve,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

Decision = dict[str, Any]  # a row of airlock_decisions, `findings` decoded
LOOKUP_CHUNK = 500  # hashes per IN (...) list


def insert_decisions(conn: Connection, rows: list[Decision]) -> list[int]:
    ids = []
    for row in rows:
        values = {**row, "findings": json.dumps(row["findings"], ensure_ascii=True, sort_keys=True)}
        result = conn.execute(insert(decisions).values(**values).returning(decisions.c.id))
        ids.append(int(result.scalar_one()))
    return ids


def _decoded(row: Any) -> Decision:
    out = dict(row._mapping)
    try:
        out["findings"] = json.loads(out["findings"])
    except ValueError:
        out["findings"] = []
    return out


def history(conn: Connection, sha256: str) -> list[Decision]:
    query = select(decisions).where(decisions.c.sha256 == sha256).order_by(decisions.c.id)
    return [_decoded(row) for row in conn.execute(query)]


def latest(conn: Connection, hashes: Iterable[str]) -> dict[str, Decision]:
    """The decision that counts for each hash that has one."""
    wanted = sorted(set(hashes))
    found: dict[str, Decision] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        query = select(decisions).where(decisions.c.sha256.in_(chunk)).order_by(decisions.c.id)
        for row in conn.execute(query):
            found[row.sha256] = _decoded(row)  # later rows replace earlier ones
    return found


class ApprovalStore:
    """An open approvals database. Without an engine (read-only use of an SQLite file that does not
    exist yet) it holds no decisions."""

    def __init__(self, target: Target, engine: Engine | None) -> None:
        self.target = target
        self.engine = engine
        self.closed = False

    @property
    def shown(self) -> str:
        return self.target.shown

    def record(self, rows: list[Decision]) -> list[int]:
        """Insert the rows in one transaction: all of them, or none."""
        if self.engine is None:
            raise ReviewDbError(f"the approvals database {self.shown} was opened read-only")
        ids: list[int] = self._run(lambda conn: insert_decisions(conn, rows), write=True)
        return ids

    def history(self, sha256: str) -> list[Decision]:
        self._check_open()
        return [] if self.engine is None else self._run(lambda conn: history(conn, sha256))

    def latest(self, hashes: Iterable[str]) -> dict[str, Decision]:
        self._check_open()
        hashes = list(hashes)
        return {} if self.engine is None else self._run(lambda conn: latest(conn, hashes))

    def _check_open(self) -> None:
        # A closed store must never read as an empty one: every file would pass as "no decision".
        if self.closed:
            raise ReviewDbError(f"the approvals database {self.shown} was used after it was closed")

    def _run(self, work: Any, write: bool = False) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        assert self.engine is not None
        try:
            if write:
                with self.engine.begin() as conn:
                    return work(conn)
            with self.engine.connect().execution_options(airlock_read_only=True) as conn:
                return work(conn)
        except SQLAlchemyError as exc:
            message = f"the approvals database {self.shown} failed: {describe_error(exc)}"
            raise ReviewDbError(message) from None

    def close(self) -> None:
        self.closed = True
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def __enter__(self) -> ApprovalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str | None = None, *, write: bool = True) -> ApprovalStore:
    """Open (and, when needed, create and migrate) the approvals database. `write=False` for look-ups:
    an SQLite file that does not exist is then not created. Raises ReviewDbError (SchemaTooNew for a
    database of a newer Airlock) with a message that names the database."""
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    from airlock.core.review.migrations import ensure_schema

    target = resolve(url)
    if target.kind == "sqlite":
        path = target.location
        if os.path.isdir(path):
            raise ReviewDbError(f"the approvals database {path} is a folder, not a file")
        if not os.path.exists(path):
            if not write:
                return ApprovalStore(target, None)
            folder = os.path.dirname(os.path.abspath(path))
            if target.is_default:
                try:
                    os.makedirs(folder, exist_ok=True)
                except OSError as exc:
                    raise ReviewDbError(f"cannot create {folder} for the approvals database: "
                                        f"{exc.strerror or exc}") from None
            elif not os.path.isdir(folder):
                raise ReviewDbError(f"cannot create the approvals database {path}: no such folder {folder}")
    try:
        engine = create_engine_for(target)
    except (SQLAlchemyError, ImportError) as exc:
        raise ReviewDbError(f"cannot open the approvals database {target.shown}: "
                            f"{describe_error(exc)}") from None
    try:
        ensure_schema(engine, target)
    except ReviewDbError:
        engine.dispose()
        raise
    except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
        engine.dispose()
        raise ReviewDbError(f"cannot open the approvals database {target.shown}: "
                            f"{describe_error(exc)}") from None
    return ApprovalStore(target, engine)
