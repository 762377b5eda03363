"""Putting a conversion's outputs in place: never half a file, never someone else's file lost.

- Each output is written to `.NAME.airlock-PID-RANDOM.part` next to it, created exclusively with
  mode 0666 less the umask (the kernel applies the umask and any default ACL, as for any new
  file; tempfile.mkstemp's 0600 made every output private). The writer holds an flock on it until
  it is published or removed.
- Without --overwrite, publishing is atomic and exclusive: `os.link(part, final)` fails when
  `final` exists, so of two conversions racing to one target, one wins and the other says so (the
  existence check made before converting is only an early courtesy). Shards are linked in order,
  and if one cannot be, the ones already linked (still ours: the same inode as their part) are
  removed again. Where the file system has no hard links, the name is claimed with O_EXCL and the
  part renamed onto the claim.
- With --overwrite, `os.replace`; a replaced target keeps its mode.
- A conversion killed outright (SIGKILL, power loss) leaves its part behind. Before writing, parts
  of exactly this naming whose writer is gone are removed: its PID is not a running process here,
  and no process holds the part's lock (which also covers a writer on another host sharing the
  folder). Nothing else is touched.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import sys

from airlock.core.convert.model import ConvertError
from airlock.core.text import safe_path

_PART = re.compile(r"\A\.(?P<name>.+)\.airlock-(?P<pid>[0-9]+)-(?P<tag>[0-9a-f]{8})\.part\Z", re.DOTALL)
# errno values meaning "this file system cannot make hard links" (FAT, some network shares).
_NO_LINKS = {errno.EPERM, errno.EMLINK, errno.ENOSYS, getattr(errno, "ENOTSUP", -1),
             getattr(errno, "EOPNOTSUPP", -1)}


class PartFile:
    """One output being written: its temporary path and the open, locked descriptor."""

    __slots__ = ("fd", "final", "path", "renamed")

    def __init__(self, final: str) -> None:
        self.final = final
        folder, name = os.path.split(os.path.abspath(final))
        if len(os.fsencode(name)) > 150:  # the suffix must not push the name past NAME_MAX (255 bytes)
            name = name[:40]
        for _ in range(100):
            path = os.path.join(folder, f".{name}.airlock-{os.getpid()}-{secrets.token_hex(4)}.part")
            try:
                # 0o666: the umask (and a default ACL) decide, as for any file the user creates.
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            except FileExistsError:
                continue
            break
        else:
            raise ConvertError(f"could not create a temporary file in {safe_path(folder)}")
        self.path = path
        self.fd: int | None = fd
        self.renamed = False  # moved to its final name: no part left to remove
        _lock(fd)

    def identity(self) -> tuple[int, int]:
        st = os.fstat(self.fd) if self.fd is not None else os.stat(self.path)
        return st.st_dev, st.st_ino

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None

    def discard(self) -> None:
        """Remove the part's name (all of it after a failure; the second name of a published,
        linked file) and release it."""
        if not self.renamed:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.close()


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: a file open in another process cannot be removed anyway
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # a file system without locks: the PID check alone guards the part


def remove_stale_parts(folder: str) -> list[str]:
    """Remove the parts of our naming in `folder` whose writer is gone; return their names."""
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _PART.match(name)
        if match is None:
            continue
        path = os.path.join(folder, name)
        if _writer_alive(int(match.group("pid"))) or not _unlocked(path):
            continue
        try:
            os.unlink(path)
        except OSError:
            continue  # in use (Windows), or already gone
        removed.append(name)
    return removed


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # one of ours (the GUI converting twice at once)
    if sys.platform == "win32" or not hasattr(os, "kill"):
        return False  # os.kill would terminate it there; the removal fails if the part is open
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _unlocked(path: str) -> bool:
    """True if no process holds the part's lock (its writer has exited)."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False  # a symlink, or unreadable: not ours to judge
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def publish(parts: list[PartFile], overwrite: bool) -> None:
    """Move every part to its final name, in order, or none of them (see the module docstring)."""
    done: list[PartFile] = []
    try:
        for part in parts:
            if overwrite:
                _replace(part)
            else:
                _link_exclusive(part)
            done.append(part)
    except BaseException:
        if not overwrite:
            for part in done:
                _unpublish(part)
        raise
    for part in parts:
        part.discard()  # the name only: the file lives on under its final name


def _replace(part: PartFile) -> None:
    try:
        mode = stat.S_IMODE(os.stat(part.final).st_mode)
    except OSError:
        mode = None  # nothing to replace: the part's own mode (0666 less the umask) stays
    if mode is not None:
        os.chmod(part.path, mode)
    os.replace(part.path, part.final)
    part.renamed = True


def _link_exclusive(part: PartFile) -> None:
    try:
        os.link(part.path, part.final)
        return
    except FileExistsError:
        raise _exists(part.final) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    # No hard links here: claim the name exclusively, then rename the part onto the claim.
    try:
        fd = os.open(part.final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise _exists(part.final) from None
    os.close(fd)
    os.replace(part.path, part.final)
    part.renamed = True


def _exists(final: str) -> ConvertError:
    return ConvertError(f"{safe_path(final)} already exists (created while converting, by another "
                        "conversion?); it was not replaced (use --overwrite to replace it)")


def _unpublish(part: PartFile) -> None:
    """Remove a final name this conversion published, only if it is still our file."""
    try:
        st = os.stat(part.final)
    except OSError:
        return
    if (st.st_dev, st.st_ino) == part.identity():
        try:
            os.unlink(part.final)
        except OSError:
            pass


__all__ = ["PartFile", "publish", "remove_stale_parts"]
