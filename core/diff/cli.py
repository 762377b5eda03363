"""`airlock diff A B`: what changed between the reviewed model (A) and this one (B).

Exit codes: 0 nothing security-relevant is new in B; 1 B adds pickle imports or calls, a new or
changed chat template, new ONNX operator types, or has a finding at or above --fail-on; 2 an input
could not be read or compared, or A and B are unrelated ("A and B share no tensors"), or bad
arguments. Registered from airlock.core.cli; nothing here is imported by `airlock scan`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from airlock.core.cli_common import EXIT_USAGE, print_report, severity_arg
from airlock.core.findings import Severity


def add_parser(sub: Any) -> None:
    d = sub.add_parser("diff", help="what changed between a reviewed model (A) and a candidate (B)",
                       description="Compare two model files or folders, across formats: metadata, tensors "
                                   "(identical by hash, else the numeric change), chat templates, pickle "
                                   "imports and calls, ONNX operators. Nothing is loaded or run.")
    d.add_argument("a", metavar="A", help="the reference (the model that was reviewed): a file or folder")
    d.add_argument("b", metavar="B", help="the candidate: a file or folder")
    d.add_argument("--format", choices=("text", "json", "html"), default="text")
    d.add_argument("--fail-on", default=None, metavar="LEVEL", type=severity_arg,
                   help="exit 1 when B has a finding at this severity or above (default: high)")
    d.add_argument("--output", "-o", metavar="FILE", help="write the report here instead of stdout")
    d.set_defaults(handler=run_diff)


def run_diff(args: argparse.Namespace) -> int:
    for path in (args.a, args.b):
        if not os.path.exists(path):
            print(f"airlock: no such file or directory: {path}", file=sys.stderr)
            return EXIT_USAGE
    from airlock.core.report.output import overwrites_input

    clobbered = overwrites_input(args.output, [args.a, args.b])
    if clobbered is not None:
        print(f"airlock: refusing to write the report over {clobbered}, a file being compared",
              file=sys.stderr)
        return EXIT_USAGE
    if os.path.isdir(args.a) != os.path.isdir(args.b):
        print("airlock: compare two files or two folders (A and B are one of each)", file=sys.stderr)
        return EXIT_USAGE
    from airlock.core.diff.compare import compare_paths
    from airlock.core.diff.render import document, render_json, render_text

    fail_on = args.fail_on if args.fail_on is not None else Severity.HIGH
    pairs = compare_paths(args.a, args.b, fail_on=fail_on)
    doc = document(args.a, args.b, pairs, fail_on.label)
    if args.format == "json":
        out = render_json(doc)
    elif args.format == "html":
        from airlock.core.diff.html import render_html

        out = render_html(doc)
    else:
        out = render_text(doc)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(out)
        except OSError as exc:
            print(f"airlock: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        print_report(out)
    return int(doc["exit_code"])
