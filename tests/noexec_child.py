"""The child process of the no-execution proof (tests/test_no_execution.py runs it).

Main mode: `python noexec_child.py CONFIG.json`
  1. imports Airlock (every airlock.core module) and every format dependency, and looks up the
     codecs a decode may import lazily;
  2. warms up: one scan per format of a benign file (tree walked, every report rendered), and
     `airlock scan` through airlock.core.cli.main with --jobs 1 and --jobs 2;
  3. installs an audit hook that records *and blocks* (raises) any process spawn, exec, compile,
     code object creation, socket, file opened for writing, file system change, native library
     load, real unpickling, or import of a module not already loaded. The only exceptions are
     Airlock's own processes: the `--jobs` workers (forked from airlock.core.cli; a fork inherits
     the hook, and the spawn path installs it in the worker initializer) and the isolated parser
     children of airlock.core.isolate (rerouted through this script's `--isolated-child` mode,
     which installs the same hook before the child reads anything); and the `compile` event of
     `ast.parse` called by Airlock's code reader (airlock.core.code.reader), which builds a syntax
     tree, never code: the frame that raised the event must be `ast.parse` itself and its caller
     the reader's module, so any other compile, and any exec, is still blocked;
  4. scans every file it was given, one by one and as folders with `airlock scan --jobs 2`;
  5. canary: deliberately calls os.system, exec, compile, ast.parse (from here, not from the code
     reader), an import, a file write, a socket and subprocess.Popen, each of which the hook must
     catch.
Every record is a JSON line appended to the log file (opened before the hook, written with
os.write, so the hook itself fires no event). The summary is printed on stdout as JSON.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import sys
import time
from typing import Any

SPAWN = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.startfile",
         "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg"}
CODE = {"exec", "compile", "code.__new__", "marshal.load", "marshal.loads", "marshal.dumps",
        "pickle.find_class", "sys.addaudithook", "sys.settrace", "sys.setprofile", "cpython.run_file",
        "cpython.run_command", "cpython.run_module", "cpython.run_startup", "builtins.input",
        "function.__new__", "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata"}
CHANGE = {"os.remove", "os.unlink", "os.rename", "os.replace", "os.rmdir", "os.mkdir", "os.chmod",
          "os.chown", "os.truncate", "os.symlink", "os.link", "os.utime", "os.putenv", "os.unsetenv",
          "os.chdir", "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr", "shutil.copyfile",
          "shutil.copymode", "shutil.copystat", "shutil.copytree", "shutil.move", "shutil.rmtree",
          "shutil.make_archive", "shutil.unpack_archive", "tempfile.mkstemp", "tempfile.mkdtemp"}
NETWORK_PREFIXES = ("socket.", "urllib.", "http.client.", "ftplib.", "smtplib.", "poplib.", "imaplib.",
                    "nntplib.", "telnetlib.", "webbrowser.")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

CODECS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be",
          "latin-1", "ascii", "cp1252", "raw-unicode-escape", "unicode-escape", "idna", "punycode")
DEPENDENCIES = ("model_signing.verifying", "tomli_w", "tomllib", "cyclonedx.output.json",
                "cryptography.hazmat.primitives.serialization",
                "numpy", "onnx", "gguf", "jinja2", "jinja2.sandbox", "jinja2.nodes", "h5py", "lz4.frame",
                "jinja2.debug",  # jinja2 imports it when a template does not parse (a chat template found by name)
                "safetensors", "xxhash", "zipfile", "tarfile", "gzip", "bz2", "lzma", "zlib", "json", "yaml",
                "concurrent.futures.process", "multiprocessing.popen_fork", "multiprocessing.queues",
                "multiprocessing.synchronize", "multiprocessing.connection", "resource")


class Guard:
    """The audit hook. `phase` names what the process is doing; records go to `fd`."""

    def __init__(self, fd: int, phase: str, allow_isolated: list[str] | None = None) -> None:
        self.outputs: list[str] = []  # files a command was asked to write (`airlock lock -o`)
        self.fd = fd
        self.phase = phase
        self.allow_isolated = allow_isolated  # the command line of Airlock's isolated children
        self.busy = False
        self.counts: dict[str, int] = {}

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.busy or event == "sys._getframe":
            return
        self.busy = True
        try:
            why = self.judge(event, args)
            if why is None:
                return
            self.record(event, args, why)
        finally:
            self.busy = False
        raise PermissionError(f"no-execution proof: blocked {event} ({why})")

    def judge(self, event: str, args: tuple[Any, ...]) -> str | None:
        if event == "import":
            return None if args[0] in sys.modules else "new import"
        if event == "open":
            path, mode, flags = ((*tuple(args), None, None, None))[:3]
            if isinstance(path, int):
                return None  # wraps a descriptor already open (the pool's pipes), opens no file
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            if writing and self.is_output(path):
                return None
            return "file opened for writing" if writing else None
        if event in ("os.replace", "os.rename") and all(self.is_output(p) for p in args[:2]):
            return None  # the output written atomically: its temporary sibling renamed into place
        if event in ("os.fork", "subprocess.Popen") and self.own_process(event, args):
            return None
        if event == "compile" and _parse_by_code_reader():
            return None  # a syntax tree of a .py/.ipynb being inspected: no code object is made
        if event.startswith(NETWORK_PREFIXES) and _remote_read_to_loopback(event, args):
            return None  # airlock.core.remote's range reads from the test's own server on 127.0.0.1
        if event == "pickle.find_class" and _called_from(IPC_MODULES):
            return None  # the worker pool's own messages (file paths in, report dicts out)
        if event in SPAWN or event.startswith("os.exec") or event.startswith("os.spawn"):
            return "process spawn"
        if event in CODE:
            return "code execution"
        if event in CHANGE:
            return "file system change"
        if event.startswith(NETWORK_PREFIXES):
            return "network"
        return None

    def is_output(self, path: Any) -> bool:
        path = os.fsdecode(path) if isinstance(path, (str, bytes)) else ""
        return any(path == out or path.startswith(out + ".tmp") for out in self.outputs)

    def own_process(self, event: str, args: tuple[Any, ...]) -> bool:
        """Airlock's own workers: a fork from airlock.core.cli, or the isolated parser command."""
        if event == "subprocess.Popen":
            return self.allow_isolated is not None and list(args[1] or []) == self.allow_isolated
        return _called_from({"airlock.core.cli"})

    def record(self, event: str, args: tuple[Any, ...], why: str) -> None:
        line = json.dumps({"pid": os.getpid(), "phase": self.phase, "event": event, "why": why,
                           "args": repr(args)[:300]}) + "\n"
        os.write(self.fd, line.encode("utf-8", "backslashreplace"))


