"""`s3://bucket/key` read by byte ranges through s3fs (the optional `s3` extra).

The same `RemoteSource` as http(s): a block cache, the per-file byte budget (`--max-remote-bytes`),
the scan's time budget, a failure kept and reported once. Only the way a range is fetched differs:
s3fs signs the requests (credentials, region and endpoint come from the usual AWS settings:
`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`…). s3fs rather than our own signer: SigV4,
credential chains and endpoint rules are a library's job, and s3fs is the one fsspec users have.
It is imported only for an `s3://` path; without it the file gets a clear finding, not a traceback.

Every answer is still checked here: the object's size is read once (HEAD) and every range must come
back exactly as long as asked, else the read fails closed with what the server did.
"""

from __future__ import annotations

import time
from typing import Any

from airlock.core.errors import LimitExceeded
from airlock.core.remote import BudgetExceeded, RemoteError, RemoteSource

INSTALL_HINT = "s3:// needs the s3 extra: pip install 'model-airlock[s3]'"


class S3Reader:
    """The object's handle: an s3fs filesystem and the key; `etag` for the result cache."""

    def __init__(self, fs: Any, key: str, deadline: float) -> None:
        self.fs = fs
        self.key = key
        self.deadline = deadline
        self.etag: str | None = None

    def close(self) -> None:
        return None  # s3fs keeps its own connection pool per filesystem


def _filesystem(timeout: float) -> Any:
    try:
        import s3fs
    except ImportError:
        raise RemoteError(INSTALL_HINT, 0) from None
    # One attempt per request: a retry loop inside botocore would hide a misbehaving server from the
    # scan's own time budget.
    config = {"connect_timeout": timeout, "read_timeout": timeout, "retries": {"max_attempts": 1}}
    fs = s3fs.S3FileSystem(config_kwargs=config)
    fs.retries = 1  # s3fs's own retry loop too (5 by default, with back-off)
    return fs


def _failed(what: str, exc: BaseException, offset: int) -> RemoteError:
    detail = f"{type(exc).__name__}: {exc}"
    return RemoteError(f"remote read failed: {what} ({detail[:300]})", offset)


class S3Source(RemoteSource):
    """An S3 object read by ranges (see RemoteSource for the cache and the budget)."""

    @classmethod
    def open_s3(cls, url: str, *, budget: int, timeout: float, time_budget: float,
                name: str | None = None) -> S3Source:
        key = url[len("s3://"):]
        if "/" not in key.strip("/"):
            raise RemoteError(f"not an s3:// object URL (s3://bucket/key): {url}", 0)
        reader = S3Reader(_filesystem(timeout), key, time.monotonic() + time_budget)
        try:
            info = reader.fs.info(key)
        except Exception as exc:  # noqa: BLE001 - s3fs, botocore and aiohttp raise many types; each is a finding
            raise _failed("cannot read the object's size", exc, 0) from None
        size = info.get("size") if isinstance(info, dict) else None
        if not isinstance(size, int) or size < 0 or info.get("type") != "file":
            raise RemoteError(f"remote read failed: {url} is not an object with a size", 0)
        etag = info.get("ETag")
        reader.etag = etag if isinstance(etag, str) else None
        return cls(reader, size, name=name or url, budget=budget)  # type: ignore[arg-type]

    def _fetch(self, start: int, stop: int) -> bytes:
        reader: S3Reader = self.reader  # type: ignore[assignment]
        try:
            if self.bytes_read + (stop - start) > self.budget:
                raise BudgetExceeded(f"not fully inspected: needs more than {self.budget:,} bytes of the "
                                     f"remote file (--max-remote-bytes; {self.bytes_read:,} read, "
                                     f"{stop - start:,} more asked at offset {start:,})", start)
            if time.monotonic() > reader.deadline:
                raise RemoteError("remote read failed: the file's time budget ran out", start)
            try:
                data = reader.fs.cat_file(reader.key, start=start, end=stop)
            except Exception as exc:  # noqa: BLE001 - as in open_s3
                raise _failed(f"asked for bytes {start:,}-{stop - 1:,}", exc, start) from None
            if not isinstance(data, bytes) or len(data) != stop - start:
                got = len(data) if isinstance(data, bytes) else type(data).__name__
                raise RemoteError(f"remote read failed: asked for bytes {start:,}-{stop - 1:,} "
                                  f"({stop - start:,} bytes), the server sent {got}", start)
        except LimitExceeded as exc:
            self.failure = self.failure or exc
            raise
        self.bytes_read += len(data)
        return data
