"""Checks the format tests share (imported by plain name: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airlock.core.findings import Severity


def rules(result: Any) -> set[str]:
    """The ids of the rules that fired on a scan result."""
    return {f.rule for f in result.findings}


def findings_text(result: Any) -> list[tuple[str, str]]:
    """(rule, message) of each finding: what an assertion prints when it fails."""
    return [(f.rule, f.message) for f in result.findings]


def assert_flagged(result: Any, rule: str, severity: Severity) -> None:
    """A hostile file: its own rule fired, the verdict is at least its severity, and no parser crashed."""
    assert rule in rules(result), findings_text(result)
    assert result.severity >= severity, findings_text(result)
    assert "AIR001" not in rules(result), findings_text(result)  # AIR001: a parser crash


def assert_corpus_verdict(result: Any, want: Severity) -> None:
    """A corpus file: no parser crash; a hostile one (high and up) at least `want`, a milder one exactly."""
    assert "AIR001" not in rules(result), findings_text(result)
    if want >= Severity.HIGH:
        assert result.severity >= want, findings_text(result)
    else:
        assert result.severity == want, findings_text(result)


def long_pickle_member(system_pickle: bytes) -> bytes:
    """A 32 MiB pickle whose os.system call comes at its very end: a member a streamed archive reader
    must read all of, without keeping it whole."""
    piece = b"\x8e" + (256 * 1024).to_bytes(8, "little") + bytes(256 * 1024) + b"0"  # BINBYTES8, POP
    return b"\x80\x04" + piece * 128 + system_pickle[2:]


def scan_with_peak(data: bytes, name: str) -> tuple[Any, int]:
    """Scan bytes and measure the most memory Python allocated meanwhile (tracemalloc's peak)."""
    import tracemalloc

    from airlock.core.scan import scan_bytes

    tracemalloc.start()
    try:
        result = scan_bytes(data, name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def mutated(seed: bytes, edits: Iterable[tuple[int, int]]) -> bytes:
    """`seed` with each (position, byte) edit applied, positions wrapped to its length."""
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    return bytes(data)
