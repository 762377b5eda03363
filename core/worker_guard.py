"""The guard of a Dask worker that scans for Airlock: the no-execution audit hook and the memory limit,
installed in every worker process before its first scan.

How it gets there: airlock.core.dask_map registers `AirlockWorkerGuard`, a `distributed.WorkerPlugin`,
on the cluster before it submits a file. A plugin, not a `--preload` script: the map installs it itself
on the workers already there, and the scheduler keeps it and hands it to every worker that joins later,
before that worker's first task; a preload would rely on every operator starting every worker with the
right flag, and a worker started without it would scan unguarded. As a second line, every scan task
checks that its process is guarded and installs the guard itself if it is not.

The hook (sys.addaudithook: it cannot be removed once added, so a worker stays guarded for its life)
refuses, by raising PermissionError, and records:
- always: running a program or a process (os.system, exec*, spawn*, fork, subprocess.Popen), executing
  or compiling code (exec, compile, code and function objects, marshal), unpickling (pickle.find_class),
  loading a native library through ctypes, adding another audit hook, tracing;
- while Airlock's scan is on the calling thread's stack: also network use (except from
  airlock.core.remote, the range reader of a URL being scanned), opening a file for writing, any
  file system change and calls through ctypes.
Its allowances, each decided by inspecting the calling frames:
- distributed's own messages are pickled: `pickle.find_class` (and the code and function objects of a
  by-value function cloudpickle rebuilds) is allowed while distributed's deserialization
  (distributed.protocol.*) is on the stack and no Airlock frame is. A scan never unpickles.
- importing an installed module runs that module's code (`exec`, `compile`, `marshal.loads` from the
  import machinery, dataclasses and namedtuples it defines): allowed while the import machinery is on
  the stack. What a scan may import is imported before the hook (`prepare`); a file's content never
  chooses a module, since nothing here unpickles during a scan.
- `compile` from `ast.parse` called by Airlock's code reader, or by the traceback module formatting a
  task's error (a syntax tree, never code); tblib rebuilding the traceback of a task's error for
  distributed (it compiles and runs its own `raise __traceback_maker` line).
- Airlock's isolated parser process (airlock.core.isolate's exact command) and its signals.
Outside a scan, distributed itself talks to the scheduler and may spill to its local folder.

A refusal during a scan becomes a `high` finding on that file (fail closed); when the plugin is given
a `record_to` file (the no-execution proof's workers), every refusal is also appended there as a JSON
line, written with os.write on a descriptor opened before the hook, so recording fires no event.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

SPAWN = frozenset({"os.system", "os.posix_spawn", "os.fork", "os.forkpty", "os.startfile", "subprocess.Popen",
                   "pty.spawn", "os.kill", "os.killpg"})
CODE = frozenset({"exec", "compile", "code.__new__", "function.__new__", "marshal.load", "marshal.loads",
                  "pickle.find_class", "sys.addaudithook", "sys.settrace", "sys.setprofile",
                  "cpython.run_file", "cpython.run_command", "cpython.run_module", "cpython.run_startup",
                  "ctypes.dlopen"})
# Calls into native code already loaded (a GPU monitor's, say): refused while a scan runs only.
NATIVE_CALLS = frozenset({"ctypes.dlsym", "ctypes.call_function"})
CHANGE = frozenset({"os.remove", "os.unlink", "os.rename", "os.replace", "os.rmdir", "os.mkdir", "os.chmod",
                    "os.chown", "os.truncate", "os.symlink", "os.link", "os.utime", "os.putenv",
                    "os.unsetenv", "os.chdir", "os.setxattr", "os.removexattr", "shutil.copyfile",
                    "shutil.copytree", "shutil.move", "shutil.rmtree", "shutil.unpack_archive",
                    "tempfile.mkstemp", "tempfile.mkdtemp"})
NETWORK_PREFIXES = ("socket.", "urllib.", "http.client.", "ftplib.", "smtplib.", "webbrowser.")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# distributed's deserialization of its messages (task specs, plugins, function arguments)
DESERIALIZERS = frozenset({"distributed.protocol.pickle", "distributed.protocol.serialize",
                           "distributed.protocol.core"})
IMPORT_MACHINERY = frozenset({"importlib._bootstrap", "importlib._bootstrap_external", "_frozen_importlib",
                              "_frozen_importlib_external"})
REMOTE_MODULE = "airlock.core.remote"
CODE_READER = "airlock.core.code.reader"
TRACEBACK_MODULE = "traceback"
OWN_PROCESS_MODULES = frozenset({"airlock.core.isolate"})


class Guard:
    """The audit hook of one worker process."""

    def __init__(self, record_fd: int | None) -> None:
        self.record_fd = record_fd
        self.refused = 0
        self._local = threading.local()  # per thread: busy flag, the current scan's refusals

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event in _IGNORED or getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            why = self.judge(event, args)
            if why is None:
                return
            self.refused += 1
            self.record(event, args, why)
        finally:
            self._local.busy = False
        raise PermissionError(f"Airlock worker guard: refused {event} ({why})")

    def judge(self, event: str, args: tuple[Any, ...]) -> str | None:
        if event == "open":
            return _judge_open(args)
        if event in CODE:
            return _judge_code(event)
        if event in SPAWN or event.startswith(("os.exec", "os.spawn")):
            return None if _own_process(event, args) else "process spawn"
        if event.startswith(NETWORK_PREFIXES):
            return "network during a scan" if _scanning() and not _called_from({REMOTE_MODULE}) else None
        if event in CHANGE:
            return "file system change during a scan" if _scanning() else None
        if event in NATIVE_CALLS:
            return "native call during a scan" if _scanning() else None
        return None

    def record(self, event: str, args: tuple[Any, ...], why: str) -> None:
        scan = getattr(self._local, "scan", None)
        if scan is not None:
            scan.append(f"{event} ({why})")
        if self.record_fd is not None:
            stack = [f"{_module(frame)}.{frame.f_code.co_name}" for frame in _frames()][2:14]
            line = json.dumps({"pid": os.getpid(), "event": event, "why": why, "scanning": scan is not None,
                               "args": repr(args)[:300], "stack": stack}) + "\n"
            try:
                os.write(self.record_fd, line.encode("utf-8", "backslashreplace"))
            except OSError:
                pass  # the refusal still stands

    def begin_scan(self) -> None:
        self._local.scan = []

    def end_scan(self) -> list[str]:
        refused: list[str] = getattr(self._local, "scan", None) or []
        self._local.scan = None
        return refused


# Events fired constantly by distributed's own work that the hook never refuses: not judged at all.
_IGNORED = frozenset({"sys._getframe", "sys._current_frames", "object.__getattr__", "object.__setattr__",
                      "object.__delattr__", "import", "os.listdir", "os.scandir", "glob.glob", "time.sleep",
                      "gc.get_referrers", "gc.get_referents", "gc.get_objects", "os.walk", "array.__new__",
                      "socket.gethostname", "sys._getframemodulename"})


def _judge_open(args: tuple[Any, ...]) -> str | None:
    path, mode, flags = (*tuple(args), None, None, None)[:3]
    if isinstance(path, int):
        return None  # wraps a descriptor already open, opens no file
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and flags & WRITE_FLAGS)
    return "file opened for writing during a scan" if writing and _scanning() else None


def _judge_code(event: str) -> str | None:
    if _in_import_machinery():
        return None  # an installed module being imported runs its own code
    if event == "compile" and _parse_by(CODE_READER, TRACEBACK_MODULE):
        return None
    if event in ("compile", "exec", "code.__new__") and _rebuilding_a_traceback():
        return None
    if event in ("pickle.find_class", "code.__new__", "function.__new__") and _distributed_message():
        return None
    return "code execution" if event != "pickle.find_class" else "unpickling"


def _frames() -> Any:
    frame: Any = sys._getframe(1)
    while frame is not None:
        yield frame
        frame = frame.f_back


def _module(frame: Any) -> str:
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else ""


def _called_from(modules: frozenset[str] | set[str]) -> bool:
    return any(_module(frame) in modules for frame in _frames())


def _scanning() -> bool:
    """Airlock's code on this thread's stack (the guard's own frames aside): a scan is running."""
    return any(_module(frame).startswith("airlock.") and _module(frame) != __name__ for frame in _frames())


def _in_import_machinery() -> bool:
    return any(_module(frame) in IMPORT_MACHINERY for frame in _frames())


def _distributed_message() -> bool:
    """distributed deserializing one of its messages, with no Airlock frame anywhere below it."""
    seen = False
    for frame in _frames():
        module = _module(frame)
        if module.startswith("airlock.") and module != __name__:
            return False
        seen = seen or module in DESERIALIZERS
    return seen


def _callers() -> list[Any]:
    """The calling frames, nearest first, without the guard's own."""
    return [frame for frame in _frames() if frame.f_code.co_filename != __file__]


def _parse_by(*modules: str) -> bool:
    """The `compile` event of `ast.parse` (a syntax tree, never code), called from one of `modules`."""
    import ast

    frames = _callers()
    return len(frames) >= 2 and frames[0].f_code is ast.parse.__code__ and _module(frames[1]) in modules


def _rebuilding_a_traceback() -> bool:
    """tblib rebuilding a task error's traceback for distributed (`raise __traceback_maker` compiled
    and run at each frame's line number, to make a frame object), with no Airlock frame below."""
    frames = _callers()
    return (bool(frames) and _module(frames[0]) == "tblib" and frames[0].f_code.co_name == "as_traceback"
            and not any(_module(frame).startswith("airlock.") for frame in frames))


def _own_process(event: str, args: tuple[Any, ...]) -> bool:
    """Airlock's isolated parser process: its exact command, started (or signalled) by
    airlock.core.isolate."""
    if not _called_from(OWN_PROCESS_MODULES):
        return False
    if event == "subprocess.Popen":
        from airlock.core import isolate

        return bool(list(args[1] or []) == isolate._command())
    return event in ("os.kill", "os.killpg")


_GUARD: Guard | None = None
_BASE_DATA: int | None = None  # the worker's data segment when first guarded
_LOCK = threading.Lock()


def installed() -> Guard | None:
    return _GUARD


def install(record_to: str | None = None) -> Guard:
    """Prepare, then add the hook to this process (once; later calls return the same guard)."""
    global _GUARD
    with _LOCK:
        if _GUARD is None:
            prepare()
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            fd = None if record_to is None else os.open(record_to, flags, 0o600)
            _GUARD = Guard(fd)
            sys.addaudithook(_GUARD)
        return _GUARD


def prepare() -> None:
    """Import what a scan may import lazily, while importing is unguarded: every format module and the
    codecs a decode looks up, and the isolated parser's command."""
    import codecs
    import importlib
    import pkgutil

    import airlock.core
    from airlock.core import formats, isolate

    formats.load_all_modules()
    for info in pkgutil.walk_packages(airlock.core.__path__, "airlock.core."):
        if info.name.startswith(("airlock.core.gui", "airlock.core.convert")):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - an optional dependency missing: imported when used
            continue
    for name in ("utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1", "ascii", "cp1252", "unicode-escape"):
        codecs.lookup(name)
    isolate._command()


def limit_memory(memory_budget: int) -> int:
    """RLIMIT_DATA for this worker: what the worker uses now (distributed's own threads and buffers)
    plus the per-file budget, since the worker process is not forked fresh for each file as a --jobs
    worker is. What the worker used is measured once, when it is first guarded: registering the
    guard again (each scan does) sets the same limit for the same budget. Returns the limit set (0
    where the platform has none)."""
    from airlock.core.parallel import limit_memory as set_limit

    global _BASE_DATA
    if _BASE_DATA is None:
        _BASE_DATA = data_size()
    limit = _BASE_DATA + memory_budget
    set_limit(limit)
    return limit if sys.platform.startswith("linux") else 0


def data_size() -> int:
    """This process's data segment (VmData, what RLIMIT_DATA counts), 0 where /proc does not say."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def guarded_scan(scan: Any, display: str, real: str) -> tuple[dict[str, Any], list[str]]:
    """`scan(display, real)` with this thread's refusals collected: (its entry, what was refused)."""
    guard = _GUARD
    if guard is None:
        raise RuntimeError("the worker guard is not installed")
    guard.begin_scan()
    try:
        entry: dict[str, Any] = scan(display, real)
    finally:
        refused = guard.end_scan()
    return entry, refused


def refused_finding(refused: list[str]) -> dict[str, Any]:
    shown = "; ".join(refused[:5]) + (f"; and {len(refused) - 5} more" if len(refused) > 5 else "")
    return {"rule": "AIR001", "severity": "high", "offset": None, "member": None, "node": None,
            "message": f"scanning worker failed: its no-execution guard refused {shown} while scanning this "
                       "file (expected none); the file was not fully inspected"}


def __getattr__(name: str) -> Any:
    """`AirlockWorkerGuard`, the distributed.WorkerPlugin, made on first use: distributed (the optional
    extra [dask]) is imported only where a cluster is used, never by importing this module. Kept in
    the module once made, so that pickle finds it by reference in the workers."""
    if name != "AirlockWorkerGuard":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from distributed import WorkerPlugin

    class AirlockWorkerGuard(WorkerPlugin):
        """The WorkerPlugin: `setup` runs in each worker (now and on joining) before it scans."""

        name = "airlock-worker-guard"
        idempotent = False  # registered again with other limits: setup runs again (the hook stays one)

        def __init__(self, memory_budget: int, record_to: str | None = None) -> None:
            self.memory_budget = memory_budget
            self.record_to = record_to

        def setup(self, worker: Any) -> None:
            install(self.record_to)
            limit_memory(self.memory_budget)

    AirlockWorkerGuard.__module__ = __name__
    AirlockWorkerGuard.__qualname__ = "AirlockWorkerGuard"
    globals()[name] = AirlockWorkerGuard
    return AirlockWorkerGuard
