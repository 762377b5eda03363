"""A real local HTTP server honouring Range (stdlib http.server), for remote-scan tests.

`serve(root)` starts a ThreadingHTTPServer on 127.0.0.1 with a free port in a thread, serving the
files under `root` (laid out as org/name/resolve/<rev>/path for hf:// URLs with HF_ENDPOINT at it).
Each request is counted (`server.log`: (path, Range header, status, body bytes it set out to send)).

`server.mode` makes it misbehave, to check a remote scan fails closed and never hangs:
  "ok"          honour Range (206 with Content-Range), 416 past the end
  "ignore"      answer 200 with the whole file to every request
  "short"       promise the range (Content-Length) but send half of it, then close
  "wrong"       send the range starting 16 bytes later than asked (Content-Range says so)
  "liar"        claim twice the real size in Content-Range (and send what exists)
  "stall"       send the headers, then nothing (until the client gives up)
  "drop"        close the connection without answering
  "redirect"    answer each /resolve/ request with a 302 to /cdn/… (X-Linked-Etag set), as the hub does
Mode "*-after-first" variants ("short-after-first", "stall-after-first", "drop-after-first",
"wrong-after-first", "liar-after-first") behave for the first request and misbehave afterwards.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LFS_OID = "f" * 64


class RangeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.mode = "ok"
        self.requests = 0
        self.log: list[tuple[str, str | None, int, int]] = []
        self.lock = threading.Lock()
        self.stop_stalls = threading.Event()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, relative: str) -> str:
        return f"{self.endpoint}/{relative.lstrip('/')}"

    def body_bytes(self, path_suffix: str = "") -> int:
        with self.lock:
            return sum(n for p, _, _, n in self.log if p.endswith(path_suffix))


class _Handler(BaseHTTPRequestHandler):
    server: RangeServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers and CDNs

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # http.server's name for it
        server = self.server
        with server.lock:
            server.requests += 1
            first = server.requests == 1
        mode = server.mode
        if mode.endswith("-after-first"):
            mode = "ok" if first else mode[: -len("-after-first")]
        path = self.path.split("?", 1)[0]
        if mode == "redirect" and "/resolve/" in path:
            self.send_response(302)
            self.send_header("Location", path.replace("/resolve/", "/cdn/", 1))
            self.send_header("X-Linked-Etag", f'"{LFS_OID}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._record(path, 302, 0)
            return
        real = server.root / path.lstrip("/").replace("/cdn/", "/resolve/", 1)
        if not real.is_file():
            self.send_error(404)
            return
        size = real.stat().st_size
        if mode == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        wanted = _parse_range(self.headers.get("Range"), size)
        if mode == "ignore" or wanted is None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("ETag", '"whole"')
            self.end_headers()
            self._send_file(real, 0, size, path, 200)
            return
        start, stop = wanted
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._record(path, 416, 0)
            return
        claimed_total = size * 2 if mode == "liar" else size
        if mode == "wrong":
            start = min(start + 16, size - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{claimed_total}")
        self.send_header("Content-Length", str(stop - start))
        self.send_header("ETag", '"etag-of-file"')
        self.end_headers()
        if mode == "stall":
            self.wfile.flush()
            server.stop_stalls.wait(60)
            self.close_connection = True
            return
        if mode == "short":
            self._send_file(real, start, start + (stop - start) // 2, path, 206)
            self.close_connection = True
            return
        self._send_file(real, start, stop, path, 206)

    def _send_file(self, real: Path, start: int, stop: int, path: str, status: int) -> None:
        # Counted before it is sent: the client may have it (and the test look at the count) before
        # this thread runs again.
        self._record(path, status, max(min(stop, real.stat().st_size) - start, 0))
        sent = 0
        with open(real, "rb") as fh:
            fh.seek(start)
            while sent < stop - start:
                chunk = fh.read(min(1 << 20, stop - start - sent))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except OSError:  # the client hung up (it had what it needed, or gave up)
                    self.close_connection = True
                    break
                sent += len(chunk)

    def _record(self, path: str, status: int, sent: int) -> None:
        with self.server.lock:
            self.server.log.append((path, self.headers.get("Range"), status, sent))


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, stop) of `bytes=a-b` / `bytes=a-` / `bytes=-n`, stop exclusive, clipped to the size."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes="):].partition("-")
    if not first:
        n = int(last)
        return max(size - n, 0), size
    start = int(first)
    stop = size if not last else min(int(last) + 1, size)
    return start, stop


@contextlib.contextmanager
def serve(root: Path) -> Iterator[RangeServer]:
    server = RangeServer(root)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop_stalls.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def hf_path(root: Path, repo: str, revision: str, name: str) -> Path:
    """Where a file of hf://repo@revision/name lives under the server's root."""
    path = root / repo / "resolve" / revision / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def sparse_file(path: Path, size: int) -> None:
    """Extend a file to `size` bytes without writing them (a hole: cheap on disk)."""
    with open(path, "r+b") as fh:
        fh.truncate(size)
    os.utime(path, (time.time(), time.time()))


def big_safetensors(path: Path, size: int) -> None:
    """A SafeTensors file of one F32 tensor of `size` bytes, its data a hole (sparse)."""
    n = size // 4
    header = b'{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[%d],"data_offsets":[0,%d]}}' % (n, 4 * n)
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    sparse_file(path, 8 + len(header) + 4 * n)


def big_torch_zip(path: Path, size: int) -> None:
    """A real torch.save checkpoint whose storage member is rewritten as a `size`-byte stored member
    of zeros left as a hole in the file (zip written by hand: zipfile would write every byte)."""
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        members = [(info.filename, zf.read(info)) for info in zf.infolist()]
    central = b""
    with open(path, "wb") as fh:
        for name, data in members:
            big = name.endswith("/data/0")
            length = size if big else len(data)
            crc = 0 if big else zipfile.crc32(data)  # type: ignore[attr-defined]
            offset = fh.tell()
            raw = name.encode()
            fh.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, length, length, len(raw), 0) + raw)
            if big:
                fh.seek(length, 1)  # a hole: nothing written
            else:
                fh.write(data)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, length, length,
                                   len(raw), 0, 0, 0, 0, 0, offset) + raw
        start = fh.tell()
        fh.write(central)
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), start, 0))
