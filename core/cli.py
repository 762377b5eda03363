"""`airlock scan` and `airlock convert`: headless, Qt-free, with the exit codes CI relies on.

Exit codes: 0 no file reaches --fail-on, 1 one does, 2 Airlock could not start (bad arguments,
a path that does not exist, missing policy data). A failure inside one file is a finding.
Stopped by SIGINT, SIGTERM or SIGHUP: the report of the files finished, marked interrupted, and
128 + the signal number (130, 143, 129), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from airlock.core import __version__, interrupt
from airlock.core.cli_common import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_USAGE,
    add_sarif_options,
    byte_size,
    policy_note,
    positive_int,
    print_report,
    seconds,
    severity_arg,
    stdout_gone,
    user_policy,
)
from airlock.core.errors import AirlockError, PolicyMissing
from airlock.core.findings import Severity
from airlock.core.limits import DEFAULT_LIMITS

if TYPE_CHECKING:
    from airlock.core.api import Report
    from airlock.core.progress import TerminalProgress


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
REVIEW_COMMANDS = ("approve", "reject", "history")
DESKTOP_APP_HELP = ("desktop app: `airlock [FILE|FOLDER ...]` opens the inspector, one tab per file; "
                    "`airlock demo` opens it on sample files it writes; `airlock --screenshot OUT.png "
                    "[--size WxH] FILE ...` renders the window to a PNG and exits (with no screen: "
                    "QT_QPA_PLATFORM=offscreen); `airlock demo --help` lists the app's options.")


def build_parser(with_convert: bool = True, with_provenance: bool = True,
                 with_review: bool = True) -> argparse.ArgumentParser:
    parser = _Parser(prog="airlock", description="Look inside model files without loading them.",
                     epilog=DESKTOP_APP_HELP)
    parser.add_argument("--version", action="version", version=f"airlock {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    scan = sub.add_parser("scan", help="scan files or folders and report findings")
    scan.add_argument("paths", nargs="+", metavar="PATH")
    scan.add_argument("--format", choices=("text", "json", "jsonl", "sarif", "cyclonedx", "html"),
                      default="text",
                      help="jsonl: one JSON line per file as each finishes (a files[] entry of json); html: "
                           "one self-contained page, the review record")
    scan.add_argument("--fail-on", default=None, metavar="LEVEL", type=severity_arg,
                      help="exit 1 when a file reaches this severity (default: the policy's fail-on, "
                           "else high)")
    scan.add_argument("--output", "-o", metavar="FILE", help="write the report here instead of stdout")
    scan.add_argument("--jobs", "-j", type=positive_int, default=None, metavar="N",
                      help="worker processes (default: the number of cores for 100 files or more, or "
                           "more than 64 MiB of them; else 1)")
    scan.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                      help=f"time budget per file (default: the policy's timeout, else "
                           f"{DEFAULT_LIMITS.time_budget_s:g})")
    scan.add_argument("--max-decompressed", type=byte_size, default=None, metavar="SIZE",
                      help="bytes each file may decompress, all nested containers together (e.g. "
                           "512MiB, 4GiB; default: the policy's max-decompressed, else 1GiB); past it, a "
                           "high finding")
    scan.add_argument("--max-remote-bytes", type=byte_size, default=None, metavar="SIZE",
                      help="bytes fetched per remote file (http(s)://, hf://org/name[@rev]/path, s3://) by "
                           "range requests (default 64MiB); past it, a high 'not fully inspected' finding")
    scan.add_argument("--dask", metavar="ADDRESS",
                      help="scan on a Dask distributed cluster, e.g. tcp://scheduler:8786 (the workers must "
                           "reach the paths; needs the [dask] extra)")
    scan.add_argument("--cache", metavar="DB",
                      help="a SQLite file of earlier results, keyed by content (SHA-256, or a registry's "
                           "own hash), Airlock's version, the policy and the limits: unchanged files are "
                           "not scanned again (their entries say \"cached\": true)")
    scan.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    scan.add_argument("--quiet", "-q", action="store_true", help="no progress display on the terminal")
    scan.add_argument("--hash", action="store_true",
                      help="add each file's sha256 and size to the report (reads every byte)")
    scan.add_argument("--policy", metavar="FILE", help="policy file (default: airlock.toml or "
                                                       "pyproject.toml's "
                      "[tool.airlock], looked up from the current folder upward)")
    scan.add_argument("--no-policy", action="store_true", help="ignore any policy file")
    _add_review_scan_options(scan)
    if with_provenance:
        _add_provenance(sub)
    else:
        for name, text in (("hash", "print sha256sum-compatible hashes (airlock hash -h)"),
                           ("verify", "check files against hashes, pins and signatures (airlock verify -h)"),
                           ("lock", "pin files, hashes and revisions in a lock file (airlock lock -h)")):
            sub.add_parser(name, help=text)
    if with_review:
        from airlock.core.review import cli as review_cli

        review_cli.add_parsers(sub)
    else:
        for name, text in (("approve", "record that you approve these exact files (airlock approve -h)"),
                           ("reject", "record that you reject these exact files (airlock reject -h)"),
                           ("history", "the decisions recorded for a file or sha256 (airlock history -h)")):
            sub.add_parser(name, help=text)
    from airlock.core.diff import cli as diff_cli  # a small module: the diff itself loads when it runs

    diff_cli.add_parser(sub)
    if with_convert:
        _add_convert(sub)
    else:
        # Listed for --help; `main` builds the real sub-parser only when it is used, so that a scan
        # does not pay for importing the converter.
        sub.add_parser("convert", help="convert a checkpoint to SafeTensors (airlock convert -h)")
    return parser


def _add_review_scan_options(scan: argparse.ArgumentParser) -> None:
    from airlock.core.review.cli import add_scan_options

    add_scan_options(scan)  # --require-approved, --db
    add_sarif_options(scan)


def _add_provenance(sub: Any) -> None:
    from airlock.core.provenance import cli as provenance_cli

    provenance_cli.add_parsers(sub)


def _add_convert(sub: Any) -> None:
    try:
        from airlock.core.convert import cli as convert_cli
    except ImportError:
        return
    convert_cli.add_parser(sub)


def run_scan(args: argparse.Namespace) -> int:
    from airlock.core.pickle.policy import load_policy

    try:
        load_policy()
    except PolicyMissing as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from airlock.core.source import is_url

    missing = [p for p in args.paths if not is_url(p) and not os.path.lexists(p)]
    if missing:
        for p in missing:
            print(f"airlock: no such file or directory: {p}", file=sys.stderr)
        return EXIT_USAGE
    from airlock.core.report.output import overwrites_input

    clobbered = overwrites_input(args.output, args.paths)
    if clobbered is not None:
        print(f"airlock: refusing to write the report over {clobbered}, a file being scanned",
              file=sys.stderr)
        return EXIT_USAGE
    policy = user_policy(args)
    if policy is None:
        return EXIT_USAGE
    review = _review_gate(args, policy)  # opened before anything is scanned
    if isinstance(review, int):
        return review
    limits = DEFAULT_LIMITS if policy is False else policy.limits(DEFAULT_LIMITS)
    if args.timeout is not None:
        limits = limits.replace(time_budget_s=args.timeout)
    if args.max_decompressed is not None:
        limits = limits.replace(max_decompressed_bytes=args.max_decompressed)
    if args.max_remote_bytes is not None:
        limits = limits.replace(max_remote_bytes=args.max_remote_bytes)
    fail_on = args.fail_on if args.fail_on is not None else (
        Severity.parse(policy.get("fail-on", "high")) if policy else Severity.HIGH)
    from airlock.core import api, formats
    from airlock.core.progress import for_terminal

    formats.load_all_modules()  # once, before workers fork, so that none of them imports it again
    from airlock.core.parallel import limit_memory

    # This process scans too (one process, or a file whose worker died): the same memory limit as a
    # worker's, so that what the budgets miss is a MemoryError, a finding for that file, not swap.
    limit_memory(limits.memory_budget_bytes)
    cache = _result_cache(args, policy, limits)
    if isinstance(cache, int):
        if review is not None:
            review.close()
        return cache
    client = _dask_client(args, limits.memory_budget_bytes)
    if isinstance(client, int):
        if review is not None:
            review.close()
        return client
    progress = for_terminal(sys.stderr, quiet=args.quiet)

    def scan_listed(files: Any) -> Iterator[Report]:
        return api.iter_listed(files, limits=limits, jobs=args.jobs, observer=progress, client=client)

    if cache is None:
        reports = scan_listed(api.files_below(args.paths))
    else:
        from airlock.core.result_cache import through_cache

        reports = through_cache(api.files_below(args.paths), cache, limits, scan_listed)
    scanned = [0]

    def counted(items: Iterator[Report]) -> Iterator[Report]:
        for report in items:
            scanned[0] += 1
            yield report

    try:
        if args.format == "jsonl":
            try:
                worst, stopped = _write_jsonl(_annotated(counted(reports), args, policy, review), args.output,
                                              progress)
            except BrokenPipeError:
                return _reader_gone(reports)
        else:
            worst, entries, stopped = _collect(counted(reports), args, policy, review)
            if progress is not None:
                progress.close()  # its line erased before the report is written
            failed = _write_document(entries, args, policy, stopped)
            if failed is not None:
                return failed
    except AirlockError as exc:  # the approvals database failed during the scan
        print(f"airlock: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if progress is not None:
            progress.close()
        if review is not None:
            review.close()
        if cache is not None:
            cache.close()
        if client is not None:
            client.close()
    if stopped is not None:
        print(f"airlock: {stopped}: the report lists the files finished before it and is marked "
              "incomplete", file=sys.stderr)
        return stopped.exit_code
    if not scanned[0]:  # a gate pointed at an empty download or a wrong folder must not pass
        print("airlock: no file found under the paths given: nothing was inspected", file=sys.stderr)
        return EXIT_USAGE
    refused = getattr(review, "refused", 0)  # --require-approved fails on unapproved files at any --fail-on
    return EXIT_FINDINGS if worst >= fail_on or refused else EXIT_CLEAN


def _result_cache(args: argparse.Namespace, policy: Any, limits: Any) -> Any:
    """None, the --cache database opened, or exit code 2 when it cannot be used."""
    if not args.cache:
        return None
    from airlock.core import result_cache

    try:
        return result_cache.ResultCache(args.cache, result_cache.settings_key(policy or None, limits))
    except Exception as exc:  # noqa: BLE001 - sqlite3.Error or OSError: a cache that cannot be used
        print(f"airlock: cannot use the cache {args.cache}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _dask_client(args: argparse.Namespace, memory_budget: int) -> Any:
    """None, a client of the --dask scheduler with its workers guarded (airlock.core.worker_guard), or
    exit code 2 (distributed missing, no scheduler, a worker that cannot be guarded)."""
    if not args.dask:
        return None
    from airlock.core import dask_map

    if not dask_map.available():
        print(f"airlock: --dask needs the distributed package: {dask_map.INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    try:
        client = dask_map.connect(args.dask)
    except (OSError, TimeoutError, ValueError) as exc:
        print(f"airlock: cannot reach the Dask scheduler {args.dask}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        dask_map.guard_cluster(client, memory_budget)
    except RuntimeError as exc:  # never scan on an unguarded worker
        print(f"airlock: {exc}", file=sys.stderr)
        client.close()
        return EXIT_USAGE
    return client


def _stopped(caught: interrupt.Interrupted | None) -> interrupt.Interrupted | None:
    """The stop signal that ended the scan: raised here (one process), or recorded while workers
    ran (they were stopped and the scan ended early)."""
    pending = interrupt.pending()
    return caught if caught is not None or pending is None else interrupt.Interrupted(pending)


def _needs_annotation(args: argparse.Namespace, policy: Any, path: str) -> bool:
    return bool(args.hash or policy is not False or _maybe_hf(path))


def _annotated(reports: Iterator[Report], args: argparse.Namespace, policy: Any,
               review: Any = None) -> Iterator[dict[str, Any]]:
    """Each report's entry as it comes, with what the chain of custody adds (hash, Hugging Face
    cache, the policy's marks, the approvals gate), for a streaming format."""
    for report in reports:
        entry = report.to_dict()
        if review is not None:  # hash, the decision that counts, the gate's findings, then the policy
            entry = review([entry], [(report.path, report.real_path)])[0]
        elif _needs_annotation(args, policy, report.path):
            from airlock.core.provenance.annotate import annotate

            entry = next(annotate([entry], [(report.path, report.real_path)], hashes=args.hash,
                                  policy=policy or None, jobs=1))
        yield entry


