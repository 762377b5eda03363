"""Where the approvals live and how the database is opened (SQLAlchemy Core).

The tables are declared once, here. SQLite is the default: one file in the user data folder
(platformdirs), WAL mode, every write transaction started with BEGIN IMMEDIATE so that concurrent
writers queue on the lock (busy timeout) instead of failing half-way. PostgreSQL is for a team:
`--db postgresql://…` or `AIRLOCK_DB`, driver psycopg 3; the same tables and queries.

Opening never alters a database written by a newer Airlock (see migrations.py): its schema version
is read first, and nothing is written (not even SQLite's journal mode) before it is known to be ours.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from airlock.core.errors import AirlockError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

ENV_VAR = "AIRLOCK_DB"
DEFAULT_FILE = "approvals.sqlite3"
BUSY_TIMEOUT_MS = 60_000  # a writer waits this long for another one's transaction to end
CONNECT_TIMEOUT_S = 10

metadata = MetaData()

# One row per applied migration; the highest version is the schema's version.
schema_versions = Table(
    "airlock_schema", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", String(40), nullable=False),
    Column("airlock_version", String(64), nullable=False),
)

# One row per decision, never updated or deleted: the latest row for a hash is the one that counts.
decisions = Table(
    "airlock_decisions", metadata,
    # SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("format", String(64), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("accepted_critical", Boolean, nullable=False),
    Column("findings_digest", String(64), nullable=False),
    Column("findings", Text, nullable=False),  # JSON: what was found, as the reviewer saw it
    Column("policy_digest", String(64), nullable=False),
    Column("reviewer", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("decided_at", String(40), nullable=False),  # ISO 8601, UTC
    Column("airlock_version", String(64), nullable=False),
    CheckConstraint("decision IN ('approve', 'reject')", name="airlock_decision_kind"),
    Index("airlock_decisions_sha256", "sha256", "id"),
)


class ReviewDbError(AirlockError):
    """The approvals database cannot be used; the message names it (never its password)."""


class SchemaTooNew(ReviewDbError):
    """The database was written by a newer Airlock: refused, left as it is."""


def default_path() -> str:
    import platformdirs

    return os.path.join(platformdirs.user_data_dir("airlock", appauthor=False), DEFAULT_FILE)


class Target:
    """A resolved database location: an SQLite file or a PostgreSQL URL."""

    def __init__(self, kind: str, location: str, *, is_default: bool = False) -> None:
        self.kind = kind  # "sqlite" | "postgresql"
        self.location = location  # a file path, or a URL for SQLAlchemy
        self.is_default = is_default

    @property
    def shown(self) -> str:
        """For messages: the file, or the URL without its password."""
        if self.kind == "sqlite":
            return self.location
        from sqlalchemy.engine import make_url

        return make_url(self.location).render_as_string(hide_password=True)


def resolve(url: str | None) -> Target:
    """`--db` when given, else AIRLOCK_DB, else the SQLite file in the user data folder."""
    given = url if url else os.environ.get(ENV_VAR) or None
    if given is None:
        return Target("sqlite", default_path(), is_default=True)
    if "://" not in given:
        return Target("sqlite", given)  # a plain file path
    scheme, rest = given.split("://", 1)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return Target("postgresql", "postgresql+psycopg://" + rest)
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ReviewDbError("sqlite:///FILE needs a file path (an in-memory database keeps nothing)")
        return Target("sqlite", rest[1:])
    raise ReviewDbError(f"unsupported database URL scheme {scheme!r}: use a file path, sqlite:///FILE or "
                        "postgresql://USER@HOST/DB (driver psycopg 3)")


def create_engine_for(target: Target) -> Engine:
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    if target.kind == "postgresql":
        return create_engine(target.location, poolclass=NullPool,
                             connect_args={"connect_timeout": CONNECT_TIMEOUT_S,
                                           "application_name": "airlock"})
    from sqlalchemy.engine import URL

    engine = create_engine(URL.create("sqlite", database=target.location), poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite's own BEGIN is deferred: ours is explicit
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous = FULL")  # a committed decision survives a power cut too
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # Writers take the lock up front: a deferred transaction that later wants to write can fail
        # with "database is locked" at once, without waiting for the busy timeout.
        read_only = connection.get_execution_options().get("airlock_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def describe_error(exc: BaseException) -> str:
    """One line for a database error: the driver's own message, without SQLAlchemy's boilerplate."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
