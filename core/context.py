"""What a parser is given besides the bytes: limits, the clock, cancel, and where findings go."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from airlock.core import dispatch
from airlock.core.errors import Cancelled, LimitExceeded
from airlock.core.findings import Finding, Rule, Severity
from airlock.core.limits import DEFAULT_LIMITS, Limits
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import Node

T = TypeVar("T")
ProgressFn = Callable[[float, str], None]
CancelledFn = Callable[[], bool]


class ScanContext:
    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
        path: str | None = None,
    ) -> None:
        self.limits = limits
        self.findings: list[Finding] = []
        self.path = path  # the file being scanned, for sidecar files (ONNX external data, shards)
        self.depth = 0  # nesting of containers
        self.current: Node | None = None  # node that findings without a node attach to
        self._progress = progress
        self._cancelled = cancelled
        self._deadline = time.monotonic() + limits.time_budget_s
        self._ticks = 0
        self.decompressed_bytes = 0  # produced by every decompressor at every nesting level

    # Findings

    def report(
        self,
        rule: type[Rule],
        message: str,
        *,
        node: Node | None = None,
        offset: int | None = None,
        length: int | None = None,
        member: str | None = None,
        severity: Severity | None = None,
        detail: str | None = None,
    ) -> Finding:
        """Record a finding. Offset and member default to the node's."""
        target = node if node is not None else self.current
        if target is not None:
            if offset is None:
                offset = target.offset
            if length is None and offset == target.offset:
                length = target.length
            if member is None:
                member = target.member
        finding = Finding(
            rule=rule.id,
            severity=rule.severity if severity is None else severity,
            message=message,
            offset=offset,
            length=length,
            member=member,
            node=target,
            detail=detail,
        )
        self.findings.append(finding)
        if target is not None:
            target.attach(finding)
        return finding

    # Time and cancel

    def check(self) -> None:
        """Call in every loop over file content: raises when over time or cancelled."""
        if self._cancelled is not None and self._cancelled():
            raise Cancelled("cancelled")
        if time.monotonic() > self._deadline:
            raise LimitExceeded(f"time budget of {self.limits.time_budget_s:g} s exceeded")

    def tick(self, every: int = 4096) -> None:
        """A cheap `check()` for hot loops: looks at the clock once every `every` calls."""
        self._ticks += 1
        if self._ticks % every == 0:
            self.check()

    def each(self, items: Sequence[T], what: str, every: int = 256) -> Iterator[T]:
        """The items, with the clock looked at every `every` of them. Past the time budget, the
        error says how far the loop got: "time budget of 5 s exceeded after 1,024 of 3,000,000
        operators"."""
        total = len(items)
        for i, item in enumerate(items):
            if i and not i % every:
                try:
                    self.check()
                except LimitExceeded as exc:
                    message = f"{exc.message} after {i:,} of {total:,} {what}"
                    raise LimitExceeded(message, exc.offset) from None
            yield item

    def scratch(self) -> ScanContext:
        """A context for a side check whose findings are not this file's (they go nowhere), on the
        same clock, cancel button and decompression budget so far."""
        other = ScanContext(self.limits, path=self.path)
        other._deadline, other._cancelled = self._deadline, self._cancelled
        other.decompressed_bytes = self.decompressed_bytes
        return other

    def time_left(self) -> float:
        """Seconds left of this file's time budget (for a child process given a deadline)."""
        return max(self._deadline - time.monotonic(), 0.0)

    # Budgets shared by every nesting level of one file

    def charge_decompressed(self, nbytes: int, what: str = "decompressed data") -> None:
        """Count bytes a decompressor produced for this file (any container, any depth). Call it
        before keeping or parsing them: past the per-file budget it raises `LimitExceeded`."""
        self.decompressed_bytes += nbytes
        cap = self.limits.max_decompressed_bytes
        if self.decompressed_bytes > cap:
            raise LimitExceeded(f"{what} expands past {cap:,} bytes, the per-file decompression budget "
                                "(a decompression bomb?); not inspected further")

    def progress(self, fraction: float, message: str = "") -> None:
        if self._progress is not None:
            self._progress(min(max(fraction, 0.0), 1.0), message)

    # Nesting

    def parse_nested(self, source: Source, parent: Node, *, label: str | None = None) -> Node:
        """Sniff and parse bytes found inside another format (a zip member, trailing bytes...)."""
        return dispatch.parse_into(source, self, parent, label=label)

    def read_as(self, source: Source, parent: Node, *, label: str) -> str:
        """Parse bytes no structure claims (trailing or unindexed data) under `parent`, and say in a
        few words what they read as, with the worst finding they gave if it matters."""
        before = len(self.findings)
        nested = self.parse_nested(source, parent, label=label)
        worst = max(self.findings[before:], key=lambda f: f.severity, default=None)
        what = f"they read as {nested.attrs.get('format', 'unknown')}"
        if worst is not None and worst.severity >= Severity.MEDIUM:
            what += f" ({worst.severity.label}: {safe_text(worst.message, 120)})"
        return what
