"""File access: a file on disk (memory-mapped, never read whole) or bytes from a container member.

Parsers see only a `Source`: its size, `read(offset, n)` and a sliceable `buffer`. Offsets are
relative to the source; `member` names the container member it came from, if any.
"""

from __future__ import annotations

import io
import mmap
import os
from types import TracebackType
from typing import Any

HEAD_BYTES = 4096
SMALL_FILE_BYTES = 64 * 1024  # read, not mapped


class Source:
    def __init__(
        self,
        buffer: bytes | mmap.mmap,
        *,
        name: str,
        member: str | None = None,
        path: str | None = None,
    ) -> None:
        self.buffer = buffer
        self.name = name
        self.member = member
        # The file on disk this source is (or lives in), for sidecar files. A str, not a pathlib
        # Path: importing pathlib costs every scan ~3 ms of start-up.
        self.path = path
        self.size = len(buffer)
        self._closer: mmap.mmap | None = None
        self._fd: int | None = None  # the mapped file, for read()
        self._head: bytes | None = None
        self.cache: dict[str, Any] = {}  # facts several sniffers need (a zip listing), read once

    @classmethod
    def from_bytes(cls, data: bytes, name: str, member: str | None = None,
                   path: str | None = None) -> Source:
        return cls(data, name=name, member=member, path=path)

    @classmethod
    def open(cls, path: str | os.PathLike[str], name: str | None = None) -> Source:
        """Map a file read-only; nothing is read until a parser slices the buffer. A small file
        is read instead: mapping it costs more system calls than reading it."""
        path = os.fspath(path)
        with open(path, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size <= SMALL_FILE_BYTES:
                data = fh.read(size + 1)  # +1: a file that grew since fstat is still read whole
                if len(data) <= SMALL_FILE_BYTES:
                    return cls(data, name=name or str(path), path=path)
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            fd = os.dup(fh.fileno()) if hasattr(os, "pread") else None
        source = cls(mapped, name=name or str(path), path=path)
        source._closer = mapped
        source._fd = fd
        return source

    def head(self, n: int = HEAD_BYTES) -> bytes:
        # Every format's sniffer asks for the head: slice the map once per source.
        if n <= HEAD_BYTES:
            if self._head is None:
                self._head = bytes(self.buffer[:HEAD_BYTES])
            return self._head[:n]
        return bytes(self.buffer[:n])

    def read(self, offset: int, n: int) -> bytes:
        """Up to n bytes at offset (fewer at the end of the source)."""
        if offset < 0 or n < 0:
            raise ValueError("negative offset or length")
        if self._fd is not None:
            # Read, not sliced from the map: where the page cache holds a file in large folios
            # (Linux 6.x), touching one byte of a mapping maps, and counts as resident, up to 2 MiB
            # around it; a zip's 500 local headers then made a scan look 1 GB big (measured).
            n = min(n, self.size - offset)
            return os.pread(self._fd, n, offset) if n > 0 else b""
        return bytes(self.buffer[offset : offset + n])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._closer is not None:
            try:
                self._closer.close()
            except BufferError:
                # A memoryview into the map is still alive (a view holds it); the OS unmaps at exit.
                pass
            self._closer = None

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SourceFile(io.RawIOBase):
    """A read-only, seekable file over a Source: zipfile and tarfile read it through Source.read."""

    def __init__(self, source: Source) -> None:
        super().__init__()
        self._source = source
        self._size = source.size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, target: Any) -> int:  # io.RawIOBase's: any writable buffer
        data = self._source.read(self._pos, len(target))
        n = len(data)
        target[:n] = data
        self._pos += n
        return n
