"""One Airlock window per user: a second `airlock FILE...` hands its files to the running window.

The running window listens on a local socket (QLocalServer; a Unix socket in the user's runtime
folder, readable by that user only). A new process first tries to connect: if a window answers,
it sends its paths and exits; otherwise it becomes the server. A lock file serialises that
decision, so two files opened at once from a file manager end up in the same window.

The message is one JSON object, length-prefixed: {"paths": ["/abs/path", ...]}. The server
answers b"OK" once the paths are handed to the window. Nothing in the message is executed; the
paths are only opened, which scans them like File ▸ Open.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable, Sequence

from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

ENV_NAME = "AIRLOCK_INSTANCE"  # overrides the socket path (tests, or a deliberately separate instance)
MAX_MESSAGE = 1 << 20          # 1 MiB of JSON: thousands of paths, and a bound for a hostile peer
MAX_PATHS = 10_000
ACK = b"OK"
_HEADER = struct.Struct(">I")
_CONNECT_MS = 1000
_REPLY_MS = 5000
_LOCK_MS = 5000


def default_name() -> str:
    """The socket path: one per user, in $XDG_RUNTIME_DIR (private) when there is one."""
    override = os.environ.get(ENV_NAME)
    if override:
        return override
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    folder = runtime if runtime and os.path.isdir(runtime) else tempfile.gettempdir()
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return os.path.join(folder, f"airlock-{user}.sock")


def encode(paths: Sequence[str]) -> bytes:
    body = json.dumps({"paths": list(paths)}, ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> list[str]:
    """The paths of one message; ValueError for anything that is not exactly what encode() writes."""
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable message: {exc}") from None
    paths = message.get("paths") if isinstance(message, dict) else None
    if not isinstance(paths, list) or len(paths) > MAX_PATHS or not all(isinstance(p, str) for p in paths):
        raise ValueError("message is not {'paths': [str, ...]}")
    return [p for p in paths if p and "\x00" not in p]


def send_paths(paths: Sequence[str], name: str | None = None, *,
               connect_ms: int = _CONNECT_MS, reply_ms: int = _REPLY_MS) -> bool:
    """Hand paths to a running window. True once it acknowledged them; False if none answered."""
    name = name or default_name()
    if not _ours(name):
        return False
    socket = QLocalSocket()
    socket.connectToServer(name)
    if not socket.waitForConnected(connect_ms):
        return False
    try:
        socket.write(encode([os.path.abspath(p) for p in paths]))
        if not socket.waitForBytesWritten(reply_ms):
            return False
        reply = b""
        while len(reply) < len(ACK) and socket.waitForReadyRead(reply_ms):
            reply += bytes(socket.readAll().data())
        return reply.startswith(ACK)
    finally:
        socket.abort()


def _ours(path: str) -> bool:
    """False for a socket another user put at our name (in a shared /tmp): it would receive our paths."""
    if not hasattr(os, "getuid"):
        return True
    try:
        return os.lstat(path).st_uid == os.getuid()
    except OSError:
        return True  # nothing there yet: connecting just fails


class InstanceServer(QObject):
    """Listens for later `airlock FILE...` processes and emits the paths they send."""

    paths_received = Signal(list)

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or default_name()
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._accept)
        self._buffers: dict[QLocalSocket, bytearray] = {}

    def listen(self) -> bool:
        if self.server.listen(self.name):
            return True
        # A socket file left by a crashed window: nobody answered on it (claim() checked), so reuse it.
        QLocalServer.removeServer(self.name)
        return self.server.listen(self.name)

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while self.server.hasPendingConnections():
            conn = self.server.nextPendingConnection()
            if conn is None:
                break
            self._buffers[conn] = bytearray()
            conn.readyRead.connect(lambda c=conn: self._read(c))
            conn.disconnected.connect(lambda c=conn: self._drop(c))

    def _read(self, conn: QLocalSocket) -> None:
        buf = self._buffers.get(conn)
        if buf is None:
            return
        buf += bytes(conn.readAll().data())
        if len(buf) < _HEADER.size:
            return
        (size,) = _HEADER.unpack_from(buf)
        if size > MAX_MESSAGE:
            self._drop(conn)
            return
        if len(buf) < _HEADER.size + size:
            return
        body = bytes(buf[_HEADER.size:_HEADER.size + size])
        try:
            paths = decode(body)
        except ValueError:
            self._drop(conn)
            return
        self.paths_received.emit(paths)
        conn.write(ACK)
        conn.flush()
        conn.disconnectFromServer()
        self._buffers.pop(conn, None)

    def _drop(self, conn: QLocalSocket) -> None:
        if self._buffers.pop(conn, None) is not None:
            conn.abort()
        conn.deleteLater()


def claim(paths: Sequence[str], name: str | None = None,
          send: Callable[[Sequence[str], str], bool] | None = None) -> InstanceServer | None:
    """Either hand `paths` to the running window (returns None: this process should exit) or
    become the running window (returns the listening server, to connect to the window).

    If the server cannot listen (a read-only runtime folder), the app still runs, alone.
    """
    name = name or default_name()
    sender = send or (lambda p, n: send_paths(p, n))
    lock = QLockFile(name + ".lock")
    locked = lock.tryLock(_LOCK_MS)
    try:
        if sender(paths, name):
            return None
        server = InstanceServer(name)
        server.listen()
        return server
    finally:
        if locked:
            lock.unlock()
