"""The schema's versions, as an ordered list of migrations, and the rule that protects newer data.

`airlock_schema` holds one row per applied migration; the highest is the database's version. On
opening, the version is read first without writing anything: a database written by a newer Airlock
(a version this one does not know) is refused with `SchemaTooNew` and left exactly as it is. An
older one is brought up to date in one transaction, under a lock (SQLite: BEGIN IMMEDIATE;
PostgreSQL: an advisory lock), so that several processes opening a new database at once apply
each migration once.

A new migration is appended, never inserted: its number is the next integer, and it changes the
tables declared in db.py the way that declaration changed (ALTER TABLE … ADD COLUMN …).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import func, insert, inspect, select, text

from airlock.core import __version__
from airlock.core.review.db import SchemaTooNew, Target, decisions, schema_versions

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

# Any constant works: it only has to be the same in every Airlock (hex of "airlock\0").
ADVISORY_LOCK_KEY = 0x6169726C6F636B00
WAL_RETRY_S = 30.0


class Migration(NamedTuple):
    version: int
    what: str
    apply: Callable[[Connection], None]


def _v1_decisions(conn: Connection) -> None:
    decisions.create(conn)  # with its index on (sha256, id)


MIGRATIONS: list[Migration] = [
    Migration(1, "airlock_decisions: one row per approval or rejection of a file's sha256", _v1_decisions),
]
LATEST = MIGRATIONS[-1].version


def stored_version(conn: Connection) -> int:
    """The database's schema version; 0 for a database Airlock never wrote to."""
    if not inspect(conn).has_table(schema_versions.name):
        return 0
    return int(conn.execute(select(func.max(schema_versions.c.version))).scalar() or 0)


def refuse_newer(version: int, target: Target) -> None:
    if version > LATEST:
        raise SchemaTooNew(f"the approvals database {target.shown} has schema version {version}, "
                           f"written by a "
                           f"newer Airlock (this one, {__version__}, knows versions up to {LATEST}): "
                           "upgrade Airlock to use it; the database was not changed")


def ensure_schema(engine: Engine, target: Target) -> int:
    """Check the version (refusing a newer one before writing anything), then migrate. Returns the
    version the database now has."""
    with engine.connect().execution_options(airlock_read_only=True) as conn:
        version = stored_version(conn)
    refuse_newer(version, target)
    if version == LATEST:
        return version
    if target.kind == "sqlite":
        _enable_wal(engine)
    with engine.begin() as conn:
        if target.kind == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        schema_versions.create(conn, checkfirst=True)
        version = stored_version(conn)  # another process may have migrated while we waited
        refuse_newer(version, target)
        for migration in MIGRATIONS[version:]:
            migration.apply(conn)
            conn.execute(insert(schema_versions).values(
                version=migration.version, applied_at=datetime.now(UTC).isoformat(timespec="seconds"),
                airlock_version=__version__))
        return LATEST


def _enable_wal(engine: Engine) -> None:
    """WAL lets readers go on while one process writes. The mode is stored in the file, so it is set
    once, outside any transaction (SQLite refuses it inside one); a concurrent opener may hold the
    lock for a moment, hence the retries."""
    from sqlite3 import OperationalError

    deadline = time.monotonic() + WAL_RETRY_S
    raw = engine.raw_connection()
    try:
        while True:
            try:
                cursor = raw.cursor()
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.close()
                return
            except OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        raw.close()
