"""Shared pieces of the property tests: the capped scanning subprocess, seeds, mutations, counts."""

from __future__ import annotations

import collections
import functools
import io
import json
import os
import select
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

from hypothesis import strategies as st

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import corpus  # noqa: E402 - needs the path above

MEMORY_CAP = 1536 * 1024**2  # RLIMIT_DATA of the scanning subprocess
TIME_BUDGET_S = 5.0  # Airlock's own per-file budget inside the worker
# CPU seconds a scan may use: its wall-clock budget plus reporting. CPU, not wall time: a loaded
# machine slows a scan down without adding to its CPU time, while a loop that ignores the budget does.
CPU_CAP_S = 10.0
HANG_GUARD_S = 60.0  # no answer by then: the worker hangs (a failure, not a speed measure)

# Counts for the terminal summary (tests/robustness/conftest.py prints them, even under -q).
STATS: collections.Counter[str] = collections.Counter()
NOTES: dict[str, None] = {}  # an ordered set of lines


class WorkerDied(RuntimeError):
    pass


class ScanWorker:
    """One long-lived `scan_worker.py` under RLIMIT_DATA; restarted if an input kills it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.formats: list[str] = []

    def _start(self) -> subprocess.Popen[bytes]:
        worker = Path(__file__).with_name("scan_worker.py")
        proc = subprocess.Popen([sys.executable, str(worker), str(MEMORY_CAP), str(TIME_BUDGET_S)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        hello = json.loads(proc.stdout.readline() or b"{}")
        if not hello.get("ready"):
            raise WorkerDied("the scanning worker did not start")
        self.formats = hello["formats"]
        self.proc = proc
        return proc

    def scan(self, data: bytes, name: str = "fuzzed.bin", force: str = "", points: bool = False) -> dict[str, Any]:
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        assert proc.stdin is not None and proc.stdout is not None
        header = json.dumps({"name": name, "force": force, "points": points}).encode()
        try:
            proc.stdin.write(struct.pack("<I", len(header)) + header + struct.pack("<Q", len(data)) + data)
            proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            raise WorkerDied("the scanning worker died before reading the input") from None
        ready, _, _ = select.select([proc.stdout], [], [], HANG_GUARD_S)
        line = proc.stdout.readline() if ready else b""
        if not line:
            self.close()
            raise WorkerDied(f"no answer within {HANG_GUARD_S:g} s, or the worker died "
                             f"(memory cap {MEMORY_CAP:,} bytes)")
        STATS["inputs scanned"] += 1
        reply: dict[str, Any] = json.loads(line)
        STATS["peak worker RSS (MiB)"] = max(STATS["peak worker RSS (MiB)"], reply["maxrss_kb"] // 1024)
        return reply

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except BrokenPipeError:
                        pass
            self.proc = None


def check_reply(reply: dict[str, Any], data: bytes, how: str = "") -> None:
    """The properties every input must satisfy, whatever its bytes. `how` names the recipe."""
    recipe = f"{how} ({len(data)} bytes, head {data[:64]!r})"
    assert "error" not in reply, f"{reply['error']} on {recipe}\n{reply.get('traceback', '')}"
    assert reply["cpu_s"] < CPU_CAP_S, f"used {reply['cpu_s']:.1f} CPU s on {recipe}"
    assert not reply.get("task_errors"), f"isolated parser task failed on {recipe}: {reply['task_errors']}"
    assert not reply.get("text"), f"unescaped or unbounded text on {recipe}: {reply['text']}"
    crashes = [f for f in reply["findings"] if f[0] == "AIR001" and not _known(f[2])]
    assert not crashes, f"parser crash on {recipe}: {crashes}"
    for rule, severity, message in reply["findings"]:
        if rule in ("AIR002", "AIR003"):
            assert severity == "high", f"{rule} must be high, got {severity}: {message}"


# Crashes already reported, each with an xfail(strict) test in test_regressions.py: tolerated here
# (and counted) so that one known bug does not hide every other one from the fuzzer.
KNOWN_CRASHES: tuple[str, ...] = ()  # none open (npz's zip-version crash was fixed by its owner)


def _known(message: str) -> bool:
    if message.startswith(KNOWN_CRASHES):
        STATS["known crashes met again (reported)"] += 1
        return True
    return False


# Seeds: every corpus file, with the structural boundaries of its tree.

class Seed(NamedTuple):
    name: str
    data: bytes
    format: str  # what Airlock reads it as
    points: tuple[int, ...]  # structural boundaries
    scan_s: float  # how long its scan took in the worker (sets the example budget of its format)


_WORKER: ScanWorker | None = None
SEED_REPLIES: dict[str, dict[str, Any]] = {}


def shared_worker() -> ScanWorker:
    global _WORKER
    if _WORKER is None:
        _WORKER = ScanWorker()
    return _WORKER


@functools.cache
def seeds() -> tuple[Seed, ...]:
    """Every corpus file, scanned once by the capped worker: the format Airlock sees and the
    boundaries of its tree. The replies are kept for test_every_seed_scans to judge."""
    out = []
    for fixture in corpus.all_fixtures():
        if len(fixture.data) > 256 * 1024:
            continue  # big seeds make each mutation slow; their small siblings cover the same code
        reply = shared_worker().scan(fixture.data, fixture.name.rsplit("/", 1)[-1], points=True)
        SEED_REPLIES[fixture.name] = reply
        out.append(Seed(fixture.name, fixture.data, reply.get("format", "?"),
                        tuple(reply.get("points", (0, len(fixture.data)))), reply["elapsed_s"]))
    return tuple(out)


def seeds_by_format() -> dict[str, list[Seed]]:
    table: dict[str, list[Seed]] = collections.defaultdict(list)
    for seed in seeds():
        table[seed.format].append(seed)
    return table


def budget(examples: int, pool: list[Seed], seconds: float) -> int:
    """Examples for a test: `examples` (times the scale), fewer when this format scans slowly."""
    per_input = max(sum(s.scan_s for s in pool) / max(len(pool), 1), 1e-3)
    return max(5, min(examples, int(seconds / per_input))) * scale()


# Mutations. Each takes the bytes and plain parameters drawn by hypothesis.

INFLATED = (0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32, 1 << 62, (1 << 63) - 1, (1 << 64) - 1)
WIDTHS = {1: "B", 2: "H", 4: "I", 8: "Q"}


def flip(data: bytes, pos: int, mask: int) -> bytes:
    if not data:
        return data
    pos %= len(data)
    return data[:pos] + bytes([data[pos] ^ (mask or 1)]) + data[pos + 1:]


def truncate(data: bytes, cut: int) -> bytes:
    return data[:cut]


def inflate(data: bytes, pos: int, width: int, value: int, big_endian: bool) -> bytes:
    """Overwrite an integer field with a huge (or zero) count, length or offset."""
    value &= (1 << (8 * width)) - 1
    raw = struct.pack((">" if big_endian else "<") + WIDTHS[width], value)
    pos = min(pos, max(len(data) - width, 0))
    return data[:pos] + raw + data[pos + width:]


def splice(data: bytes, pos: int, other: bytes, start: int, length: int, replace: bool) -> bytes:
    """Insert (or overwrite with) a slice of another seed."""
    piece = other[start:start + length]
    return data[:pos] + piece + data[pos + (len(piece) if replace else 0):]


def zip_member_swap(data: bytes, index: int, other: bytes, duplicate: bool) -> bytes:
    """Rebuild a zip with one member's content replaced by another file (or the member doubled)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error):
        return data  # an earlier mutation broke the zip: nothing to swap
    if not members:
        return data
    index %= len(members)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, _quiet_duplicates():
        for i, (name, content) in enumerate(members):
            zf.writestr(name, other if i == index else content)
            if duplicate and i == index:
                zf.writestr(name, content)
    return buf.getvalue()


