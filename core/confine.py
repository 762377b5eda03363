"""Confinement of the isolated parser process (core/isolate.py's child), applied by the child to
itself before it reads any request.

libhdf5 and protobuf are C parsers fed hostile bytes: a memory-corruption bug there would run with
every right of the user who scans. The child therefore gives up, as far as the platform allows
without root:
- the environment: the parent starts it with a minimal one (`child_environment`), no tokens;
- resources: RLIMIT_DATA (the memory budget), RLIMIT_FSIZE 0 (no file grows), RLIMIT_NOFILE (a few
  descriptors), RLIMIT_CORE 0 (a crash dumps no hostile memory to disk);
- privileges: PR_SET_NO_NEW_PRIVS (no setuid gain through exec), and PR_SET_PDEATHSIG so that it dies
  with the process that started it (a killed scan leaves no parser behind);
- the working folder: a fresh empty folder, removed once entered (relative paths find nothing);
- on Linux a seccomp filter: no sockets (network), no execve/fork (no new processes; threads stay
  allowed, numpy's BLAS starts some), no file opened for writing or created, no file system change.
  RLIMIT_NPROC is no substitute: it does not bind root.

What could not be applied is reported back (`Confinement.missing`), and the parent shows it as a
finding, so a weaker sandbox is never silent.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

# Set by the parent in the child's environment (no command-line change: the frozen app and the
# no-execution proof start the child with their own command lines).
ENV_MEMORY = "AIRLOCK_PARSER_MEMORY"
ENV_PARENT = "AIRLOCK_PARSER_PARENT"

MAX_OPEN_FILES = 64
# What a Python interpreter needs to start (and nothing else crosses into the child): the loader
# path of a shared libpython, Windows' system root, PyInstaller's own variables in a frozen app.
_KEEP = ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "SYSTEMROOT", "SystemRoot")
_KEEP_FROZEN_PREFIXES = ("_PYI", "_MEIPASS")

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_THREAD = 0x00010000


def child_environment(memory_budget: int) -> dict[str, str]:
    """The whole environment of a parser child: nothing of the parent's but what Python needs."""
    env = {key: os.environ[key] for key in _KEEP if key in os.environ}
    if getattr(sys, "frozen", False):
        env.update({k: v for k, v in os.environ.items() if k.startswith(_KEEP_FROZEN_PREFIXES)})
    # libhdf5 loads filter plugins from this path when a dataset names an unknown filter: point it
    # at nothing, so a file cannot make the child load a shared library.
    env["HDF5_PLUGIN_PATH"] = os.devnull
    env[ENV_MEMORY] = str(max(0, int(memory_budget)))
    env[ENV_PARENT] = str(os.getpid())
    return env


