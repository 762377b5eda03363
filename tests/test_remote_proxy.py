"""Remote reads through a proxy (HTTP_PROXY / HTTPS_PROXY / NO_PROXY): a real forward proxy started
here on 127.0.0.1 (plain requests of the whole URL, CONNECT tunnels for https) in front of the real
range server, over plain HTTP and over TLS with a certificate made here."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import corpus
import pytest
import range_server

from airlock.core.scan import scan_file


class Proxy:
    """A forward proxy: reads the first request of a connection, records it, opens the connection it
    names and then relays bytes both ways until either side closes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.requests: list[tuple[str, str, str | None]] = []  # method, target, Proxy-Authorization
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            text, _, rest = head.partition(b"\r\n\r\n")
            lines = text.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            self.requests.append((method, target, headers.get("Proxy-Authorization")))
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                url = target.split("://", 1)[1]
                hostport, _, path = url.partition("/")
                host, port = hostport.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                kept = [line for line in lines[1:] if not line.startswith("Proxy-Authorization")]
                upstream.sendall("\r\n".join([f"{method} /{path} {version}", *kept]).encode("latin-1")
                                 + b"\r\n\r\n" + rest)
            with upstream:
                _relay(client, upstream)

    def close(self) -> None:
        self.listener.close()


def _relay(a: socket.socket, b: socket.socket) -> None:
    while True:
        ready, _, _ = select.select([a, b], [], [], 30)
        if not ready:
            return
        for sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            (b if sock is a else a).sendall(data)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    running = Proxy()
    yield running
    running.close()


def _served(root: Path) -> Path:
    path = root / "evil.pkl"
    path.write_bytes(corpus.call("posix", "system", corpus.MARKER))
    return path


def _verdict(target: str) -> tuple[str, str]:
    result = scan_file(target)
    try:
        return result.format, result.severity.label
    finally:
        result.close()


def test_http_through_the_proxy_and_no_proxy_bypasses_it(tmp_path: Path, proxy: Proxy,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    local = _verdict(str(_served(tmp_path)))
    monkeypatch.setenv("HTTP_PROXY", proxy.address.replace("http://", "http://user:s%40cret@"))
    with range_server.serve(tmp_path) as server:
        assert _verdict(server.url("evil.pkl")) == local == ("pickle", "critical")
        assert proxy.requests and all(m == "GET" and t == server.url("evil.pkl") for m, t, _ in proxy.requests)
        expected = "Basic " + base64.b64encode(b"user:s@cret").decode()
        assert all(auth == expected for _, _, auth in proxy.requests)
        seen = len(proxy.requests)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        assert _verdict(server.url("evil.pkl")) == local
        assert len(proxy.requests) == seen  # straight to the server
        assert server.requests > 0


def test_https_through_a_connect_tunnel(tmp_path: Path, proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the reader's default context trusts it, and only it
    monkeypatch.setenv("HTTPS_PROXY", proxy.address)
    local = _verdict(str(_served(tmp_path)))
    with range_server.serve(tmp_path) as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        url = server.url("evil.pkl").replace("http://", "https://")
        assert _verdict(url) == local
        assert proxy.requests[0][:2] == ("CONNECT", url.split("/")[2])
        assert server.requests > 0  # the range reads reached the server through the tunnel


def test_an_unsupported_proxy_is_a_finding_not_a_bypass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1")
    with range_server.serve(tmp_path) as server:
        _served(tmp_path)
        result = scan_file(server.url("evil.pkl"))
        try:
            assert result.severity.label == "high"
            assert any("unsupported proxy" in f.message for f in result.findings)
        finally:
            result.close()
        assert server.requests == 0


def _certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
