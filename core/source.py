"""What every parser reads: a `Source` with a size, its head and `read(offset, n)`.

No parser touches a memory map. A file that shrinks while a mapped page is read kills the process
with SIGBUS (no Python handler can resume it); read with `pread`, the same shrink is a short read,
which becomes a "truncated" finding. A subclass implements `_read` (a file, bytes in memory, a
window of another source, a decompressed stream, and later a remote file read by ranges).

Byte walkers (the pickle machine, the ONNX wire walk) index a source like bytes through
`view()`: the bytes themselves when they are in memory, else a `PagedView` that reads a window
at a time.
"""

from __future__ import annotations

import io
import os
from types import TracebackType
from typing import Any

from airlock.core.errors import FormatError

HEAD_BYTES = 4096
URL_SCHEMES = ("http://", "https://", "hf://", "s3://")  # read by airlock.core.remote, never as local paths
SMALL_FILE_BYTES = 64 * 1024  # read whole at open: fewer system calls than reading it in pieces


class Source:
    """A read-only sequence of `size` bytes. Offsets are relative to the source; `member` names the
    container member it came from, if any; `path` is the file on disk it is (or lives in)."""

    in_memory = False  # True when read() is a slice of bytes already held
    streamed = False  # True when a read behind the last one starts over (a long decompressed stream)

    def __init__(self, *, name: str, size: int, member: str | None = None, path: str | None = None) -> None:
        self.name = name
        self.member = member
        # A str, not a pathlib Path: importing pathlib costs every scan ~3 ms of start-up.
        self.path = path
        self.size = size
        self._head: bytes | None = None
        self.cache: dict[str, Any] = {}  # facts several sniffers need (a zip listing), read once

    # What a subclass implements.

    def _read(self, offset: int, n: int) -> bytes:
        """Exactly n bytes at offset (0 <= offset, n > 0, offset + n <= size)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (a file descriptor)."""

    # What parsers use.

    def read(self, offset: int, n: int) -> bytes:
        """Up to n bytes at offset (fewer at the end of the source, none past it)."""
        if offset < 0 or n < 0:
            raise ValueError("negative offset or length")
        n = min(n, self.size - offset)
        return self._read(offset, n) if n > 0 else b""

    def head(self, n: int = HEAD_BYTES) -> bytes:
        # Every format's sniffer asks for the head: read it once per source.
        if n <= HEAD_BYTES:
            if self._head is None:
                self._head = self.read(0, HEAD_BYTES)
            return self._head[:n]
        return self.read(0, n)

    def view(self) -> Any:
        """The source indexable like bytes by offset (`v[i]`, `v[a:b]`, `len(v)`, `v.find`)."""
        return PagedView(self)

    def slice(self, offset: int, length: int, *, name: str, member: str | None = None) -> Source:
        """A window of this source, read through it: nothing is copied."""
        return SliceSource(self, offset, length, name=name, member=member)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, name: str, member: str | None = None,
                   path: str | None = None) -> Source:
        return MemorySource(data, name=name, member=member, path=path)

    @classmethod
    def open(cls, path: str | os.PathLike[str], name: str | None = None) -> Source:
        """A file on disk, read with pread; nothing is read until a parser asks. A small file is
        read whole at once."""
        path = os.fspath(path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            size = os.fstat(fd).st_size
            if size <= SMALL_FILE_BYTES:
                data = _read_fd(fd, 0, SMALL_FILE_BYTES + 1)  # +1: a file that grew since fstat
                if len(data) <= SMALL_FILE_BYTES:
                    os.close(fd)
                    return MemorySource(data, name=name or path, path=path)
        except BaseException:
            os.close(fd)
            raise
        return FileSource(fd, size, name=name or path, path=path)

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MemorySource(Source):
    """Bytes held in memory (a small file, a decompressed member). Never copied to be read."""

    in_memory = True

    def __init__(self, data: bytes | bytearray | memoryview, *, name: str, member: str | None = None,
                 path: str | None = None) -> None:
        super().__init__(name=name, size=len(data), member=member, path=path)
        self.data = data
        self._mv = memoryview(data)

    def _read(self, offset: int, n: int) -> bytes:
        return bytes(self._mv[offset : offset + n])

    def view(self) -> Any:
        return self.data


class FileSource(Source):
    """A file on disk, read with pread. A read that comes back short of the size the file had when
    it was opened means the file shrank under the scan: a FormatError saying so, never SIGBUS."""

    def __init__(self, fd: int, size: int, *, name: str, path: str | None = None) -> None:
        super().__init__(name=name, size=size, path=path)
        self._fd: int | None = fd

    def _read(self, offset: int, n: int) -> bytes:
        if self._fd is None:
            raise ValueError("read from a closed source")
        data = _read_fd(self._fd, offset, n)
        if len(data) < n:
            raise FormatError(f"truncated: the file shrank while it was read: {n:,} bytes expected at "
                              f"offset {offset:,}, {len(data):,} there now", offset + len(data))
        return data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def is_url(path: object) -> bool:
    """A path argument that names a remote file (airlock.core.remote reads it; importing that module
    costs every scan the http client's import, so this check lives here)."""
    return isinstance(path, str) and path[:8].lower().startswith(URL_SCHEMES)


def _read_fd(fd: int, offset: int, n: int) -> bytes:
    """n bytes at offset, or fewer at the end of the file (pread may return less than asked)."""
    parts: list[bytes] = []
    done = 0
    while done < n:
        if hasattr(os, "pread"):
            chunk = os.pread(fd, n - done, offset + done)
        else:  # Windows: a seek and a read (a source is read by one thread at a time)
            os.lseek(fd, offset + done, os.SEEK_SET)
            chunk = os.read(fd, n - done)
        if not chunk:
            break
        parts.append(chunk)
        done += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class SliceSource(Source):
    """`length` bytes of another source from `offset` (a stored zip member, trailing bytes)."""

    def __init__(self, parent: Source, offset: int, length: int, *, name: str,
                 member: str | None = None) -> None:
        length = max(0, min(length, parent.size - offset))
        super().__init__(name=name, size=length, member=member, path=parent.path)
        self.parent = parent
        self.offset = offset

    def _read(self, offset: int, n: int) -> bytes:
        return self.parent.read(self.offset + offset, n)

    def slice(self, offset: int, length: int, *, name: str, member: str | None = None) -> Source:
        length = max(0, min(length, self.size - offset))
        return SliceSource(self.parent, self.offset + offset, length, name=name, member=member)


_MIN_STEP = 64 * 1024
_MAX_STEP = 1 << 20


class PagedView:
    """A source indexed like bytes by absolute offset, read a window at a time through `read`.

    An index gives an int, a slice gives bytes. Windows grow while reads are sequential (the
    pickle machine) and stay small when they jump (a wire walk stepping over big fields)."""

    __slots__ = ("_base", "_data", "_source", "_step")

    def __init__(self, source: Source) -> None:
        self._source = source
        self._base = 0
        self._data = b""
        self._step = _MIN_STEP

    def __len__(self) -> int:
        return self._source.size

    def __getitem__(self, key: Any) -> Any:
        if key.__class__ is int:
            i = key - self._base
            if 0 <= i < len(self._data):
                return self._data[i]
            size = self._source.size
            if key < 0:
                key += size
            if not 0 <= key < size:
                raise IndexError("index out of range")
            data, base = self.window(key)
            return data[key - base]
        if not isinstance(key, slice):
            raise TypeError(f"indices must be integers or slices, not {type(key).__name__}")
        start, stop, step = key.indices(self._source.size)
        if step != 1:
            return self[start:stop][::step] if stop > start else b""
        if stop <= start:
            return b""
        i = start - self._base
        if i >= 0 and stop - self._base <= len(self._data):
            return self._data[i : stop - self._base]
        if stop - start > _MAX_STEP // 2:
            return self._source.read(start, stop - start)  # a big argument: read it, not a window
        data, base = self.window(start, stop - start)
        return data[start - base : stop - base]

    def window(self, pos: int, need: int = 1) -> tuple[bytes, int]:
        """Bytes from at least pos to pos + need (less at the end), and the offset they start at."""
        i = pos - self._base
        if i < 0 or i + need > len(self._data):
            sequential = 0 <= pos - self._base <= len(self._data) + _MIN_STEP  # just after the last one
            self._step = min(self._step * 2, _MAX_STEP) if sequential else _MIN_STEP
            self._data = self._source.read(pos, max(need, self._step))
            self._base = pos
        return self._data, self._base

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        size = self._source.size
        end = size if end is None else min(end, size)
        pos = max(start, 0)
        while pos < end:
            data, base = self.window(pos, min(len(sub), end - pos))
            stop = min(base + len(data), end)
            found = data.find(sub, pos - base, stop - base)
            if found >= 0:
                return base + found
            if stop >= end or not data:
                break
            pos = max(stop - len(sub) + 1, pos + 1)  # a match may straddle two windows
        return -1


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
