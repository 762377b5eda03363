"""Property tests: whatever the bytes, every parser returns a tree and findings, in bounded time
and memory, and never raises anything but its documented errors.

Inputs are seeded from every corpus file (tests/corpus.py, which also collects tests/fixtures/*)
and mutated the ways real bypasses and parser crashes were found: byte flips, truncation at
every structural boundary, counts/lengths/offsets inflated to 2^32, 2^62, 2^64-1, slices of other
files spliced in, zip members swapped or doubled. Every format registered in
`airlock.core.formats` is covered as soon as it lands: its seeds are the corpus files it claims.

Scans run in a subprocess under RLIMIT_DATA (robust_harness.MEMORY_CAP). The budget is set for
CI; `AIRLOCK_FUZZ_SCALE=20 python -m pytest tests/robustness` runs twenty times as many random
(not derandomized) examples.
"""

from __future__ import annotations

import pytest
import robust_harness as rh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.core import formats
from airlock.core.source import Source

# The fast lane (`python -m pytest -m "not slow"`) skips it; CI runs everything.
pytestmark = pytest.mark.slow

SCALE = rh.scale()


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=SCALE == 1, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


FORMATS = [m.NAME for m in formats.load_all_modules()]


def _pool(fmt: str) -> list[rh.Seed]:
    """The corpus files Airlock reads as `fmt`; every seed when the corpus has none of them yet."""
    pool = rh.seeds_by_format().get(fmt)
    if not pool:
        rh.NOTES[f"no corpus seed is read as {fmt}: fuzzed from every seed instead"] = None
        return list(rh.seeds())
    return pool


def test_every_seed_scans(worker: rh.ScanWorker) -> None:
    """Every corpus file under the memory cap: no crash, findings as documented, text escaped."""
    for seed in rh.seeds():
        rh.check_reply(rh.SEED_REPLIES[seed.name], seed.data, seed.name)
        rh.STATS["seed files"] += 1
    assert rh.STATS["seed files"] >= 50


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncation_at_every_boundary(worker: rh.ScanWorker, fmt: str) -> None:
    """Cut the seeds at their structural boundaries (as many as the time budget allows)."""
    pool = _pool(fmt)
    cuts = [(seed, p) for seed in pool for p in seed.points if p < len(seed.data)]
    step = max(1, len(cuts) // rh.budget(100, pool, 3.0))
    for seed, cut in cuts[::step]:
        piece = seed.data[:cut]
        reply = worker.scan(piece, seed.name.rsplit("/", 1)[-1])
        rh.check_reply(reply, piece, f"{seed.name} cut at {cut}")
        rh.STATS["truncations"] += 1
        if reply["format"] == fmt and reply["severity"] not in ("high", "critical"):
            rh.STATS[f"truncations still read as a complete {fmt}"] += 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_seeds_of_each_format(worker: rh.ScanWorker, fmt: str) -> None:
    pool = _pool(fmt)

    @_settings(rh.budget(60, pool, 3.0))
    @given(rh.mutated(pool))
    def run(case: tuple[str, bytes]) -> None:
        name, data = case
        rh.check_reply(worker.scan(data, "fuzzed.bin"), data, name)
        rh.STATS[f"mutations ({fmt} seeds)"] += 1

    run()


@pytest.mark.parametrize("fmt", FORMATS)
def test_forced_parse_of_each_format(worker: rh.ScanWorker, fmt: str) -> None:
    """parse() itself on any mutated file, whatever sniff would say: only documented errors."""
    pool = _pool(fmt)

    @_settings(rh.budget(30, pool, 2.0))
    @given(st.one_of(rh.mutated(pool), st.deferred(lambda: rh.mutated(list(rh.seeds())))))
    def run(case: tuple[str, bytes]) -> None:
        name, data = case
        reply = worker.scan(data, "fuzzed.bin", force=fmt)
        assert "error" not in reply, f"{fmt}.parse raised {reply['error']} on {name}\n{reply.get('traceback')}"
        assert not reply.get("task_errors"), f"{fmt}: isolated task failed on {name}: {reply['task_errors']}"
        assert reply["cpu_s"] < rh.CPU_CAP_S, f"{fmt}.parse used {reply['cpu_s']:.1f} CPU s on {name}"
        rh.STATS[f"forced parses ({fmt})"] += 1

    run()


@_settings(150)
@given(st.one_of(st.binary(max_size=2048), st.deferred(lambda: rh.mutated(list(rh.seeds())))))
def test_scan_of_anything(worker: rh.ScanWorker, case: bytes | tuple[str, bytes]) -> None:
    data = case if isinstance(case, bytes) else case[1]
    rh.check_reply(worker.scan(data, "anything"), data)
    rh.STATS["whole-scan inputs"] += 1


@settings(max_examples=300 * SCALE, deadline=None, derandomize=SCALE == 1, database=None)
@given(st.binary(max_size=8192))
def test_sniffers_never_raise(head: bytes) -> None:
    for module in formats.load_all_modules():
        sniff_source = getattr(module, "sniff_source", None)
        score = sniff_source(Source.from_bytes(head, "x")) if sniff_source else module.sniff(head, len(head))
        assert isinstance(score, int) and 0 <= score <= 100, f"{module.NAME}.sniff returned {score!r}"
    rh.STATS["sniffer inputs"] += 1
