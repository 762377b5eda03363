"""Robustness suite: one capped scanning worker per session and a summary of what was tried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import robust_harness


@pytest.fixture(scope="session")
def worker() -> Iterator[robust_harness.ScanWorker]:
    w = robust_harness.shared_worker()
    try:
        yield w
    finally:
        w.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    stats = robust_harness.STATS
    if not stats and not robust_harness.NOTES:
        return
    terminalreporter.write_sep("-", "robustness: inputs tried")
    for key in sorted(stats):
        terminalreporter.write_line(f"{key}: {stats[key]:,}")
    for note in robust_harness.NOTES:
        terminalreporter.write_line(note)
    for error in robust_harness.corpus.load_errors():
        terminalreporter.write_line(f"corpus source not loaded: {error}")
