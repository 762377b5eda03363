"""Remote files read by HTTP range requests: `http(s)://…` and `hf://org/name[@revision]/path`.

A parser reads a few megabytes of a multi-gigabyte checkpoint (a header, a zip's central directory,
a pickle), so a remote file is judged by fetching only those ranges. `RemoteSource` is a `Source`
(size, head, read) over one URL with a block cache and a per-file byte budget
(`Limits.max_remote_bytes`): past it the scan stops with a high "not fully inspected: needs more
than N bytes" finding, never a silent full download.

The reader is our own, over the standard library's `http.client`, not fsspec's HTTP filesystem:
fsspec + aiohttp would add two dependency trees and an event loop thread to every scan's start-up
for a feature that needs one GET with a Range header; and a security tool must check every answer
itself (the status, Content-Range's start, end and total against what was asked, the body's exact
length, the total staying the same), bound every socket operation with a timeout and the whole file
with the scan's time budget, and fail closed with a message saying what the server did. Those are
the few lines below.

`hf://org/name[@revision]/path` resolves to `$HF_ENDPOINT/org/name/resolve/<revision>/path`
(default https://huggingface.co). A URL is never looked up as a local path.

Files a parser hands to the isolated child (ONNX, Keras/HDF5) are read by path there; a remote
source has no path, so the child is sent the bytes, read through this source within the same byte
budget (a model bigger than the budget gets the budget finding). Sidecar files (ONNX external data,
shards of an index, a model folder's code) are not fetched: they are looked up on disk only.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.parse
from collections import OrderedDict
from typing import TYPE_CHECKING

from airlock.core.errors import LimitExceeded
from airlock.core.findings import Rule, Severity
from airlock.core.source import Source
from airlock.core.text import safe_text

if TYPE_CHECKING:
    from airlock.core.context import ScanContext
    from airlock.core.tree import Node

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
# Blocks of 64 KiB: a safetensors header, a zip's end records or a small pickle are one or two
# requests; a sequential read (the pickle machine's growing windows) asks for many blocks in one.
BLOCK = 64 * 1024
# Up to 16 MiB of blocks kept: a big checkpoint's central directory (~100 bytes a member) and its
# pickle (a few MiB) both stay cached while the parsers go back and forth between them.
CACHE_BLOCKS = 256
MAX_REDIRECTS = 5
USER_AGENT = "airlock (range reader)"


class RemoteReadFailed(Rule):
    id = "RMT001"
    severity = Severity.HIGH
    title = "Remote file could not be read as asked"
    help = "The server did not answer a range request correctly (it ignored Range, sent short or wrong " \
        "ranges, changed the size, stalled or dropped the connection); the rest was not inspected."
    incomplete = True


class RemoteBudget(Rule):
    id = "RMT002"
    severity = Severity.HIGH
    title = "Remote file needs more bytes than the budget"
    help = "Inspecting the file needs more bytes than --max-remote-bytes allows; the rest was not " \
        "downloaded and not inspected. Raise the budget or scan a local copy."
    incomplete = True


class WholeFileFetched(Rule):
    id = "RMT003"
    severity = Severity.INFO
    title = "Server ignored Range: the whole file was downloaded"
    help = "The server answered a range request with the whole file; it fit in --max-remote-bytes and " \
        "was read whole."


class RemoteError(LimitExceeded):
    """A range read that failed: the scan of the file stops here (a finding, never a hang)."""


class BudgetExceeded(LimitExceeded):
    """The per-file byte budget would be passed."""


def resolve(url: str) -> str:
    """The http(s) URL to read: hf://org/name[@revision]/path on $HF_ENDPOINT, others unchanged."""
    if not url.lower().startswith("hf://"):
        return url
    rest = url[len("hf://"):]
    parts = rest.split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"not an hf:// URL (hf://org/name[@revision]/path): {url}")
    org, name, path = parts
    name, _, revision = name.partition("@")
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_HF_ENDPOINT).rstrip("/")
    quote = urllib.parse.quote
    return f"{endpoint}/{quote(org)}/{quote(name)}/resolve/{quote(revision or 'main', safe='')}/{quote(path)}"


class _Answer:
    """What one GET answered: status, headers, and the body still to read."""

    def __init__(self, response: http.client.HTTPResponse, url: str) -> None:
        self.response = response
        self.status = response.status
        self.url = url
        self.headers = response.headers