def _called_from(modules: set[str]) -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__") in modules:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


CODE_READER = "airlock.core.code.reader"


HOOK_FILES = {__file__}  # the hook's own frames (a subclass elsewhere adds its file: s3_noexec_child)


def _parse_by_code_reader() -> bool:
    """True when the `compile` event comes from `ast.parse`, called from Airlock's code reader."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in HOOK_FILES:
        frame = frame.f_back  # type: ignore[assignment]  # the hook's own frames
    if frame is None or frame.f_code is not ast.parse.__code__:
        return False
    caller = frame.f_back
    return caller is not None and caller.f_globals.get("__name__") == CODE_READER


REMOTE_MODULE = "airlock.core.remote"
LOOPBACK = "127.0.0.1"


def _remote_read_to_loopback(event: str, args: tuple[Any, ...]) -> bool:
    """The network events of one HTTP range read, allowed only from airlock.core.remote and only
    to 127.0.0.1: name resolution and connect must name that address; creating the socket, and
    http.client's connect and send, carry the connection's host where the event has one."""
    if not _called_from({REMOTE_MODULE}):
        return False
    if event == "socket.getaddrinfo":
        return args[0] == LOOPBACK
    if event == "socket.connect":
        address = args[1]
        return isinstance(address, tuple) and address[0] == LOOPBACK
    if event == "http.client.connect":
        return args[1] == LOOPBACK
    return event in ("socket.__new__", "http.client.send")


# multiprocessing pickles the pool's tasks and results; never a scanned file's bytes.
IPC_MODULES = {"multiprocessing.connection", "multiprocessing.queues", "concurrent.futures.process"}
GUARD: Guard | None = None
CANARY_CODE = compile("canary = 1", "<canary>", "exec")


def install(log: str | int, phase: str, allow_isolated: list[str] | None = None) -> Guard:
    """The hook, recording to the file `log` (or to a descriptor already open)."""
    global GUARD
    if GUARD is not None:  # inherited through fork: the hook is already in this process
        return GUARD
    fd = log if isinstance(log, int) else os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    GUARD = Guard(fd, phase, allow_isolated)
    sys.addaudithook(GUARD)
    return GUARD


def guarded_worker_init(memory_budget: int, log: str, isolated: list[str] | None) -> None:
    """airlock.core.pool._worker_init with the hook installed first (a forked worker inherits it)."""
    from airlock.core import pool

    install(log, "scan:worker", isolated).phase = "scan:worker"
    pool._worker_init(memory_budget)


def import_everything() -> list[str]:
    import importlib
    import pkgutil

    import airlock.core

    problems = []
    for info in pkgutil.walk_packages(airlock.core.__path__, "airlock.core."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # noqa: BLE001 - a module that cannot import is reported
            problems.append(f"{info.name}: {type(exc).__name__}: {exc}")
    for name in DEPENDENCIES:
        importlib.import_module(name)
    import codecs

    for name in CODECS:
        codecs.lookup(name)
        with contextlib.suppress(UnicodeError):
            b"\xff\xfe\x00\x00".decode(name)
    return problems


def scan_one(path: str) -> dict[str, Any]:
    from airlock.core.report import json_report, sarif, text
    from airlock.core.scan import scan_file

    result = scan_file(path)
    try:
        for i, _node in enumerate(result.root.walk(expand_lazy=True)):
            if i > 20_000:
                break
        entry = json_report.file_dict(result)
        text.render([entry], colour=False)
        json_report.render([entry])
        sarif.render([entry])
        return {"path": path, "format": result.format, "severity": result.severity.label,
                "rules": sorted({f.rule for f in result.findings})}
    finally:
        result.close()


def run_cli(argv: list[str]) -> tuple[int, str]:
    from airlock.core import cli

    # A text stream with a binary buffer under it: `airlock hash` writes bytes (file names in any encoding).
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    return code, out.buffer.getvalue().decode("utf-8", "replace")


def patch_isolation(log: str) -> list[str] | None:
    """Route airlock.core.isolate's children through this script so they install the hook first."""
    try:
        from airlock.core import isolate
    except ImportError:
        return None
    command = [sys.executable, "-I", os.path.abspath(__file__), "--isolated-child", log]
    isolate._command = lambda: list(command)  # type: ignore[attr-defined]
    return command


