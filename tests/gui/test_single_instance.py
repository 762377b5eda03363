"""A second `airlock FILE...` adds its files to the running window instead of opening another one."""

import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import uuid

import pytest
from PySide6.QtNetwork import QLocalSocket

from airlock.gui import single_instance
from airlock.gui.app import open_forwarded
from airlock.gui.main_window import MainWindow
from airlock.gui.single_instance import ACK, InstanceServer, claim, decode, encode, send_paths


@pytest.fixture
def name():
    # Unix socket paths are limited to ~107 bytes, so not under pytest's long tmp_path.
    path = os.path.join(tempfile.gettempdir(), f"airlock-test-{uuid.uuid4().hex[:12]}.sock")
    yield path
    for leftover in (path, path + ".lock"):
        if os.path.exists(leftover):
            os.unlink(leftover)


@pytest.fixture
def files(tmp_path):
    out = []
    for i, value in enumerate(({"w": [1.0, 2.0]}, [1, 2, 3])):
        path = tmp_path / f"model{i}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=4))
        out.append(str(path))
    return out


def _env(name):
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", single_instance.ENV_NAME: name}


def _raw_client(name):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(name)
    sock.setblocking(False)
    return sock


def _recv_or_closed(sock):
    try:
        return sock.recv(16)
    except BlockingIOError:
        return None


def test_message_round_trip_and_rejects():
    paths = ["/models/a.pt", "/tmp/ünï cødé.gguf"]
    message = encode(paths)
    assert struct.unpack(">I", message[:4])[0] == len(message) - 4
    assert decode(message[4:]) == paths
    assert decode(json.dumps({"paths": ["", "/a\x00b", "/ok"]}).encode()) == ["/ok"]
    for bad in (b"\xff\xfe", b"[1, 2]", b'{"paths": "/etc/passwd"}', b'{"paths": [1]}', b"{",
                json.dumps({"paths": ["/x"] * (single_instance.MAX_PATHS + 1)}).encode()):
        with pytest.raises(ValueError):
            decode(bad)


def test_nobody_listening_means_this_process_serves(qtbot, name, monkeypatch):
    # A first launch does not wait for a window that is not there: its one attempt to connect ends
    # because no server exists, not because the connect timeout ran out, and it is not retried.
    connects = []

    class RecordingSocket(QLocalSocket):
        def waitForConnected(self, msecs=30_000):
            connected = super().waitForConnected(msecs)
            connects.append((connected, self.error()))
            return connected

    monkeypatch.setattr(single_instance, "QLocalSocket", RecordingSocket)
    sends = []

    def send(paths, socket_name):
        sends.append(socket_name)
        return send_paths(paths, socket_name)

    server = claim(["/x"], name, send=send)
    assert sends == [name]
    assert connects == [(False, QLocalSocket.LocalSocketError.ServerNotFoundError)]
    try:
        assert isinstance(server, InstanceServer)
        assert server.server.isListening()
        assert os.stat(name).st_mode & 0o077 == 0  # other users cannot send files to this window
    finally:
        server.close()


def test_second_launch_adds_files_to_running_window(qtbot, name, files):
    server = claim([], name)
    assert server is not None
    window = MainWindow()
    qtbot.addWidget(window)
    server.setParent(window)
    server.paths_received.connect(lambda received: open_forwarded(window, received))
    assert window.tabs.count() == 0

    # The real command line, in another process, from another working directory with relative paths.
    cwd = os.path.dirname(files[0])
    proc = subprocess.Popen([sys.executable, "-m", "airlock.gui.launcher", *map(os.path.basename, files)],
                            cwd=cwd, env=_env(name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        qtbot.waitUntil(lambda: proc.poll() is not None, timeout=60_000)
    finally:
        if proc.poll() is None:  # it opened a window of its own: the hand-over failed
            proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "already running" in err
    qtbot.waitUntil(lambda: window.tabs.count() == 2, timeout=10_000)
    assert [window.tabs.widget(i).path for i in range(2)] == files
    qtbot.waitUntil(lambda: not any(v.busy for v in window.views()), timeout=30_000)


def test_forwarded_paths_that_do_not_exist_are_ignored(qtbot, tmp_path, files):
    window = MainWindow()
    qtbot.addWidget(window)
    open_forwarded(window, [str(tmp_path / "gone.pt"), files[0]])
    assert [v.path for v in window.views()] == [files[0]]


def test_server_survives_hostile_peers(qtbot, name, files):
    server = InstanceServer(name)
    assert server.listen()
    received = []
    server.paths_received.connect(received.append)
    try:
        garbage = _raw_client(name)
        garbage.sendall(struct.pack(">I", 11) + b"not json!!!")
        huge = _raw_client(name)
        huge.sendall(struct.pack(">I", single_instance.MAX_MESSAGE + 1) + b"{")
        qtbot.waitUntil(lambda: _recv_or_closed(garbage) == b"" and _recv_or_closed(huge) == b"", timeout=5000)
        assert received == []

        # Byte by byte still works: the server reassembles the message.
        good = _raw_client(name)
        for byte in encode(files):
            good.sendall(bytes([byte]))
        qtbot.waitUntil(lambda: received == [files], timeout=5000)
        reply = b""

        def acked():
            nonlocal reply
            reply += _recv_or_closed(good) or b""
            return reply == ACK
        qtbot.waitUntil(acked, timeout=5000)
        for sock in (garbage, huge, good):
            sock.close()
    finally:
        server.close()


def test_stale_socket_file_is_reclaimed(qtbot, name):
    # A window that crashed leaves its socket file behind, with nobody accepting on it.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(name)
    dead.close()
    assert os.path.exists(name)
    server = claim([], name)
    try:
        assert server is not None and server.server.isListening()
    finally:
        server.close()


def test_screenshot_and_new_window_runs_never_hand_over(qtbot, name, files, tmp_path):
    server = InstanceServer(name)
    assert server.listen()
    received = []
    server.paths_received.connect(received.append)
    try:
        out = tmp_path / "shot.png"
        proc = subprocess.Popen([sys.executable, "-m", "airlock.gui.launcher", "--screenshot", str(out), files[0]],
                                env={**_env(name), "XDG_CONFIG_HOME": str(tmp_path / "cfg")},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            qtbot.waitUntil(lambda: proc.poll() is not None, timeout=120_000)
        finally:
            if proc.poll() is None:
                proc.kill()
        _, err = proc.communicate()
        assert proc.returncode == 0, err
        assert out.stat().st_size > 0
        assert received == []
    finally:
        server.close()


def test_a_socket_owned_by_another_user_is_not_trusted(qtbot, name, monkeypatch):
    # In a shared /tmp another user could listen at our socket's name to collect the paths we open.
    server = InstanceServer(name)
    assert server.listen()
    received = []
    server.paths_received.connect(received.append)
    try:
        monkeypatch.setattr(os, "getuid", lambda: os.stat(name).st_uid + 1)
        assert send_paths(["/secret/model.pt"], name) is False
        qtbot.wait(200)
        assert received == []
    finally:
        server.close()