def _collect(reports: Iterator[Report], args: argparse.Namespace, policy: Any,
             review: Any = None) -> tuple[Severity, list[dict[str, Any]], interrupt.Interrupted | None]:
    """Every report, in walk order (workers finish out of order), for a one-document format; the
    chain of custody's additions made over the whole list (files hashed in parallel)."""
    found: list[tuple[int, dict[str, Any], str]] = []
    caught: interrupt.Interrupted | None = None
    try:
        for r in reports:
            found.append((r.index or 0, r.to_dict(), r.real_path))
    except interrupt.Interrupted as exc:
        caught = exc  # the files finished so far are reported, marked incomplete
    stopped = _stopped(caught)
    indexed = sorted(found, key=lambda t: t[0])
    entries = [entry for _, entry, _ in indexed]
    files = [(entry["path"], real) for _, entry, real in indexed]
    try:
        if review is not None:  # hashes, the decisions that count, the gate's findings, then the policy
            entries = review(entries, files)
        elif args.hash or policy is not False or any(_maybe_hf(display) for display, _ in files):
            from airlock.core.provenance.annotate import annotate

            entries = list(annotate(entries, files, hashes=args.hash, policy=policy or None))
    except interrupt.Interrupted as exc:
        stopped = stopped or exc  # stopped while hashing: the entries keep what they got
    worst = max((Severity.parse(e["severity"]) for e in entries), default=Severity.NONE)
    return worst, entries, stopped