def patch_workers(log: str, isolated: list[str] | None) -> None:
    """Under spawn a worker starts without the hook: give every pool airlock.core.cli creates an
    initializer that installs it first (a forked worker inherits it anyway)."""
    import concurrent.futures

    real = concurrent.futures.ProcessPoolExecutor

    def pool(*a: Any, **kw: Any) -> Any:
        kw["initializer"] = guarded_worker_init
        kw["initargs"] = (*kw.get("initargs", ()), log, isolated)
        return real(*a, **kw)

    # airlock.core.pool imports ProcessPoolExecutor from concurrent.futures when it needs a pool.
    concurrent.futures.ProcessPoolExecutor = pool  # type: ignore[misc]


def canary(workdir: str, remote: dict[str, Any] | None = None) -> dict[str, str]:
    """Each deliberate violation must be blocked by the hook (PermissionError from it)."""
    import http.client
    import socket
    import subprocess

    attempts = {
        "os.system": lambda: os.system("echo AIRLOCK_CANARY"),
        "exec": lambda: exec(CANARY_CODE, {}),  # compiled before the hook: only `exec` fires
        "exec-source": lambda: exec("canary = 1", {}),
        "compile": lambda: compile("1", "<canary>", "eval"),
        # ast.parse raises the same event as compile: allowed only for Airlock's code reader
        "ast.parse": lambda: ast.parse("import os"),
        "import": lambda: __import__("colorsys" if "colorsys" not in sys.modules else "wave"),
        "open-write": lambda: open(os.path.join(workdir, "canary.txt"), "w").close(),
        "socket": lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close(),
        "subprocess": lambda: subprocess.Popen(["true"]).wait(),
    }
    if remote:
        port = int(remote["endpoint"].rsplit(":", 1)[1])

        def other_host() -> None:
            # the remote reader itself, sent to another address: the hook blocks the connection, and
            # the scan reports a remote read failure
            from airlock.core import remote as remote_module
            from airlock.core.errors import LimitExceeded

            try:
                remote_module.RemoteSource.open_url(f"http://127.0.0.2:{port}/x", budget=1 << 20,
                                                    timeout=2, time_budget=5)
            except LimitExceeded as exc:
                raise PermissionError(f"{exc}") from None

        # the test's own server, but not through airlock.core.remote
        attempts["loopback-elsewhere"] = lambda: http.client.HTTPConnection(LOOPBACK, port, timeout=2).connect()
        attempts["remote-other-host"] = other_host
    outcome = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            outcome[name] = "NOT BLOCKED"
        except PermissionError as exc:
            outcome[name] = "blocked" if "no-execution proof" in str(exc) else f"other error: {exc}"
        except Exception as exc:  # noqa: BLE001 - an import blocked by the hook surfaces as ImportError
            blocked = "no-execution proof" in repr(exc) or "no-execution proof" in repr(exc.__context__)
            outcome[name] = "blocked" if blocked else f"other error: {type(exc).__name__}: {exc}"
    return outcome


