"""`airlock hash`, `airlock verify` and `airlock lock`: registered from airlock.core.cli the way
`convert` is, so that `airlock scan` never imports them.

Exit codes as `scan`: 0 nothing reaches --fail-on, 1 something does, 2 Airlock could not start
(a path that does not exist, a manifest line that does not parse, a lock from a newer Airlock, a key
it cannot use, a bad policy file) — always one line naming the problem, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from airlock.core import interrupt
from airlock.core.cli_common import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_USAGE,
    add_sarif_options,
    policy_note,
    positive_int,
    severity_arg,
    stdout_gone,
    user_policy,
)
from airlock.core.findings import Severity
from airlock.core.provenance.digest_scan import scan_with_digest

PROGRESS_MIN_BYTES = 256 * 1024 * 1024


def add_parsers(sub: Any) -> None:
    h = sub.add_parser("hash", help="print sha256sum-compatible SHA-256 lines (sha256sum -c accepts them)",
                       description="SHA-256 of files, hashed in parallel, as `sha256sum` prints them.")
    h.add_argument("paths", nargs="+", metavar="PATH")
    h.add_argument("--jobs", "-j", type=positive_int, default=None, metavar="N",
                   help="files hashed at once (default: the number of cores, at most 8)")
    h.add_argument("--binary", "-b", action="store_true", help="mark lines as binary (' *name')")
    h.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress on stderr (auto: on a terminal, for more than 256 MiB)")
    h.set_defaults(handler=run_hash)

    v = sub.add_parser("verify", help="check files against their hashes, pins and signatures",
                       description="Check files against a SHA256SUMS manifest, a lock file, their "
                                   "Hugging Face "
                                   "blob names, sharded indexes and an OpenSSF model signature.")
    v.add_argument("paths", nargs="*", metavar="PATH",
                   help="files or folders (default: the folder of --lock or --manifest)")
    v.add_argument("--manifest", metavar="FILE", help="a SHA256SUMS file (sha256sum output)")
    v.add_argument("--lock", metavar="FILE", help="an airlock.lock written by `airlock lock`")
    signer = v.add_mutually_exclusive_group()  # one way to verify: a key, or a certificate chain
    signer.add_argument("--key", metavar="PUBKEY",
                        help="PEM elliptic-curve public key the model was signed with")
    signer.add_argument("--cert", metavar="CERT", action="append",
                        help="certificate chain (PEM) to verify the signature with; repeat for several files")
    v.add_argument("--signature", metavar="FILE", help="the signature (default: PATH/model.sig)")
    _report_options(v, severity_arg)
    v.add_argument("--no-rescan", action="store_true",
                   help="with --lock: do not rescan files to compare their findings digests")
    v.set_defaults(handler=run_verify)

    lk = sub.add_parser("lock", help="pin files (sha256), Hugging Face revisions and verdicts in a lock file",
                        description="Scan and hash files, and write a TOML lock file for `airlock "
                                    "verify --lock`.")
    lk.add_argument("paths", nargs="+", metavar="PATH")
    lk.add_argument("--output", "-o", metavar="FILE", default="airlock.lock", help="default: ./airlock.lock")
    lk.add_argument("--jobs", "-j", type=positive_int, default=None, metavar="N")
    lk.add_argument("--policy", metavar="FILE")
    lk.add_argument("--no-policy", action="store_true")
    lk.set_defaults(handler=run_lock)


def _report_options(p: argparse.ArgumentParser, severity: Any) -> None:
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report here instead of stdout")
    p.add_argument("--fail-on", default=None, metavar="LEVEL", type=severity,
                   help="exit 1 when a file reaches this severity (default: the policy's fail-on, else high)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--policy", metavar="FILE")
    p.add_argument("--no-policy", action="store_true")
    add_sarif_options(p)  # --sarif-root, --include-info


def _fail(message: str) -> int:
    from airlock.core.text import safe_text

    print(f"airlock: {safe_text(message, 1000)}", file=sys.stderr)
    return EXIT_USAGE


def _missing(paths: list[str]) -> int | None:
    for p in paths:
        if not os.path.lexists(p):
            return _fail(f"no such file or directory: {p}")
    return None


# airlock hash

class _Progress:
    """Bytes hashed so far, on one stderr line (threads report into it)."""

    def __init__(self, total: int) -> None:
        import threading

        self.total = total
        self.done = 0
        self.lock = threading.Lock()
        self.shown = -1

    def __call__(self, n: int) -> None:
        with self.lock:
            self.done += n
            percent = min(100, int(100 * self.done / self.total)) if self.total else 100
            if percent != self.shown:
                self.shown = percent
                filled = percent * self.WIDTH // 100
                bar = "#" * filled + "-" * (self.WIDTH - filled)
                sys.stderr.write(f"\rhashing: [{bar}] {percent:3d}% of {self.total / 2**30:.2f} GiB")
                sys.stderr.flush()

    WIDTH = 30

    def close(self) -> None:
        if self.shown >= 0:
            sys.stderr.write("\r" + " " * (self.WIDTH + 40) + "\r")
            sys.stderr.flush()


def run_hash(args: argparse.Namespace) -> int:
    from airlock.core.provenance import hashing, manifest

    problem = _missing(args.paths)
    if problem is not None:
        return problem
    files = [f for p in args.paths for f in _walk(p)]
    total = sum(hashing._size(f) for f in files)
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty()
                                         and total >= PROGRESS_MIN_BYTES)
    progress = _Progress(total) if show else None
    out = sys.stdout.buffer
    code = EXIT_CLEAN
    try:
        # The hashing threads stop at their next chunk once a stop signal came: the pool's shutdown waits
        # for them, and a large file would otherwise keep the process alive after "interrupted".
        stopping = lambda: interrupt.pending() is not None  # noqa: E731
        for result in hashing.hash_files(files, jobs=args.jobs, progress=progress, cancelled=stopping):
            if result.sha256 is None:
                if progress is not None:
                    progress.close()
                print(f"airlock: {result.path}: {result.error}", file=sys.stderr)
                code = EXIT_FINDINGS  # as sha256sum: the other files are still hashed
                continue
            out.write(manifest.format_line(result.sha256, os.fsencode(result.path), args.binary))
        out.flush()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `airlock hash … | head -1`: the reader left; nothing more to write
        return stdout_gone()
    finally:
        if progress is not None:
            progress.close()
    return code


def _walk(path: str) -> list[str]:
    from airlock.core.provenance.verify import walk

    return walk(path)


# airlock verify

def run_verify(args: argparse.Namespace) -> int:
    from airlock.core.errors import AirlockError
    from airlock.core.provenance import lockfile, verify
    from airlock.core.provenance.rules import Unverifiable

    policy = _policy(args)
    if policy is None:
        return EXIT_USAGE
    anchor = args.lock or args.manifest
    paths = list(args.paths) or ([os.path.dirname(os.path.abspath(anchor))] if anchor else [])
    if not paths:
        return _fail("verify needs a PATH (or --lock / --manifest, whose folder is then verified)")
    for extra in (args.manifest, args.lock, args.key, args.signature, *(args.cert or [])):
        if extra is not None and not os.path.exists(extra):
            return _fail(f"no such file: {extra}")
    problem = _missing(paths)
    if problem is not None:
        return problem
    report = verify.Report()
    try:
        lock = lockfile.read(args.lock) if args.lock else None
        if args.manifest:
            verify.check_manifest(args.manifest, paths, report)
        if lock is not None:
            rescan = None if args.no_rescan else (lambda files: _rescan(files, policy))
            verify.check_lock(lock, paths, report, rescan)
        for path in paths:
            if os.path.isdir(path):
                for repo in verify.repo_folders(path):
                    where = _snapshot_of(path)
                    verify.check_hf_repo(repo, report, only_snapshot=where)
            elif not verify.check_hf_file(path, report) and not (args.manifest or args.lock):
                report.add(path, Unverifiable, "nothing to verify this file against: give --manifest or "
                           "--lock")
        verify.check_shards(paths, report)
        require = bool(policy and policy.get("require-signature"))
        for folder in _signed_folders(paths):
            verify.check_signature(folder, report, key=args.key, certs=args.cert, signature=args.signature,
                                   require=require)
    except AirlockError as exc:  # a manifest line, a lock file or a key that cannot be used
        return _fail(str(exc))
    entries = report.result()
    if policy:
        from airlock.core.policy_file import apply

        apply(policy, entries)
    return _emit(entries, args, policy)


def _signed_folders(paths: list[str]) -> list[str]:
    """Folders a signature would cover: each folder argument, or in a Hugging Face cache each
    snapshot (a signature ships with a repository's files)."""
    from airlock.core.provenance import hf_cache, verify

    folders = []
    for path in paths:
        if not os.path.isdir(path):
            continue
        repos = verify.repo_folders(path)
        if not repos:
            folders.append(path)
            continue
        only = _snapshot_of(path)
        for repo in repos:
            folders += [os.path.join(repo, "snapshots", rev) for rev in hf_cache.snapshots(repo)
                        if only is None or rev == only]
    return folders


def _snapshot_of(path: str) -> str | None:
    from airlock.core.provenance import hf_cache

    where = hf_cache.split(os.path.join(path, "x"))
    if where is not None and where[1] == "snapshots" and len(where[2]) >= 2:
        return where[2][0]
    return None


def _rescan(files: list[tuple[str, str]], policy: Any) -> list[dict[str, Any]]:
    return scan_with_digest(files, None, policy or None)


def _policy(args: argparse.Namespace) -> Any:
    return user_policy(args)


def _emit(entries: list[dict[str, Any]], args: argparse.Namespace, policy: Any) -> int:
    from airlock.core.provenance import rules  # noqa: F401 - registers the PRV rules for SARIF
    from airlock.core.report import json_report, sarif, text

    if args.format == "json":
        out = json_report.render(entries, policy_note(policy))
    elif args.format == "sarif":
        out = sarif.render(entries, **sarif.options_from(args))
    else:
        colour = args.color == "always" or (args.color == "auto" and args.output is None
                                            and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
        out = text.render(entries, colour=colour, verified=True)
    if args.output:
        tmp = f"{args.output}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(out)
        os.replace(tmp, args.output)
    else:
        sys.stdout.write(out)
        sys.stdout.flush()
    fail_on = args.fail_on if args.fail_on is not None else (
        Severity.parse(policy.get("fail-on", "high")) if policy else Severity.HIGH)
    worst = max((Severity.parse(e["severity"]) for e in entries), default=Severity.NONE)
    return EXIT_FINDINGS if worst >= fail_on else EXIT_CLEAN


# airlock lock

def run_lock(args: argparse.Namespace) -> int:
    from airlock.core import __version__
    from airlock.core.policy_file import EMPTY, digest
    from airlock.core.provenance import lockfile, verify
    from airlock.core.scan import iter_files

    policy = _policy(args)
    if policy is None:
        return EXIT_USAGE
    problem = _missing(args.paths)
    if problem is not None:
        return problem
    from airlock.core.report.output import overwrites_input

    clobbered = overwrites_input(args.output, args.paths)
    if clobbered is not None:
        return _fail(f"refusing to write the lock over {clobbered}, a file being locked")
    out = os.path.abspath(args.output)
    folder = os.path.dirname(out)
    # A Hugging Face cache's blobs outside every snapshot (orphans, unfinished downloads) belong to no
    # revision: pinned, they would be "missing" from every other cache the same revision is downloaded to;
    # a --local-dir download's own bookkeeping changes with every download (verify.not_pinned). A file
    # named on the command line is pinned all the same.
    files = [pair for p in args.paths for pair in iter_files(p)
             if os.path.abspath(pair[1]) != out and os.path.basename(pair[1]) != "model.sig"
             and not (pair[0] != p and verify.not_pinned(pair[0]))]
    entries = scan_with_digest(files, args.jobs, policy or None, hashes=True)
    records = []
    for (_, real), entry in zip(files, entries, strict=True):
        if "sha256" not in entry:
            return _fail(f"cannot read {real}: not locked")
        records.append(lockfile.file_entry(entry, real, folder, entry["findings_digest"]))
    text = lockfile.render(records, lockfile.repositories(entries), airlock_version=__version__,
                           policy_digest=digest(policy or EMPTY))
    try:
        lockfile.write(out, text)
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}")
    worst = max((Severity.parse(e["severity"]) for e in entries), default=Severity.NONE)
    print(f"locked {len(records)} file(s) in {args.output} (worst verdict: {worst.label})", file=sys.stderr)
    return EXIT_CLEAN
