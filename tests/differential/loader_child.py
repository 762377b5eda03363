"""The REAL loaders, run on generated files inside a throw-away process that blocks every
dangerous event before it happens. Used only by tests/differential (never by Airlock).

Run as `python loader_child.py` with a temporary HOME and working folder (the test does that).
The supervisor imports torch, numpy, joblib and the usual gadget modules and installs an audit
hook that acts only when armed, which happens only in the per-file forks; a `{"warm": [[loader,
path], ...]}` request loads benign files in the supervisor itself to prime lazy imports. For every file it forks;
the fork applies a memory cap and an alarm per loader, runs the loaders on the file and reports, through a
pipe, every dangerous event the hook saw. The hook raises on each, so the payload never runs: a
marker payload (`echo AIRLOCK_MARKER`) is stopped at `os.system`, `subprocess.Popen`, `exec`...

Protocol: stdin lines `{"loaders": [...], "path": ...}`; stdout one JSON line per request:
`{loader: {"events": [[event, detail], ...], "globals": [...], "outcome": "ok" | exception name}}`
(or `{"error": ...}` when the loading process died). All loaders of one file share one fork.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from typing import Any

SPAWN = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.startfile",
         "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg")
CODE = ("exec", "compile", "code.__new__", "marshal.load", "marshal.loads", "sys.addaudithook",
        "sys.settrace", "sys.setprofile", "cpython.run_", "builtins.input", "ctypes.", "function.__new__",
        "sys.remote_exec")
CHANGE = ("os.remove", "os.unlink", "os.rename", "os.replace", "os.rmdir", "os.mkdir", "os.chmod",
          "os.chown", "os.truncate", "os.symlink", "os.link", "os.utime", "os.putenv", "os.unsetenv",
          "os.chdir", "shutil.", "tempfile.mkstemp", "tempfile.mkdtemp", "os.setxattr")
NETWORK = ("socket.", "urllib.", "http.client.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "webbrowser.",
           "telnetlib.", "nntplib.")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# Imported before the hook, so a payload that names them reaches its call (and is blocked there)
# instead of stopping at an import.
GADGET_MODULES = ("runpy", "code", "pdb", "bdb", "trace", "profile", "cProfile", "timeit", "pydoc", "pkgutil",
                  "importlib", "webbrowser", "shutil", "ctypes", "subprocess", "socket", "urllib.request",
                  "http.client", "logging", "logging.handlers", "multiprocessing.util", "asyncio", "uuid",
                  "pty", "operator", "functools", "codecs", "tempfile", "glob", "zipimport", "_osx_support",
                  "_aix_support", "smtplib", "ftplib", "numpy.testing", "numpy.ctypeslib")  # torch.utils.collect_env: 4 s to import; a payload naming it imports it

IMPORT_MACHINERY = "importlib._bootstrap_external"
EVENTS: list[list[str]] = []
IMPORTS: list[str] = []
GLOBALS: list[str] = []
STATE = {"armed": False, "busy": False}


def judge(event: str, args: tuple[Any, ...]) -> str | None:
    if event == "open":
        path, mode, flags = (*args, None, None, None)[:3]
        if isinstance(path, int):
            return None
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE_FLAGS):
            return f"open for writing {path!r}"
        return None
    if event.startswith(SPAWN) or event.startswith(CODE) or event.startswith(CHANGE) or event.startswith(NETWORK):
        return repr(args)[:200]
    return None


def hook(event: str, args: tuple[Any, ...]) -> None:
    if not STATE["armed"] or STATE["busy"] or event == "sys._getframe":
        return
    STATE["busy"] = True
    try:
        if event == "import":
            IMPORTS.append(str(args[0]))
            return
        if event == "pickle.find_class":
            GLOBALS.append(f"{args[0]}.{args[1]}")
            return
        detail = judge(event, args)
        if detail is None or (event == "compile" and _called_from("ast", "literal_eval")) or _housekeeping(event):
            return  # numpy parses the .npy header with ast.literal_eval: the loader's own compile
        if event in ("exec", "compile", "marshal.loads") and _called_from(IMPORT_MACHINERY, None):
            IMPORTS.append(repr(args)[:80])
            return  # a lazy import runs module code; counted as an import, not as a payload
        EVENTS.append([event, detail])
    finally:
        STATE["busy"] = False
    raise PermissionError(f"differential harness blocked {event}")


def _housekeeping(event: str) -> bool:
    """The loaders' own side effects, not a payload's:
    - torch.load of a legacy tar extracts its members into a temporary folder and removes it: the
      torch.serialization frame is then on a tarfile/tempfile/shutil line, whereas a payload runs
      from inside `unpickler.load()` (the C unpickler has no frame of its own);
    - Python 3.11 compiles source lines to place the carets when a traceback is formatted."""
    if event == "compile" and _called_from("traceback", None):
        return True
    frame = sys._getframe(2)
    while frame is not None and not (frame.f_globals.get("__name__") == "torch.serialization"
                                     and frame.f_code.co_name in ("_legacy_load", "legacy_load")):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return False
    import linecache

    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    return "load(" not in line


def _called_from(module: str, function: str | None) -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__") == module and function in (None, frame.f_code.co_name):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def load(loader: str, path: str) -> None:
    if loader == "pickle":  # every stacked pickle, as code that calls load() in a loop would
        import pickle

        with open(path, "rb") as fh:
            while fh.peek(1):
                pickle.load(fh)
    elif loader == "torch":
        import torch

        torch.load(path, map_location="cpu", weights_only=False)
    elif loader == "torch_weights_only":
        import torch

        torch.load(path, map_location="cpu", weights_only=True)
    elif loader == "numpy":
        import numpy as np

        loaded = np.load(path, allow_pickle=True)
        if hasattr(loaded, "files"):
            for key in loaded.files:
                loaded[key]
    elif loader == "joblib":
        import joblib

        joblib.load(path)
    else:
        raise ValueError(loader)


def _timed_out(signum: int, frame: object) -> None:
    raise TimeoutError("the loader did not finish in time")


def run_loaders(loaders: list[str], path: str, timeout: float) -> dict[str, Any]:
    """Each loader on the file in one fork, with the hook armed; per-loader events and outcome."""
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (3 * 1024**3, resource.RLIM_INFINITY))
    signal.signal(signal.SIGALRM, _timed_out)
    results = {}
    for loader in loaders:
        del EVENTS[:], GLOBALS[:], IMPORTS[:]
        outcome = "ok"
        start = time.monotonic()
        signal.alarm(int(timeout))
        try:
            STATE["armed"] = True
            load(loader, path)
        except BaseException as exc:  # noqa: BLE001 - the loader's failure is a result
            outcome = type(exc).__name__
        finally:
            STATE["armed"] = False
            signal.alarm(0)
        results[loader] = {"events": list(EVENTS), "globals": GLOBALS[:50], "imports": len(IMPORTS),
                           "outcome": outcome, "elapsed_s": round(time.monotonic() - start, 3)}
    return results


def run_forked(loaders: list[str], path: str, timeout: float) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()  # the hook is not armed in the supervisor: its own fork is allowed
    if pid == 0:
        os.close(read_fd)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)  # what a payload prints must not reach the supervisor's protocol
        os.dup2(quiet, 2)
        try:
            answer = run_loaders(loaders, path, timeout)
        except BaseException as exc:  # noqa: BLE001 - reported, never raised past the fork
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write_fd, json.dumps(answer).encode())
        os._exit(0)
    os.close(write_fd)
    chunks = []
    deadline = timeout * len(loaders) + 10
    while True:
        ready, _, _ = select.select([read_fd], [], [], deadline)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return {"error": f"the loader process died (status {status})"}
    result: dict[str, Any] = json.loads(b"".join(chunks))
    return result


def main() -> int:
    import importlib

    import joblib  # noqa: F401 - imported before the hook
    import numpy  # noqa: F401
    import torch  # noqa: F401

    for name in GADGET_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    import tempfile

    tempfile.gettempdir()  # its first call probes folders by writing test files
    sys.addaudithook(hook)  # armed only inside the per-file forks
    print(json.dumps({"ready": True}), flush=True)
    for raw in sys.stdin:
        request = json.loads(raw)
        if "warm" in request:  # in the supervisor, unarmed: primes the loaders' lazy imports
            for loader, path in request["warm"]:
                try:
                    load(loader, path)
                except Exception:  # noqa: BLE001 - warm-up only primes lazy imports
                    pass
            print(json.dumps({"warm": True}), flush=True)
            continue
        reply = run_forked(request["loaders"], request["path"], float(request.get("timeout", 20)))
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