def proxy_for(parts: urllib.parse.SplitResult) -> urllib.parse.SplitResult | None:
    """The proxy of `HTTPS_PROXY`/`HTTP_PROXY` (lower case first, as curl does) for this URL, unless
    `NO_PROXY` names its host; None without one. Only http:// proxies: another scheme is refused
    (RemoteError), never silently bypassed."""
    environment = {name.lower(): value for name, value in os.environ.items()
                   if name.lower() in ("http_proxy", "https_proxy", "no_proxy") and value}
    for name, value in os.environ.items():  # the lower-case spelling wins where both are set
        if name in ("http_proxy", "https_proxy", "no_proxy") and value:
            environment[name] = value
    address = environment.get(f"{parts.scheme}_proxy")
    if not address:
        return None
    import urllib.request

    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
    if bypass(parts.hostname or "", {"no": environment.get("no_proxy", "")}):
        return None
    proxy = urllib.parse.urlsplit(address if "://" in address else "http://" + address)
    if proxy.scheme != "http" or not proxy.hostname:
        raise RemoteError(f"remote read failed: unsupported proxy {safe_text(address, 200)} "
                          "(only http:// proxies, with CONNECT for https)")
    return proxy


def _proxy_authorization(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    import base64

    user = urllib.parse.unquote(proxy.username)
    password = urllib.parse.unquote(proxy.password or "")
    return {"Proxy-Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class HttpRangeReader:
    """GETs with a Range header on one URL, over one kept-alive connection, every answer checked."""

    def __init__(self, url: str, *, timeout: float, deadline: float) -> None:
        self.url = resolve(url)
        self.timeout = timeout
        self.deadline = deadline  # time.monotonic() past which nothing more is read
        self.etag: str | None = None  # the hub's own hash (X-Linked-Etag: the LFS sha256) or ETag
        self._conn: http.client.HTTPConnection | None = None
        self._conn_key: tuple[str, str] | None = None
        self._proxy_headers: dict[str, str] = {}  # Proxy-Authorization of a plain http proxy

    # Connections

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"remote read failed: unsupported URL {url!r}")
        key = (parts.scheme, parts.netloc)
        proxy = proxy_for(parts)
        if self._conn is None or self._conn_key != key:
            self.close()
            self._conn = self._open(parts, proxy)
            self._conn_key = key
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if proxy is not None and parts.scheme == "http":  # a plain request goes to the proxy, whole URL
            target = urllib.parse.urlunsplit((parts.scheme, parts.netloc, target, "", ""))
        return self._conn, target

    def _open(self, parts: urllib.parse.SplitResult, proxy: urllib.parse.SplitResult | None,
              ) -> http.client.HTTPConnection:
        https = parts.scheme == "https"
        if proxy is None:
            cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
            return cls(parts.hostname or "", parts.port, timeout=self._timeout())
        # An http:// proxy: https through a CONNECT tunnel (TLS end to end, the host's certificate
        # checked as without a proxy), http as requests of the whole URL.
        auth = _proxy_authorization(proxy)
        if https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                proxy.hostname or "", proxy.port or 80, timeout=self._timeout())
            conn.set_tunnel(parts.hostname or "", parts.port or 443, headers=auth)
            return conn
        self._proxy_headers = auth
        return http.client.HTTPConnection(proxy.hostname or "", proxy.port or 80, timeout=self._timeout())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._proxy_headers = {}

    def _timeout(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RemoteError("remote read failed: the time budget ran out while reading from the server")
        return min(self.timeout, left)

    # Requests

    def get(self, start: int, end: int | None) -> _Answer:
        """Send GET Range: bytes=start-end (end inclusive; None: to the end), following redirects.
        A connection the server closed between two requests is opened again once."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._get_once(url, start, end)
            if answer.status in (301, 302, 303, 307, 308):
                location = answer.headers.get("Location")
                if self.etag is None:  # the hub's resolve answer names the LFS object before redirecting
                    self.etag = answer.headers.get("X-Linked-Etag") or None
                answer.response.read(64 * 1024)
                answer.response.close()
                if not location:
                    raise RemoteError(f"remote read failed: HTTP {answer.status} without a Location")
                url = urllib.parse.urljoin(url, location)
                self.close()  # another host, or the same one: a fresh connection either way
                continue
            if url != self.url and answer.status in (200, 206):
                self.url = url  # read the redirect's target from now on (the hub's CDN)
            return answer
        raise RemoteError(f"remote read failed: more than {MAX_REDIRECTS} redirects")

    def _get_once(self, url: str, start: int, end: int | None) -> _Answer:
        headers = {"Range": f"bytes={start}-{'' if end is None else end}", "User-Agent": USER_AGENT,
                   "Accept-Encoding": "identity"}
        for attempt in (0, 1):
            conn, target = self._connection(url)
            headers.update(self._proxy_headers)
            try:
                conn.timeout = self._timeout()
                if conn.sock is not None:
                    conn.sock.settimeout(conn.timeout)
                conn.request("GET", target, headers=headers)
                return _Answer(conn.getresponse(), url)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if attempt:
                    raise RemoteError(f"remote read failed: the server dropped the connection ({exc})",
                                      start) from None
            except TimeoutError:
                self.close()
                raise RemoteError(f"remote read failed: the server did not answer within {self.timeout:g} s "
                                  f"(asked for bytes from offset {start:,})", start) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise RemoteError(f"remote read failed: {type(exc).__name__}: {exc}", start) from None
        raise AssertionError("unreachable")

    def body(self, answer: _Answer, length: int, offset: int) -> bytes:
        """Exactly `length` bytes of the answer's body, read under the timeout and the deadline."""
        parts: list[bytes] = []
        got = 0
        try:
            while got < length:
                if self._conn is not None and self._conn.sock is not None:
                    self._conn.sock.settimeout(self._timeout())
                chunk = answer.response.read1(min(length - got, 1 << 20))
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
        except TimeoutError:
            self.close()
            raise RemoteError(f"remote read failed: the server stalled: no data for {self.timeout:g} s at "
                              f"offset {offset + got:,}", offset + got) from None
        except (http.client.IncompleteRead, OSError, http.client.HTTPException) as exc:
            self.close()
            raise RemoteError(f"remote read failed: the connection broke at offset {offset + got:,} "
                              f"({type(exc).__name__})", offset + got) from None
        if got < length:
            self.close()
            raise RemoteError(f"remote read failed: short range: {got:,} of {length:,} bytes at offset "
                              f"{offset:,}", offset + got)
        return b"".join(parts)

    def finish(self, answer: _Answer) -> None:
        """Leave the connection ready for the next request (or drop it if the body is not done)."""
        if not answer.response.isclosed():
            self.close()


def _content_range(answer: _Answer) -> tuple[int, int, int]:
    """(first, last, total) of a 206's Content-Range: bytes first-last/total."""
    value = answer.headers.get("Content-Range", "")
    try:
        unit, _, spec = value.strip().partition(" ")
        span, _, total = spec.partition("/")
        first, _, last = span.partition("-")
        if unit.lower() != "bytes":
            raise ValueError(unit)
        return int(first), int(last), int(total)
    except ValueError:
        raise RemoteError("remote read failed: a 206 answer without a usable Content-Range "
                          f"({value[:80]!r})") from None


class RemoteSource(Source):
    """A remote file read by ranges, through a block cache, within a byte budget.

    `bytes_read` counts the body bytes the server sent (what a report shows and the budget counts).
    `failure` is the first read that failed (RemoteError or the budget), kept so that the scan
    reports it even if a parser caught the exception."""

    def __init__(self, reader: HttpRangeReader, size: int, *, name: str, budget: int,
                 data: bytes | None = None) -> None:
        super().__init__(name=name, size=size, path=None)  # no local path: the isolated child gets bytes
        self.reader = reader
        self.budget = budget
        self.bytes_read = 0
        self.failure: LimitExceeded | None = None
        self.whole = data  # the server ignored Range and sent everything (it fit in the budget)
        self._blocks: OrderedDict[int, bytes] = OrderedDict()

    @classmethod
    def open_url(cls, url: str, *, budget: int, timeout: float, time_budget: float,
                 name: str | None = None) -> RemoteSource:
        """Ask for the first block: its Content-Range gives the size. Raises RemoteError."""
        reader = HttpRangeReader(url, timeout=timeout, deadline=time.monotonic() + time_budget)
        try:
            first = min(BLOCK, budget)
            answer = reader.get(0, first - 1)
            if answer.status == 206:
                start, last, total = _content_range(answer)
                if start != 0 or last < 0 or total < 0 or last >= total or last > first - 1:
                    raise RemoteError(f"remote read failed: asked for bytes 0-{first - 1}, the server sent "
                                      f"{start}-{last}/{total}", 0)
                data = reader.body(answer, last + 1, 0)
                reader.finish(answer)
                reader.etag = reader.etag or answer.headers.get("ETag") or None
                source = cls(reader, total, name=name or url, budget=budget)
                source.bytes_read = len(data)
                source._keep(0, data)
                return source
            if answer.status == 200:
                return cls._whole(reader, answer, url, budget, name)
            if answer.status == 416:  # an empty file has no byte 0
                reader.finish(answer)
                return cls(reader, 0, name=name or url, budget=budget)
            reader.close()
            raise RemoteError(f"cannot read the remote file: HTTP {answer.status} {answer.response.reason}")
        except BaseException:
            reader.close()
            raise

    @classmethod
    def _whole(cls, reader: HttpRangeReader, answer: _Answer, url: str, budget: int,
               name: str | None) -> RemoteSource:
        """A 200 to a range request: the server ignores Range. Read the whole body only if its
        declared length fits the budget; else stop before reading it."""
        declared = answer.headers.get("Content-Length")
        if declared is None or not declared.strip().isdigit():
            raise RemoteError("remote read failed: the server ignores Range requests and does not say the "
                              "file's size; not downloaded")
        size = int(declared)
        if size > budget:
            raise BudgetExceeded(f"not fully inspected: the server ignores Range requests (it answered "
                                 f"with the whole file, {size:,} bytes), and reading it needs more than "
                                 f"{budget:,} bytes (--max-remote-bytes); not downloaded")
        data = reader.body(answer, size, 0)
        reader.finish(answer)
        reader.etag = reader.etag or answer.headers.get("ETag") or None
        source = cls(reader, size, name=name or url, budget=budget, data=data)
        source.bytes_read = size
        return source

    def _keep(self, index: int, data: bytes) -> None:
        self._blocks[index] = data
        self._blocks.move_to_end(index)
        while len(self._blocks) > CACHE_BLOCKS:
            self._blocks.popitem(last=False)

    def _read(self, offset: int, n: int) -> bytes:
        if self.whole is not None:
            return self.whole[offset:offset + n]
        if self.failure is not None:  # a failed server is not asked again (and again) by every parser
            raise type(self.failure)(self.failure.message, self.failure.offset)
        first, last = offset // BLOCK, (offset + n - 1) // BLOCK
        blocks: list[bytes] = []
        i = first
        while i <= last:
            cached = self._blocks.get(i)
            if cached is not None:
                self._blocks.move_to_end(i)
                blocks.append(cached)
                i += 1
                continue
            j = i  # the run of missing blocks from i: one request for all of them
            while j + 1 <= last and (j + 1) not in self._blocks:
                j += 1
            data = self._fetch(i * BLOCK, min((j + 1) * BLOCK, self.size))
            for k in range(i, j + 1):
                block = data[(k - i) * BLOCK:(k - i + 1) * BLOCK]
                self._keep(k, block)
                blocks.append(block)
            i = j + 1
        joined = blocks[0] if len(blocks) == 1 else b"".join(blocks)
        start = offset - first * BLOCK
        return joined[start:start + n]

    def _fetch(self, start: int, stop: int) -> bytes:
        try:
            if self.bytes_read + (stop - start) > self.budget:
                raise BudgetExceeded(f"not fully inspected: needs more than {self.budget:,} bytes of the "
                                     f"remote file (--max-remote-bytes; {self.bytes_read:,} read, "
                                     f"{stop - start:,} more asked at offset {start:,})", start)
            answer = self.reader.get(start, stop - 1)
            if answer.status != 206:
                self.reader.close()
                what = ("ignored Range (sent the whole file)" if answer.status == 200
                        else f"answered HTTP {answer.status}")
                raise RemoteError(f"remote read failed: asked for bytes {start:,}-{stop - 1:,}, the server "
                                  f"{what}", start)
            first, last, total = _content_range(answer)
            if total != self.size:
                self.reader.close()
                raise RemoteError(f"remote read failed: the file's size changed from {self.size:,} to "
                                  f"{total:,} bytes during the scan (or the server lies about it)", start)
            if (first, last) != (start, stop - 1):
                self.reader.close()
                raise RemoteError(f"remote read failed: wrong range: asked for bytes {start:,}-{stop - 1:,}, "
                                  f"the server sent {first:,}-{last:,}", start)
            data = self.reader.body(answer, stop - start, start)
            self.reader.finish(answer)
        except LimitExceeded as exc:
            self.failure = self.failure or exc
            raise
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        self.reader.close()
        self._blocks.clear()


def note(source: RemoteSource, root: Node, ctx: ScanContext) -> None:
    """Record on the file's node what reading it remotely cost and met."""
    root.attrs["bytes_read"] = source.bytes_read
    if source.reader.etag:
        root.attrs["etag"] = safe_text(source.reader.etag.strip('"'), 200)
    failure = source.failure
    if failure is not None:
        rule = RemoteBudget if isinstance(failure, BudgetExceeded) else RemoteReadFailed
        ctx.report(rule, safe_text(failure.message, 600), node=root, offset=failure.offset)
    elif source.whole is not None:
        ctx.report(WholeFileFetched, "the server ignored Range requests: the whole file "
                   f"({source.size:,} bytes, within --max-remote-bytes) was downloaded to inspect it",
                   node=root, offset=0)