class _quiet_duplicates:
    """zipfile warns on duplicate names; pytest turns warnings into errors."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def scale() -> int:
    """AIRLOCK_FUZZ_SCALE multiplies every example budget (CI keeps 1)."""
    return max(1, int(os.environ.get("AIRLOCK_FUZZ_SCALE", "1")))


@st.composite
def mutated(draw: st.DrawFn, pool: list[Seed]) -> tuple[str, bytes]:
    """A seed from `pool` with one to three mutations applied."""
    everything = seeds()
    name, data, _fmt, points, _t = draw(st.sampled_from(pool))
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("flip", "truncate", "inflate", "splice", "zip", "flip_run")))
        at = draw(st.sampled_from(points)) if points and draw(st.booleans()) else draw(st.integers(0, len(data)))
        if kind == "flip":
            data = flip(data, at, draw(st.integers(1, 255)))
        elif kind == "flip_run":
            for k in range(draw(st.integers(1, 16))):
                data = flip(data, at + k, draw(st.integers(1, 255)))
        elif kind == "truncate":
            data = truncate(data, at)
        elif kind == "inflate":
            data = inflate(data, at, draw(st.sampled_from((1, 2, 4, 8))),
                              draw(st.sampled_from((*INFLATED, len(data), len(data) + 1))), draw(st.booleans()))
        elif kind == "splice":
            other = draw(st.sampled_from(everything)).data
            data = splice(data, at, other, draw(st.integers(0, len(other))), draw(st.integers(1, 4096)),
                             draw(st.booleans()))
        else:
            other = draw(st.sampled_from(everything)).data
            data = zip_member_swap(data, draw(st.integers(0, 50)), other, draw(st.booleans()))
        steps.append(kind)
    return f"{name} + {'/'.join(steps)}", data