def _write_jsonl(entries: Iterator[dict[str, Any]], output: str | None,
                 progress: TerminalProgress | None) -> tuple[Severity, interrupt.Interrupted | None]:
    """One line per file as it finishes; nothing is kept. To a file: written under a temporary
    name and renamed at the end, like the other formats. Stopped by a signal, the lines of the
    files finished are kept (the exit code and stderr say the scan was interrupted)."""
    from airlock.core.report.json_report import render_line

    worst = Severity.NONE
    caught: interrupt.Interrupted | None = None
    tmp = f"{output}.tmp{os.getpid()}" if output else None
    out: TextIO = open(tmp, "w", encoding="utf-8") if tmp else sys.stdout  # noqa: SIM115 - closed below
    shared_terminal = progress is not None and tmp is None and sys.stdout.isatty()
    try:
        for entry in entries:
            line = render_line(entry)
            if shared_terminal and progress is not None:
                with progress.paused():
                    out.write(line)
                    out.flush()
            else:
                out.write(line)
                out.flush()
            worst = max(worst, Severity.parse(entry["severity"]))
    except interrupt.Interrupted as exc:
        caught = exc
    except BaseException:
        if tmp is not None:
            out.close()
            _remove(tmp)
        raise
    if tmp is not None and output is not None:
        out.close()
        os.replace(tmp, output)
    return worst, _stopped(caught)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _reader_gone(reports: Iterator[Report]) -> int:
    """`airlock scan --format jsonl … | head`: the reader left. Stop scanning (workers killed),
    and let nothing more reach the closed pipe (Python would print an error at exit)."""
    close = getattr(reports, "close", None)
    if close is not None:
        close()
    return stdout_gone()


