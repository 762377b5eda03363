"""SHA-256 (and git's blob SHA-1) of whole files: large preads into one reused buffer, no mmap.

Why no mmap: pages touched through a mapping count as the process's resident memory (see
core/source.py), so hashing a 4 GiB file through a map would weigh 4 GiB. Reading (`os.preadv`) into
one 4 MiB bytearray keeps a hash at one buffer per thread. hashlib releases the GIL while it digests a
buffer larger than 2 KiB, so files hash in parallel on plain threads.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from airlock.core.errors import Cancelled

CHUNK = 4 * 1024 * 1024
ProgressFn = Callable[[int], None]  # called with the bytes read since the last call
CancelledFn = Callable[[], bool]


class FileHash:
    """What hashing one file gave: its digest and size, or why it could not be read."""

    __slots__ = ("error", "path", "sha256", "size")

    def __init__(self, path: str, sha256: str | None, size: int | None, error: str | None = None) -> None:
        self.path = path
        self.sha256 = sha256
        self.size = size
        self.error = error

    def __repr__(self) -> str:
        return f"FileHash({self.path!r}, sha256={self.sha256!r}, size={self.size!r}, error={self.error!r})"


def _digest(path: str, hasher: hashlib._Hash, prefix: Callable[[int], bytes] | None = None,
            progress: ProgressFn | None = None, cancelled: CancelledFn | None = None) -> int:
    """Feed the whole file to `hasher`; returns the number of bytes read."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    total = 0
    pread = getattr(os, "preadv", None)  # pread into the buffer (POSIX); elsewhere a plain read into it
    with _open_regular(path) as fh:
        if prefix is not None:
            hasher.update(prefix(os.fstat(fh.fileno()).st_size))
        while True:
            if cancelled is not None and cancelled():
                raise Cancelled("cancelled")
            n = pread(fh.fileno(), [view], total) if pread is not None else fh.readinto(view)
            if not n:
                break
            hasher.update(view[:n])
            total += n
            if progress is not None:
                progress(n)
    return total


def _open_regular(path: str) -> io.FileIO:
    """The file, opened for reading, if it is a regular file. A FIFO would block the open (non-blocking
    here) and every read; a device such as /dev/zero never ends: OSError, as for an unreadable file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_kind(mode)}): not read")
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a special file"


def sha256_file(path: str, *, progress: ProgressFn | None = None,
                cancelled: CancelledFn | None = None) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of the file's content as read now. Raises OSError."""
    hasher = hashlib.sha256()
    size = _digest(path, hasher, progress=progress, cancelled=cancelled)
    return hasher.hexdigest(), size


def git_blob_sha1(path: str, *, progress: ProgressFn | None = None,
                  cancelled: CancelledFn | None = None) -> tuple[str, int]:
    """git's object name for the file as a blob: sha1(b"blob <size>\\0" + content).

    The size in the prefix is the one fstat gives before reading; a file that changes while it is
    read gives a name that matches neither version, which is what a verification should say.
    """
    hasher = hashlib.sha1(usedforsecurity=False)
    size = _digest(path, hasher, prefix=lambda n: b"blob %d\0" % n, progress=progress, cancelled=cancelled)
    return hasher.hexdigest(), size


def hash_one(path: str, progress: ProgressFn | None = None,
             cancelled: CancelledFn | None = None) -> FileHash:
    try:
        digest, size = sha256_file(path, progress=progress, cancelled=cancelled)
    except OSError as exc:
        return FileHash(path, None, None, exc.strerror or str(exc))
    return FileHash(path, digest, size)


def default_jobs(paths: list[str]) -> int:
    # One large file hashes on one core whatever we do; several share the cores. Beyond the core
    # count, threads only wait for the disk.
    return max(1, min(len(paths), os.cpu_count() or 1, 8))


def hash_files(paths: Iterable[str], *, jobs: int | None = None, progress: ProgressFn | None = None,
               cancelled: CancelledFn | None = None) -> Iterator[FileHash]:
    """Hash every file, several at once; results come in the order of `paths`."""
    paths = list(paths)
    jobs = default_jobs(paths) if jobs is None else max(1, jobs)
    if jobs == 1 or len(paths) <= 1:
        for path in paths:
            yield hash_one(path, progress, cancelled)
        return
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="airlock-hash") as pool:
        # Submitted largest first, so that a big file at the end of the list does not leave the
        # other threads idle; read back in the caller's order.
        order = sorted(range(len(paths)), key=lambda i: -_size(paths[i]))
        futures = {i: pool.submit(hash_one, paths[i], progress, cancelled) for i in order}
        for i in range(len(paths)):
            yield futures[i].result()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
