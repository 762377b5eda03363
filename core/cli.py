"""`airlock scan` and `airlock convert`: headless, Qt-free, with the exit codes CI relies on.

Exit codes: 0 no file reaches --fail-on, 1 one does, 2 Airlock could not start (bad arguments,
a path that does not exist, missing policy data). A failure inside one file is a finding.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airlock.core import __version__
from airlock.core.errors import PolicyMissing
from airlock.core.findings import Severity
from airlock.core.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class _Formatter(argparse.HelpFormatter):
    """argparse's own formatter imports shutil (and with it lzma and bz2, ~3 ms of every scan's
    start-up) only to learn the terminal width; this asks the OS directly."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
        except (ValueError, OSError):
            width = 80
        super().__init__(prog, width=max(width - 2, 20))


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)  # sub-parsers are _Parsers too
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"airlock: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


PROVENANCE_COMMANDS = ("hash", "verify", "lock")


def build_parser(with_convert: bool = True, with_provenance: bool = True) -> argparse.ArgumentParser:
    parser = _Parser(prog="airlock", description="Look inside model files without loading them.")
    parser.add_argument("--version", action="version", version=f"airlock {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    scan = sub.add_parser("scan", help="scan files or folders and report findings")
    scan.add_argument("paths", nargs="+", metavar="PATH")
    scan.add_argument("--format", choices=("text", "json", "sarif", "cyclonedx"), default="text")
    scan.add_argument("--fail-on", default=None, metavar="LEVEL", type=_severity,
                      help="exit 1 when a file reaches this severity (default: the policy's fail-on, "
                           "else high)")
    scan.add_argument("--output", "-o", metavar="FILE", help="write the report here instead of stdout")
    scan.add_argument("--jobs", "-j", type=_positive_int, default=None, metavar="N",
                      help="worker processes (default: the number of cores for 100 files or more, or "
                           "more than 64 MiB of them; else 1)")
    scan.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                      help=f"time budget per file (default: the policy's timeout, else "
                           f"{DEFAULT_LIMITS.time_budget_s:g})")
    scan.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    scan.add_argument("--hash", action="store_true",
                      help="add each file's sha256 and size to the report (reads every byte)")
    scan.add_argument("--policy", metavar="FILE", help="policy file (default: airlock.toml or "
                                                       "pyproject.toml's "
                      "[tool.airlock], looked up from the current folder upward)")
    scan.add_argument("--no-policy", action="store_true", help="ignore any policy file")
    if with_provenance:
        _add_provenance(sub)
    else:
        for name, text in (("hash", "print sha256sum-compatible hashes (airlock hash -h)"),
                           ("verify", "check files against hashes, pins and signatures (airlock verify -h)"),
                           ("lock", "pin files, hashes and revisions in a lock file (airlock lock -h)")):
            sub.add_parser(name, help=text)
    if with_convert:
        _add_convert(sub)
    else:
        # Listed for --help; `main` builds the real sub-parser only when it is used, so that a scan
        # does not pay for importing the converter.
        sub.add_parser("convert", help="convert a checkpoint to SafeTensors (airlock convert -h)")
    return parser


def _add_provenance(sub: Any) -> None:
    from airlock.core.provenance import cli as provenance_cli

    provenance_cli.add_parsers(sub)


def _add_convert(sub: Any) -> None:
    try:
        from airlock.core.convert import cli as convert_cli
    except ImportError:
        return
    convert_cli.add_parser(sub)