def _write_document(entries: list[dict[str, Any]], args: argparse.Namespace, policy: Any,
                    stopped: interrupt.Interrupted | None = None) -> int | None:
    """Render and write the report; EXIT_USAGE when it cannot be written (never a traceback)."""
    from airlock.core.report import json_report, sarif, text

    interruption = None if stopped is None else json_report.Interruption(
        interrupt.signal_name(stopped.signum))
    if args.format == "json":
        out = json_report.render(entries, policy_note(policy), interruption)
    elif args.format == "sarif":
        out = sarif.render(entries, interruption, **sarif.options_from(args))
    elif args.format == "html":
        from airlock.core.report import html

        out = html.render(entries, policy_note(policy))
    elif args.format == "cyclonedx":
        from airlock.core.report import cyclonedx

        out = cyclonedx.render(entries)
    else:
        colour = args.color == "always" or (args.color == "auto" and args.output is None
                                            and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
        out = text.render(entries, colour=colour, interruption=interruption)
    if args.output:
        # Written whole or not at all, also when a signal cuts the writing short.
        tmp = f"{args.output}.tmp{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(out)
            os.replace(tmp, args.output)
        except OSError as exc:  # e.g. its folder does not exist
            _remove(tmp)
            print(f"airlock: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
        except BaseException:
            _remove(tmp)
            raise
    else:
        print_report(out)
    return None


def _review_gate(args: argparse.Namespace, policy: Any) -> Any:
    """None, the gate's step (--require-approved, --db), or exit code 2 when its database cannot be used."""
    if not (args.require_approved or args.db or (policy and policy.get("require-approved"))):
        return None
    from airlock.core.review.cli import scan_gate

    return scan_gate(args, policy)


def _maybe_hf(path: str) -> bool:
    # As airlock.core.provenance.annotate.might_be_hf, without importing it for every scan.
    return "--" in path and ("snapshots" in path or "blobs" in path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with interrupt.handle_signals():
            return _dispatch(argv)
    except interrupt.Interrupted as exc:  # outside a scan's or conversion's own handling
        print(f"airlock: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C before the handlers were in place
        return 128 + 2


def _dispatch(argv: list[str]) -> int:
    first = argv[0] if argv else ""
    args = build_parser(with_convert=first == "convert", with_provenance=first in PROVENANCE_COMMANDS,
                        with_review=first in REVIEW_COMMANDS).parse_args(argv)
    if args.command == "scan":
        return run_scan(args)
    handler = getattr(args, "handler", None)
    if handler is None:
        build_parser().error(f"unknown command {args.command}")
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
