"""`airlock approve`, `airlock reject` and `airlock history`, and the scan options of the gate.

Registered from airlock.core.cli the way `hash`/`verify`/`lock` are, so that a plain `airlock scan`
never imports SQLAlchemy. Exit codes: 0 on success; 1 when `history` finds no record for a file or
hash, or when `approve` is refused (critical findings without --accept-critical: nothing recorded);
2 for a missing file, a database that cannot be opened or was written by a newer Airlock, or a bad
policy file — one line naming the problem, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from airlock.core.cli_common import EXIT_USAGE, positive_int, user_policy

EXIT_OK, EXIT_NO_RECORD = 0, 1
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
DB_HELP = ("approvals database: a file path, sqlite:///FILE or postgresql://USER@HOST/DB (default: "
           "$AIRLOCK_DB, else approvals.sqlite3 in the user data folder)")


def add_parsers(sub: Any) -> None:
    for name, verb in (("approve", "approve"), ("reject", "reject")):
        p = sub.add_parser(name, help=f"record that you {verb} these exact files (by sha256), with a note",
                           description=f"Scan and hash each file, and record that you {verb} its exact "
                                       "content: sha256, size, name, format, verdict, findings digest, "
                                       "policy "
                                       "digest, reviewer and time. All files are recorded in one "
                                       "transaction, "
                                       "or none.")
        p.add_argument("paths", nargs="+", metavar="FILE", help="files, or folders (every file below them)")
        p.add_argument("--note", required=True, metavar="TEXT", help="why (kept with the decision)")
        p.add_argument("--reviewer", metavar="NAME", help="who decides (default: your login name)")
        if name == "approve":
            p.add_argument("--accept-critical", action="store_true",
                           help="approve even files with critical findings (the record says so)")
        p.add_argument("--db", metavar="URL", help=DB_HELP)
        p.add_argument("--jobs", "-j", type=positive_int, default=None, metavar="N")
        p.add_argument("--policy", metavar="FILE", help="policy file (default: looked up from the "
                                                        "current folder)")
        p.add_argument("--no-policy", action="store_true")
        p.set_defaults(handler=run_decide, decision=name)

    h = sub.add_parser("history", help="every decision recorded for a file or a sha256; the latest counts",
                       description="Print the review trail of each file (hashed) or sha256. Exit 1 when one "
                                   "has no record.")
    h.add_argument("targets", nargs="+", metavar="FILE|SHA256")
    h.add_argument("--db", metavar="URL", help=DB_HELP)
    h.add_argument("--format", choices=("text", "json"), default="text")
    h.set_defaults(handler=run_history)


def add_scan_options(scan: argparse.ArgumentParser) -> None:
    """The gate's options on `airlock scan` (the parser is built in airlock.core.cli)."""
    scan.add_argument("--require-approved", action="store_true",
                      help="model files need an approval of their exact sha256: none is high, a rejection "
                           "critical (also: require-approved = true in the policy file)")
    scan.add_argument("--db", metavar="URL", help=DB_HELP + "; alone, it adds each model file's decision "
                                                            "to the report")


def _fail(message: str) -> int:
    from airlock.core.text import safe_text

    print(f"airlock: {safe_text(message, 2000)}", file=sys.stderr)
    return EXIT_USAGE


def _refuse_missing_named(url: str | None) -> None:
    """Look-ups only: an SQLite file named by --db or AIRLOCK_DB that does not exist is a typo, not an
    empty trail (ReviewDbError). The default file may not exist yet: nothing was decided so far."""
    from airlock.core.review.db import ReviewDbError, resolve

    target = resolve(url)
    if target.kind == "sqlite" and not target.is_default and not os.path.exists(target.location):
        raise ReviewDbError(f"no such approvals database: {target.location}")


def _open(url: str | None, write: bool) -> Any:
    from airlock.core.review.queries import open_store

    return open_store(url, write=write)


def run_decide(args: argparse.Namespace) -> int:
    from airlock.core.review.db import ReviewDbError
    from airlock.core.review.decisions import DecisionRefused, decide
    from airlock.core.text import safe_text

    for path in args.paths:
        if not os.path.exists(path):
            return _fail(f"no such file or directory: {path}")
    if not args.note.strip():
        return _fail("--note must say why")
    policy = user_policy(args)
    if policy is None:
        return EXIT_USAGE
    try:
        store = _open(args.db, write=True)
    except ReviewDbError as exc:
        return _fail(str(exc))
    try:
        records = decide(store, args.paths, args.decision, note=args.note, reviewer=args.reviewer,
                         accept_critical=getattr(args, "accept_critical", False), policy=policy or None,
                         jobs=args.jobs)
    except DecisionRefused as exc:
        print(f"airlock: {safe_text(str(exc), 4000)}", file=sys.stderr)
        return EXIT_NO_RECORD
    except ReviewDbError as exc:
        return _fail(str(exc))
    finally:
        store.close()
    word = "approved" if args.decision == "approve" else "rejected"
    for record in records:
        extra = "; critical findings accepted" if record["accepted_critical"] else ""
        print(f"{word} {record['sha256']}  {safe_text(record['path'], 500)}  ({record['format']}, verdict "
              f"{record['verdict']}{extra}) by {safe_text(record['reviewer'], 100)}, decision "
              f"#{record['id']}")
    print(f"{len(records)} decision(s) recorded in {store.shown}", file=sys.stderr)
    return EXIT_OK


