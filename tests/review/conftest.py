"""Fixtures of the review-trail tests: a real, throw-away PostgreSQL server for the session, a fresh
database per test, and no test ever touching the user's own approvals database.

The server: `initdb` into a temporary folder, a free port on 127.0.0.1 (no Unix socket), `pg_ctl`
start and stop. initdb refuses to run as root (CI runs as root), so as root both run as the
unprivileged `postgres` user (`runuser -u postgres`), the folder chowned to it. Skipped only where no
PostgreSQL server binary exists, and the skip says so (.ci/run installs it with apt-get).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

SKIP_NO_SERVER = ("PostgreSQL tests skipped: no PostgreSQL server binaries (initdb, pg_ctl) on this machine; "
                  ".ci/run installs them with apt-get (package postgresql)")


def _server_bin() -> str | None:
    """The newest /usr/lib/postgresql/N/bin (Debian's layout), else initdb on PATH."""
    def version(path: str) -> float:
        try:
            return float(path.rstrip("/").split("/")[-2])
        except ValueError:
            return 0.0

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if os.path.exists(os.path.join(folder, "initdb")) and os.path.exists(os.path.join(folder, "pg_ctl")):
            return folder
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(found)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.folder = tempfile.mkdtemp(prefix="airlock-pg-")
        self.data = os.path.join(self.folder, "data")
        self.log = os.path.join(self.folder, "server.log")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.folder)
                pytest.skip("PostgreSQL tests skipped: running as root and there is no 'postgres' user to run "
                            "initdb as (initdb refuses root)")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = 0

    def _run(self, *argv: str, timeout: float = 120) -> None:
        # From the server's own folder: the postgres user may not be allowed into the current one.
        proc = subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=self.folder)
        if proc.returncode != 0:
            log = Path(self.log).read_text()[-2000:] if os.path.exists(self.log) else ""
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stdout}{proc.stderr}\n{log}")

    def start(self) -> None:
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.data, "-A", "trust", "-U", "airlock",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        for attempt in range(3):  # the free port may be taken between the probe and the start
            self.port = _free_port()
            options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                       "-c fsync=off -c max_connections=60")
            try:
                self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "90",
                          "-o", options, "start")
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def stop(self) -> None:
        try:
            self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://airlock@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    bindir = _server_bin()
    if bindir is None:
        pytest.skip(SKIP_NO_SERVER)
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server):
    """A fresh database on the session's server."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each test that takes it runs against a new SQLite file and a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "approvals.sqlite3")
    return request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def no_user_database(monkeypatch, tmp_path):
    """Never the user's own database: the user data folder points into the test's folder."""
    monkeypatch.delenv("AIRLOCK_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