def main(config_path: str) -> int:
    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    log = config["log"]
    t0 = time.monotonic()
    problems = import_everything()
    isolated = patch_isolation(log)
    patch_workers(log, isolated)
    for path in config["warmup"]:
        scan_one(path)
    for argv in (["--format", "json", "--jobs", "1"], ["--format", "sarif", "--jobs", "2"],
                 ["--format", "text", "--jobs", "2", "--color", "always"], ["--format", "jsonl", "--jobs", "2"]):
        run_cli(["scan", *argv, config["warmup_dir"]])
    runs = config.get("provenance_runs", [])
    for argv in runs:  # hash, verify, lock: their lazy imports happen here, before the hook
        run_cli(argv)
    review_runs = config.get("review_runs", [])
    for argv in review_runs:  # approve, reject, history, the gate: SQLAlchemy and sqlite3 load here
        run_cli(argv)
    remote = config.get("remote")
    if remote:  # one range read before the hook: http.client's lazy imports happen here
        scan_one(remote["warmup"])
    diff_runs = config.get("diff_runs", [])
    for argv in diff_runs[1:]:  # airlock diff (not the first, biggest run): xxhash, difflib, gguf.quants load here
        run_cli(argv)
    warm_s = time.monotonic() - t0
    guard = install(log, "scan", isolated)
    guard.outputs = [os.path.abspath(p) for p in config.get("outputs", [])]

    t1 = time.monotonic()
    results = [scan_one(path) for path in config["files"]]
    cli_codes = {}
    for i, folder in enumerate(config["folders"]):
        fmt = "json" if i else "sarif"  # the first folder is small: SARIF there, JSON over everything
        code, out = run_cli(["scan", "--format", fmt, "--jobs", "2", folder])
        cli_codes[f"{fmt} {os.path.basename(folder)}"] = code
        doc = json.loads(out)
        files = doc["files"] if fmt == "json" else doc["runs"][0]["artifacts"]
        cli_codes[f"files in {os.path.basename(folder)}"] = len(files)
    provenance = [run_cli(argv)[0] for argv in runs]
    # jsonl in one process: one parser child serves the scan's ONNX/HDF5 files in turn
    code, out = run_cli(["scan", "--format", "jsonl", "--jobs", "1", config["folders"][-1]])
    cli_codes["lines of jsonl"] = len(out.splitlines())
    review = [run_cli(argv)[0] for argv in review_runs]
    diff = [run_cli(argv)[0] for argv in diff_runs]
    remote_results = []
    if remote:  # remote scans against the test's local server: one by one, then the CLI with workers
        remote_results = [scan_one(url) for url in remote["urls"]]
        code, out = run_cli(["scan", "--format", "jsonl", "--jobs", "2", *remote["urls"]])
        cli_codes["remote jsonl"] = code
        cli_codes["lines of remote jsonl"] = len(out.splitlines())
    scan_s = time.monotonic() - t1

    guard.phase = "canary"
    caught = canary(config["workdir"], remote)
    summary = {"results": results, "remote": remote_results, "cli": cli_codes, "canary": caught,
               "import_problems": problems, "provenance": provenance, "review": review, "diff": diff,
               "warmup_s": round(warm_s, 2), "scan_s": round(scan_s, 2)}
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0


def isolated_child(log: str) -> None:
    """Airlock's isolated parser child: confined as Airlock confines it (the seccomp binding loads a
    native library, so first), the task libraries imported, then the hook, then the requests.

    The confined child may write no file (seccomp, RLIMIT_FSIZE 0): its records go through a pipe
    to a small writer process forked before the confinement."""
    import importlib

    from airlock.core import isolate

    records = _log_writer(log)
    state = isolate.child_prepare()
    for target in isolate.TASKS.values():
        importlib.import_module(target.partition(":")[0])
    import_everything()  # a fresh interpreter cannot warm up by scanning: it imports what a scan may
    guard = install(records, "canary:isolated-child")
    try:  # proves the hook fires and its records get out of the confined child
        compile("1", "<canary>", "eval")
    except PermissionError:
        pass
    guard.phase = "scan:isolated-child"
    isolate.child_serve(state)


def _log_writer(log: str) -> int:
    """A pipe whose reading end a forked process copies into the log file; returns the writing end."""
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        for fd in (0, 1, 2, write_end):  # holds none of the parser's pipes open
            os.close(fd)
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        while data := os.read(read_end, 1 << 16):
            os.write(out, data)
        os._exit(0)
    os.close(read_end)
    return write_end


if __name__ == "__main__":
    if sys.argv[1] == "--isolated-child":
        isolated_child(sys.argv[2])
    else:
        sys.exit(main(sys.argv[1]))
