"""Shared body of the atheris harnesses (run by hand, never collected by pytest).

Each `fuzz_<format>.py` calls `main("<format>")`: libFuzzer feeds bytes to that format's `parse`
(whatever its sniffer says), the way tests/robustness/scan_worker.py does in the property tests,
and `fuzz_scan.py` feeds them to the whole `scan_bytes` (sniff, parse, nested formats, reports).
Anything but the documented errors (FormatError, LimitExceeded, MemoryError, RecursionError) is a
crash, and so is a scan that reports a parser failure (AIR001) or shows unescaped text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "robustness"), str(HERE.parent)]

with atheris.instrument_imports(include=["airlock"]):
    from airlock.core import formats
    from airlock.core.context import ScanContext
    from airlock.core.errors import FormatError, LimitExceeded
    from airlock.core.limits import DEFAULT_LIMITS
    from airlock.core.report import json_report, sarif, text
    from airlock.core.scan import scan_bytes
    from airlock.core.source import Source
    from airlock.core.tree import FILE, Node

import scan_worker  # noqa: E402 - inline isolation: ONNX/HDF5 tasks parse in this process
import text_checks  # noqa: E402

LIMITS = DEFAULT_LIMITS.replace(time_budget_s=10.0, max_decompressed_bytes=64 * 1024**2)


def _walk(root: Node) -> None:
    for i, _node in enumerate(root.walk(expand_lazy=True)):
        if i > 5000:
            break


def parse_one(fmt: str, data: bytes) -> None:
    module = formats.by_name(fmt)
    ctx = ScanContext(LIMITS)
    root = Node(FILE, "fuzzed", offset=0, length=len(data), attrs={"format": fmt})
    ctx.current, ctx.depth = root, 1
    try:
        module.parse(Source.from_bytes(data, "fuzzed"), ctx)
    except (FormatError, LimitExceeded, MemoryError, RecursionError):
        pass
    _walk(root)
    if scan_worker.TASK_ERRORS:
        raise RuntimeError(f"isolated task failed: {scan_worker.TASK_ERRORS}")


def scan_one(data: bytes) -> None:
    result = scan_bytes(data, "fuzzed", limits=LIMITS)
    try:
        crashes = [f.message for f in result.findings if f.rule == "AIR001"]
        if crashes:
            raise RuntimeError(f"parser failure reported: {crashes}")
        shown = text_checks.problems(result, known_gaps=True)
        if shown:
            raise RuntimeError(f"unescaped text: {shown[:3]}")
        entry = json_report.file_dict(result)
        text.render([entry], colour=False)
        json.loads(sarif.render([entry]))
    finally:
        result.close()


def main(fmt: str | None) -> None:
    formats.load_all_modules()
    scan_worker.inline_isolation()
    names = [m.NAME for m in formats.load_all_modules()]
    if fmt is not None and fmt not in names:
        raise SystemExit(f"unknown format {fmt!r}; registered: {', '.join(names)}")

    def one_input(data: bytes) -> None:
        del scan_worker.TASK_ERRORS[:]
        if fmt is None:
            scan_one(data)
        else:
            parse_one(fmt, data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