def _target_hash(target: str) -> tuple[str | None, str | None]:
    """(sha256, error) for a history argument: an existing file is hashed, else 64 hex digits are a
    hash."""
    from airlock.core.provenance.hashing import sha256_file

    if os.path.isdir(target):
        return None, f"{target} is a folder: give a file or a sha256"
    if os.path.exists(target):
        try:
            return sha256_file(target)[0], None
        except OSError as exc:
            return None, f"cannot read {target}: {exc.strerror or exc}"
    if SHA256.fullmatch(target):
        return target.lower(), None
    return None, f"no such file, and not a sha256: {target}"


def run_history(args: argparse.Namespace) -> int:
    from airlock.core.review.db import ReviewDbError

    hashes: list[tuple[str, str]] = []
    for target in args.targets:
        sha, error = _target_hash(target)
        if sha is None:
            return _fail(error or f"cannot hash {target}")
        hashes.append((target, sha))
    try:
        _refuse_missing_named(args.db)
        with _open(args.db, write=False) as store:
            trails = [(target, sha, store.history(sha)) for target, sha in hashes]
            shown = store.shown
    except ReviewDbError as exc:
        return _fail(str(exc))
    if args.format == "json":
        doc = {"database": shown, "files": [{"target": target, "sha256": sha, "current": _current(trail),
                                             "decisions": trail} for target, sha, trail in trails]}
        sys.stdout.write(json.dumps(doc, ensure_ascii=True, indent=2) + "\n")
    else:
        sys.stdout.write("".join(render_history(target, sha, trail) for target, sha, trail in trails))
    sys.stdout.flush()
    return EXIT_NO_RECORD if any(not trail for _, _, trail in trails) else EXIT_OK


def _current(trail: list[dict[str, Any]]) -> str | None:
    return trail[-1]["decision"] if trail else None


def render_history(target: str, sha: str, trail: list[dict[str, Any]]) -> str:
    from airlock.core.text import safe_text

    head = f"{sha}" + (f"  {safe_text(target, 500)}" if target.lower() != sha else "")
    if not trail:
        return f"{head}\n  no record: no decision is recorded for this sha256\n"
    lines = [f"{head}  ({len(trail)} decision(s); the latest counts)"]
    for i, d in enumerate(trail):
        word = "APPROVED" if d["decision"] == "approve" else "REJECTED"
        flags = ", critical findings accepted" if d["accepted_critical"] else ""
        counts = len([f for f in d["findings"] if f.get("rule")])
        lines.append(f"  #{d['id']} {d['decided_at']}  {word} by {safe_text(str(d['reviewer']), 100)}"
                     f"{'   <- counts' if i == len(trail) - 1 else ''}")
        lines.append(f"      file {safe_text(str(d['file_name']), 300)} ({d['format']}, {d['size']:,} "
                     f"bytes), "
                     f"verdict {d['verdict']}, {counts} finding(s){flags}")
        lines.append(f"      findings digest {d['findings_digest'][:16]}…  policy digest "
                     f"{d['policy_digest'][:16]}…  Airlock {safe_text(str(d['airlock_version']), 40)}")
        lines.append(f"      note: {safe_text(str(d['note']), 2000)}")
    word = "approved" if trail[-1]["decision"] == "approve" else "REJECTED"
    lines.append(f"  now: {word}")
    return "\n".join(lines) + "\n"


def scan_gate(args: argparse.Namespace, policy: Any) -> Any:
    """For `airlock scan`: None when the gate is off, the step to run after scanning when on, or the
    int exit code 2 when the database cannot be opened (before anything is scanned)."""
    require = bool(args.require_approved or (policy and policy.get("require-approved")))
    if not require and not args.db:
        return None
    from airlock.core.review.db import ReviewDbError
    from airlock.core.review.gate import gate

    try:
        _refuse_missing_named(args.db)
        store = _open(args.db, write=False)
    except ReviewDbError as exc:
        return _fail(str(exc))
    return GateStep(store, gate(store, require=require, policy=policy or None))


class GateStep:
    """The gate as `airlock scan` runs it: called with entries (the whole list, or one at a time for
    jsonl), closed once when the scan ends."""

    def __init__(self, store: Any, step: Any) -> None:
        self.store = store
        self.step = step
        # Files the gate refuses (REV001/REV002 as the gate made them, not suppressed or re-rated by the
        # policy): they fail the scan whatever --fail-on says, or `--fail-on critical` would let
        # unapproved models through a gate the user asked for.
        self.refused = 0

    def __call__(self, entries: list[dict[str, Any]], files: list[tuple[str, str]]) -> list[dict[str, Any]]:
        from airlock.core.review.rules import NotApproved, Rejected

        result: list[dict[str, Any]] = self.step(entries, files)
        gate_rules = {NotApproved.id, Rejected.id}
        self.refused += sum(1 for entry in result if any(
            f["rule"] in gate_rules and "suppressed_by" not in f and "overridden_by" not in f
            for f in entry["findings"]))
        return result

    def close(self) -> None:
        self.store.close()
