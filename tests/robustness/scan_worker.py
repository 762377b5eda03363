"""A scanning subprocess with a memory cap, fed inputs over a pipe by the property tests.

Run as `python scan_worker.py RLIMIT_DATA_BYTES TIME_BUDGET_S`. Protocol on stdin: repeated
frames of `<I header length><JSON header><Q data length><data>`; the header is
`{"name": display name, "force": format name or ""}`. For each frame one JSON line comes back on
stdout. The memory cap is RLIMIT_DATA (heap and anonymous maps), not RLIMIT_AS, which would
also count read-only file maps and the address space libraries reserve.

Airlock's isolated parser tasks (ONNX, HDF5) run inline here: see `inline_isolation`.
Without "force" the input goes through `scan_bytes` (sniff, parse, findings) and the worker then
walks the tree with every lazy page expanded (up to a cap) and renders the text, JSON and SARIF
reports: page factories and report writers see fuzzed data too. With "force" the named format's
`parse` runs on the bytes whatever its sniff says, and only the documented errors (FormatError,
LimitExceeded, MemoryError, RecursionError) may leave it.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import time
import traceback
from typing import Any

import text_checks

MAX_NODES_WALKED = 5000


def _walk(root: Any) -> int:
    walked = 0
    for node in root.walk(expand_lazy=True):
        walked += 1
        if not isinstance(node.label, str):
            raise TypeError(f"label of {node!r} is {type(node.label).__name__}, not str")
        if walked >= MAX_NODES_WALKED:
            break
    return walked


def boundaries(root: Any, data: bytes) -> list[int]:
    """Offsets where a structure starts or ends: tree nodes of the outer file, zip records."""
    points = {0, len(data)}
    for i, node in enumerate(root.walk(expand_lazy=True)):
        if i > 20_000:
            break
        if node.member is None and node.offset is not None:
            points.add(node.offset)
            if node.length:
                points.add(node.offset + node.length)
    for sig in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"\x93NUMPY", b"GGUF"):
        pos = data.find(sig)
        while pos != -1 and len(points) < 5000:
            points.update((pos, pos + 4))
            pos = data.find(sig, pos + 1)
    return sorted(p for p in points if 0 <= p <= len(data))


def _scan(data: bytes, name: str, limits: Any, points: bool = False) -> dict[str, Any]:
    from airlock.core.report import json_report, sarif, text
    from airlock.core.scan import scan_bytes

    result = scan_bytes(data, name, limits=limits)
    try:
        walked = _walk(result.root)
        shown = text_checks.problems(result, known_gaps=True)
        entry = json_report.file_dict(result)
        text.render([entry], colour=False)
        json.loads(json_report.render([entry]))
        json.loads(sarif.render([entry]))
        return {"format": result.format, "severity": result.severity.label, "nodes": walked, "text": shown[:5],
                "findings": [[f.rule, f.severity.label, f.message[:300]] for f in result.findings],
                **({"points": boundaries(result.root, data)} if points else {})}
    finally:
        result.close()


def _forced(data: bytes, name: str, fmt: str, limits: Any) -> dict[str, Any]:
    from airlock.core import formats
    from airlock.core.context import ScanContext
    from airlock.core.errors import FormatError, LimitExceeded
    from airlock.core.source import Source
    from airlock.core.tree import FILE, Node

    module = formats.by_name(fmt)
    ctx = ScanContext(limits)
    root = Node(FILE, name, offset=0, length=len(data), attrs={"format": fmt})
    ctx.current = root
    ctx.depth = 1
    outcome = "parsed"
    try:
        module.parse(Source.from_bytes(data, name), ctx)
    except (FormatError, LimitExceeded, MemoryError, RecursionError) as exc:
        outcome = type(exc).__name__
    return {"format": fmt, "outcome": outcome, "nodes": _walk(root),
            "findings": [[f.rule, f.severity.label, f.message[:300]] for f in ctx.findings]}


TASK_ERRORS: list[str] = []


def inline_isolation() -> bool:
    """Run airlock.core.isolate's tasks (ONNX protobuf, HDF5) in this process instead of a fresh
    interpreter per file: fuzzing them becomes fast, a native crash kills this worker (which the
    test reports), and a task's own exception is recorded as a parser bug instead of a finding."""
    import os

    from airlock.core import isolate

    needed = ("run_isolated", "_resolve", "ChildFormatError", "IsolationFailure", "MALFORMED", "ERROR")
    if not all(hasattr(isolate, n) for n in needed):
        return False

    def run_inline(task: str, source: Any, ctx: Any, options: Any = None, **_: Any) -> Any:
        by_path = source.member is None and source.path is not None
        data = None if by_path else source.read(0, source.size)
        try:
            result = isolate._resolve(task)(data, os.fspath(source.path) if by_path else None, options or {})
        except isolate.ChildFormatError as exc:
            raise isolate.IsolationFailure(isolate.MALFORMED, str(exc)) from None
        except RecursionError:
            raise isolate.IsolationFailure(isolate.MALFORMED, "structure nested too deeply") from None
        except MemoryError:
            raise isolate.IsolationFailure(isolate.ERROR, "memory budget exceeded while parsing") from None
        except Exception as exc:  # noqa: BLE001 - the real child reports it as a finding; here it is a bug
            TASK_ERRORS.append(f"isolated task {task} raised {type(exc).__name__}: {exc}"[:500])
            raise isolate.IsolationFailure(isolate.ERROR, f"{type(exc).__name__}: {exc}") from None
        return json.loads(json.dumps(result, ensure_ascii=True, default=str))

    for module in list(sys.modules.values()):
        if getattr(module, "run_isolated", None) is isolate.run_isolated:
            module.run_isolated = run_inline  # type: ignore[attr-defined]
    return True


def main() -> int:
    cap, budget = int(sys.argv[1]), float(sys.argv[2])
    from airlock.core import formats
    from airlock.core.limits import DEFAULT_LIMITS

    formats.load_all_modules()
    inlined = inline_isolation()
    limits = DEFAULT_LIMITS.replace(time_budget_s=budget, max_decompressed_bytes=64 * 1024**2)
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    stdin, stdout = sys.stdin.buffer, sys.stdout
    print(json.dumps({"ready": True, "inline_isolation": inlined,
                      "formats": [m.NAME for m in formats.load_all_modules()]}), flush=True)
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return 0
        header = json.loads(stdin.read(struct.unpack("<I", head)[0]))
        data = stdin.read(struct.unpack("<Q", stdin.read(8))[0])
        reply: dict[str, Any] = {"name": header["name"]}
        del TASK_ERRORS[:]
        start, start_cpu = time.monotonic(), time.process_time()
        try:
            if header.get("force"):
                reply.update(_forced(data, header["name"], header["force"], limits))
            else:
                reply.update(_scan(data, header["name"], limits, bool(header.get("points"))))
        except MemoryError:
            reply["error"] = "MemoryError escaped"
        except BaseException as exc:  # noqa: BLE001 - every escape is what the tests look for
            reply["error"] = f"{type(exc).__name__}: {exc}"[:1000]
            reply["traceback"] = traceback.format_exc()[-4000:]
        if TASK_ERRORS:
            reply["task_errors"] = TASK_ERRORS[:5]
        reply["elapsed_s"] = time.monotonic() - start  # sizes the example budgets; asserted on: cpu_s
        reply["cpu_s"] = time.process_time() - start_cpu
        reply["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