class Confinement:
    """What the child applied to itself, and what it could not (with why)."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.missing: list[str] = []

    def as_dict(self) -> dict[str, list[str]]:
        return {"applied": list(self.applied), "missing": list(self.missing)}


def confine() -> Confinement:
    """Apply every restriction this platform offers to the current process. Never raises: what
    fails is listed in `missing`. Must run before the child reads input, and before an audit hook
    that forbids loading native libraries (the seccomp binding calls ctypes)."""
    state = Confinement()
    sys.dont_write_bytecode = True  # RLIMIT_FSIZE 0 would kill the writer of a .pyc
    _die_with_parent(state)
    _fresh_working_folder(state)  # before RLIMIT_FSIZE: tempfile writes a test file
    _resource_limits(state)
    _no_new_privileges(state)
    _seccomp(state)
    return state


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent(state: Confinement) -> None:
    if not sys.platform.startswith("linux"):
        state.missing.append("parent-death signal (Linux only)")
        return
    import signal

    try:
        if _libc().prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError("prctl failed")
    except (OSError, AttributeError) as exc:
        state.missing.append(f"parent-death signal ({exc})")
        return
    parent = os.environ.get(ENV_PARENT)
    if parent and parent.isdigit() and os.getppid() != int(parent):
        os._exit(0)  # the parent died before the signal was armed: nobody is waiting for answers
    state.applied.append("parent-death signal")


def _resource_limits(state: Confinement) -> None:
    try:
        import resource
    except ImportError:
        state.missing.append("resource limits (not on this platform)")
        return
    import signal

    if hasattr(signal, "SIGXFSZ"):
        # A write past RLIMIT_FSIZE fails with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    memory = os.environ.get(ENV_MEMORY, "")
    limits = [("RLIMIT_FSIZE", 0), ("RLIMIT_NOFILE", MAX_OPEN_FILES), ("RLIMIT_CORE", 0)]
    if memory.isdigit() and int(memory) > 0:
        # RLIMIT_DATA, not RLIMIT_AS: address space limits break large read-only maps.
        limits.insert(0, ("RLIMIT_DATA", int(memory)))
    for name, value in limits:
        which = getattr(resource, name, None)
        if which is None:
            state.missing.append(f"{name} (not on this platform)")
            continue
        try:
            _soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY and hard < value:
                value = hard
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            state.missing.append(f"{name} ({exc})")
            continue
        state.applied.append(name)


def _fresh_working_folder(state: Confinement) -> None:
    import tempfile

    try:
        folder = tempfile.mkdtemp(prefix="airlock-parser-")
        os.chdir(folder)
    except OSError as exc:
        state.missing.append(f"fresh working folder ({exc})")
        return
    try:
        os.rmdir(folder)  # entered and removed: nothing can be created or found in it
    except OSError:
        pass  # Windows cannot remove a working folder: it stays empty
    state.applied.append("fresh working folder")


def _no_new_privileges(state: Confinement) -> None:
    if not sys.platform.startswith("linux"):
        state.missing.append("no-new-privileges (Linux only)")
        return
    try:
        if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError("prctl failed")
    except (OSError, AttributeError) as exc:
        state.missing.append(f"no-new-privileges ({exc})")
        return
    state.applied.append("no-new-privileges")


# System calls the filter refuses. Names unknown on this architecture are skipped.
_NETWORK = ("socket", "socketpair", "io_uring_setup")
_PROCESSES = ("execve", "execveat", "fork", "vfork", "ptrace", "process_vm_writev")
_FILE_CHANGES = ("creat", "truncate", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir",
                 "mkdirat", "rmdir", "link", "linkat", "symlink", "symlinkat", "mknod", "mknodat", "chmod",
                 "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
                 "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr",
                 "lremovexattr", "fremovexattr", "mount", "umount2", "pivot_root", "chroot",
                 "open_by_handle_at", "name_to_handle_at")
# Calls whose arguments a filter cannot read (a struct behind a pointer): "not implemented", so the
# C library falls back to the call the filter can judge (clone3 → clone, openat2 → openat).
_OPAQUE = ("clone3", "openat2")


def _seccomp(state: Confinement) -> None:
    if not sys.platform.startswith("linux"):
        state.missing.append("seccomp filter (Linux only)")
        return
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: libseccomp not installed
        state.missing.append(f"seccomp filter (pyseccomp or libseccomp unavailable: {exc})")
        return
    try:
        flt = sc.SyscallFilter(defaction=sc.ALLOW)
        try:
            flt.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread of the process, not only this one
        except OSError:
            pass  # a kernel without TSYNC: no thread exists yet that matters (imports come later)
        deny = sc.ERRNO(errno.EPERM)
        for name in (*_NETWORK, *_PROCESSES, *_FILE_CHANGES):
            _add(sc, flt, deny, name)
        for name in _OPAQUE:
            _add(sc, flt, sc.ERRNO(errno.ENOSYS), name)
        # A new thread shares the process (CLONE_THREAD); any other clone is a new process.
        _add(sc, flt, deny, "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
        # Opening for writing, appending, creating or truncating; reading stays allowed.
        for call, flags_arg in (("open", 1), ("openat", 2)):
            for mask, value in ((os.O_ACCMODE, os.O_WRONLY), (os.O_ACCMODE, os.O_RDWR),
                                (os.O_CREAT, os.O_CREAT), (os.O_TRUNC, os.O_TRUNC),
                                (os.O_APPEND, os.O_APPEND)):
                _add(sc, flt, sc.ERRNO(errno.EACCES), call, sc.Arg(flags_arg, sc.MASKED_EQ, mask, value))
        flt.load()
    except OSError as exc:
        state.missing.append(f"seccomp filter (not loaded: {exc})")
        return
    state.applied.append("seccomp filter")


def _add(sc: Any, flt: Any, action: int, name: str, *args: Any) -> None:
    number = sc.resolve_syscall(sc.Arch.NATIVE, name)
    if number < 0 and number > -100:  # __NR_SCMP_ERROR: not a system call libseccomp knows
        return
    try:
        flt.add_rule(action, number, *args)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EDOM, errno.EFAULT):
            raise
        # Not a system call of this architecture (libseccomp's pseudo numbers are negative).


# A task the parent can send to learn, from inside, what the confinement really does: each
# attempt is made and its outcome returned. Tests use it; it is harmless (paths come from the
# parent, never from a scanned file).


def probe(data: bytes | None, path: str | None, options: dict[str, Any]) -> dict[str, Any]:
    import resource
    import socket

    out: dict[str, Any] = {"environment": sorted(os.environ), "pid": os.getpid()}
    try:
        out["cwd"] = os.getcwd()
    except OSError as exc:
        out["cwd"] = f"error: {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    try:
        out["cwd_listing"] = os.listdir(".")
    except OSError as exc:
        out["cwd_listing"] = f"error: {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    out["socket"] = _attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
    out["unix_socket"] = _attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
    if options.get("write_path"):
        out["write"] = _attempt(lambda: _write(str(options["write_path"])))
        out["create"] = _attempt(lambda: _write(str(options["write_path"]) + ".new"))
    if options.get("read_path"):
        out["read"] = _attempt(lambda: _read(str(options["read_path"])))
    if options.get("exec_path"):
        # Succeeds only by replacing this process: the parent then sees no answer.
        out["execve"] = _attempt(lambda: os.execv(str(options["exec_path"]), [str(options["exec_path"])]))
    out["fork"] = _attempt(_fork)
    limits = {}
    for name in ("RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE"):
        limits[name] = list(resource.getrlimit(getattr(resource, name)))
    out["limits"] = limits
    out["status"] = _proc_status()
    return out


def _attempt(action: Any) -> str:
    try:
        action()
    except OSError as exc:
        return f"error: {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    return "allowed"


def _write(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"written by the parser process")
    finally:
        os.close(fd)


def _read(path: str) -> None:
    with open(path, "rb") as fh:
        fh.read(16)


def _fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _proc_status() -> dict[str, str]:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return {}
    keys = ("NoNewPrivs", "Seccomp")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines) if k in keys}
