"""What the command line's commands share: exit codes, argument types, the SARIF options, the policy
file, and writing a report to stdout.

`airlock scan` (airlock.core.cli) and the sub-commands it registers (provenance, review, diff) import
this; it imports none of them, so the sub-commands never import the top-level command line back.
Loaded on every `airlock` start: only argparse and the severity scale here, the rest when used.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from airlock.core.findings import Severity

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # as a shell reports a command ended by SIGPIPE


def stdout_gone() -> int:
    """`airlock … | head`: the reader left. Let nothing more reach the closed pipe (Python would report it
    again at exit); returns the exit code for it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def severity_arg(text: str) -> Severity:
    """A --fail-on level. Not "none": a file at no severity would then fail the run, whatever it holds."""
    try:
        level = Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if level == Severity.NONE:
        raise argparse.ArgumentTypeError("expected info, low, medium, high or critical (to never fail, "
                                         "ignore the exit code)")
    return level


def seconds(text: str) -> float:
    """A positive, finite number of seconds (NaN and infinity would be a budget never reached)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text}")
    return value


def byte_size(text: str) -> int:
    """A size as a policy file spells it: bytes, or 500MB, 4GiB (MB = 10^6 bytes, MiB = 2^20)."""
    from airlock.core.policy_file import SIZE_UNITS

    number, unit = text.strip(), ""
    while number and not number[-1].isdigit():
        number, unit = number[:-1], number[-1] + unit
    try:
        value = int(float(number) * SIZE_UNITS[unit.strip().upper()])
    except (KeyError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 512MiB, 4GiB, 2GB)") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 byte")
    return value


def positive_int(text: str) -> int:
    """--jobs N: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def existing_folder(text: str) -> str:
    """--sarif-root DIR: a folder that exists (a typo would make every URI absolute without a word)."""
    if not os.path.isdir(text):
        what = "not a folder" if os.path.exists(text) else "no such folder"
        raise argparse.ArgumentTypeError(f"{what}: {text}")
    return text


def add_sarif_options(parser: argparse.ArgumentParser) -> None:
    """Code-scanning options of --format sarif (airlock.core.report.sarif.options_from reads them)."""
    parser.add_argument("--sarif-root", metavar="DIR", type=existing_folder,
                        help="SARIF URIs are relative to this folder (default: the nearest folder above the "
                             "current one that holds .git, else the current folder)")
    parser.add_argument("--include-info", action="store_true",
                        help="keep info-level findings in SARIF (left out by default)")


def user_policy(args: argparse.Namespace) -> Any:
    """The policy file's settings (installed into this process), False when there is none, None
    when it cannot be used (the reason printed). Reads --policy FILE and --no-policy."""
    if args.no_policy:
        return False
    scanned = [str(p) for p in getattr(args, "paths", None) or ()]
    if args.policy is None:
        from airlock.core.policy_file import brought_along, find  # small: tomllib only when a file exists

        for passed_over in brought_along(scanned):
            print(f"airlock: warning: not using the policy file {passed_over}: it is inside a scanned folder "
                  f"or beside a scanned file (a downloaded model must not bring its own policy); pass "
                  f"--policy {passed_over} to use it", file=sys.stderr)
        if find(scanned=scanned) is None:
            return False
    from airlock.core.policy_file import PolicyError, install, resolve

    try:
        policy = resolve(args.policy, scanned=scanned)
    except PolicyError as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return None
    install(policy)
    return policy


def policy_note(policy: Any) -> dict[str, Any] | None:
    """The policy file in effect, for the JSON report (which findings it changed says itself)."""
    if not policy:
        return None
    from airlock.core.policy_file import digest

    return {"policy": {"path": policy.path, "digest": digest(policy)}}


def print_report(out: str) -> None:
    """A rendered report to stdout."""
    try:
        sys.stdout.write(out)
    except UnicodeEncodeError:  # a terminal whose encoding cannot show some name: escape, never crash
        encoding = sys.stdout.encoding or "ascii"
        sys.stdout.write(out.encode(encoding, "backslashreplace").decode(encoding))
    sys.stdout.flush()