def _severity(text: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _scan_one(display: str, real: str, limits: Limits) -> dict[str, Any]:
    """Scan a file and return its JSON report entry. Runs in a worker process too."""
    from airlock.core.report.json_report import file_dict
    from airlock.core.scan import scan_file

    result = scan_file(real, display, limits=limits)
    try:
        return file_dict(result)
    finally:
        result.close()


def _scan_batch(batch: list[tuple[str, str]], limits: Limits) -> list[dict[str, Any]]:
    return [_scan_one(display, real, limits) for display, real in batch]


def _worker_init(memory_budget: int) -> None:
    from airlock.core.parallel import limit_memory

    limit_memory(memory_budget)


def _scan_all(files: list[tuple[str, str]], jobs: int, limits: Limits) -> Iterator[dict[str, Any]]:
    if jobs <= 1 or len(files) <= 1:
        for display, real in files:
            yield _scan_one(display, real, limits)
        return
    from airlock.core import parallel

    if not parallel.can_fork():
        yield from _scan_pooled(files, jobs, limits)
        return

    def scan_one(display: str, real: str) -> dict[str, Any]:
        return _scan_one(display, real, limits)

    shares = parallel.deal([_size(real) for _, real in files], jobs)
    entries = parallel.scan_forked(files, shares, scan_one, limits.memory_budget_bytes)
    for index, (display, real) in enumerate(files):
        entry = entries.get(index)
        if entry is None:  # its worker died: find the file that kills one, a worker per file
            alone = parallel.scan_forked([(display, real)], [[0]], scan_one, limits.memory_budget_bytes)
            entry = alone.get(0) or parallel.crash_entry(display, parallel.WORKER_DIED)
        yield entry


def _scan_pooled(files: list[tuple[str, str]], jobs: int, limits: Limits) -> Iterator[dict[str, Any]]:
    """Where the OS cannot fork (Windows): a multiprocessing pool, files sent in batches (one task
    per file costs more in inter-process traffic than scanning a small pickle does)."""
    from concurrent.futures.process import BrokenProcessPool

    from airlock.core.parallel import WORKER_DIED, crash_entry

    size = max(1, min(64, len(files) // (jobs * 4)))
    batches = [files[i : i + size] for i in range(0, len(files), size)]
    done = 0
    with _pool(jobs) as pool:
        futures = [pool.submit(_scan_batch, batch, limits) for batch in batches]
        try:
            for future in futures:
                entries = future.result()
                done += len(entries)
                yield from entries
        except (BrokenProcessPool, MemoryError):
            pass  # a worker died: find the file that kills it, one file per worker from here
    for display, real in files[done:]:
        with _pool(1) as pool:
            try:
                yield pool.submit(_scan_one, display, real, limits).result()
            except BrokenProcessPool:
                yield crash_entry(display, WORKER_DIED)
            except MemoryError:
                yield crash_entry(display, "memory budget exceeded")


def _pool(jobs: int) -> ProcessPoolExecutor:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(DEFAULT_LIMITS.memory_budget_bytes,))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


# Workers pay for themselves from about this much work (measured: forking two workers costs a few
# milliseconds; a small pickle scans in ~0.1 ms, a big checkpoint's header in tens of ms).
PARALLEL_MIN_FILES = 100
PARALLEL_MIN_BYTES = 64 * 1024 * 1024


def _default_jobs(files: list[tuple[str, str]]) -> int:
    cores = os.cpu_count() or 1
    if cores == 1 or len(files) < 2:
        return 1
    if len(files) >= PARALLEL_MIN_FILES:
        return cores
    total = 0
    for _, real in files:
        total += _size(real)
        if total >= PARALLEL_MIN_BYTES:
            return cores
    return 1


def run_scan(args: argparse.Namespace) -> int:
    from airlock.core.pickle.policy import load_policy
    from airlock.core.report import json_report, sarif, text
    from airlock.core.scan import iter_files

    try:
        load_policy()
    except PolicyMissing as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return EXIT_USAGE
    missing = [p for p in args.paths if not os.path.lexists(p)]
    if missing:
        for p in missing:
            print(f"airlock: no such file or directory: {p}", file=sys.stderr)
        return EXIT_USAGE
    policy = _user_policy(args)
    if policy is None:
        return EXIT_USAGE
    files = [pair for p in args.paths for pair in iter_files(p)]
    jobs = args.jobs or _default_jobs(files)
    limits = DEFAULT_LIMITS if policy is False else policy.limits(DEFAULT_LIMITS)
    if args.timeout is not None:
        limits = limits.replace(time_budget_s=args.timeout)
    from airlock.core import formats

    formats.load_all_modules()  # once, before workers fork, so that none of them imports it again
    entries = list(_scan_all(files, jobs, limits))
    if args.hash or policy is not False or any(_maybe_hf(display) for display, _ in files):
        from airlock.core.provenance.annotate import annotate

        entries = list(annotate(entries, files, hashes=args.hash, policy=policy or None))
    fail_on = args.fail_on or (Severity.parse(policy.get("fail-on", "high")) if policy else Severity.HIGH)

    if args.format == "json":
        out = json_report.render(entries, _policy_note(policy))
    elif args.format == "sarif":
        out = sarif.render(entries)
    elif args.format == "cyclonedx":
        from airlock.core.report import cyclonedx

        out = cyclonedx.render(entries)
    else:
        colour = args.color == "always" or (args.color == "auto" and args.output is None
                                            and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
        out = text.render(entries, colour=colour)
    if args.output:
        tmp = f"{args.output}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(out)
        os.replace(tmp, args.output)
    else:
        sys.stdout.write(out)
        sys.stdout.flush()
    worst = max((Severity.parse(e["severity"]) for e in entries), default=Severity.NONE)
    return EXIT_FINDINGS if worst >= fail_on else EXIT_CLEAN


def _policy_note(policy: Any) -> dict[str, Any] | None:
    """The policy file in effect, for the JSON report (which findings it changed says itself)."""
    if not policy:
        return None
    from airlock.core.policy_file import digest

    return {"policy": {"path": policy.path, "digest": digest(policy)}}


def _maybe_hf(path: str) -> bool:
    # As airlock.core.provenance.annotate.might_be_hf, without importing it for every scan.
    return "--" in path and ("snapshots" in path or "blobs" in path)


def _user_policy(args: argparse.Namespace) -> Any:
    """The policy file's settings (installed into this process), False when there is none, None
    when it cannot be used (the reason printed)."""
    if args.no_policy:
        return False
    if args.policy is None:
        from airlock.core.policy_file import find  # a small module: tomllib only when a file exists

        if find() is None:
            return False
    from airlock.core.policy_file import PolicyError, install, resolve

    try:
        policy = resolve(args.policy)
    except PolicyError as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return None
    install(policy)
    return policy


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv else ""
    args = build_parser(with_convert=first == "convert",
                        with_provenance=first in PROVENANCE_COMMANDS).parse_args(argv)
    if args.command == "scan":
        return run_scan(args)
    handler = getattr(args, "handler", None)
    if handler is None:
        build_parser().error(f"unknown command {args.command}")
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
