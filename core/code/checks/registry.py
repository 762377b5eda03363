"""The registry the check modules add themselves to (`@check`), and what a check returns (`Issue`).

Kept apart from the package's `__init__`, which imports every check module: a check module imports
only this, so the package and its checks do not import each other."""


from __future__ import annotations

import ast
from collections.abc import Callable, Iterable

from airlock.core.code.callsite import CallSite
from airlock.core.findings import Rule, Severity


class Issue:
    __slots__ = ("message", "node", "rule", "severity", "unit")

    def __init__(
        self, rule: type[Rule], message: str, node: ast.AST, unit: int, severity: Severity | None = None
    ) -> None:
        self.rule = rule
        self.message = message
        self.node = node  # carries lineno/col_offset/end_lineno/end_col_offset
        self.unit = unit
        self.severity = severity  # None: the rule's own

    @property
    def level(self) -> Severity:
        return self.severity if self.severity is not None else self.rule.severity

    def __repr__(self) -> str:
        return f"Issue({self.rule.id}, line {getattr(self.node, 'lineno', '?')}: {self.message!r})"


CheckFn = Callable[[CallSite], Iterable[Issue]]

BY_NAME: dict[str, list[CheckFn]] = {}
BY_METHOD: dict[str, list[CheckFn]] = {}
ANY_CALL: list[CheckFn] = []
ALL: list[tuple[type[Rule], CheckFn]] = []


def check(
    rule: type[Rule], *, names: Iterable[str] = (), methods: Iterable[str] = (), any_call: bool = False
) -> Callable[[CheckFn], CheckFn]:
    """Register a check for calls to `names` (canonical dotted names), to any `.method(...)` of these
    names whatever the receiver, or for every call."""

    def register(fn: CheckFn) -> CheckFn:
        for name in names:
            BY_NAME.setdefault(name, []).append(fn)
        for method in methods:
            BY_METHOD.setdefault(method, []).append(fn)
        if any_call:
            ANY_CALL.append(fn)
        ALL.append((rule, fn))
        return fn

    return register


def issue(site: CallSite, rule: type[Rule], message: str, severity: Severity | None = None) -> Issue:
    return Issue(rule, message, site.node, site.unit, severity)


def named(site: CallSite, rule: type[Rule], fallback: str, consequence: str) -> Issue:
    """The usual issue: the function as the code names it (`callee`), then what calling it does."""
    return issue(site, rule, f"{callee(site, fallback)} {consequence}")


def callee(site: CallSite, fallback: str) -> str:
    """How a message names the function: as written in the code, else its dotted name."""
    node = site.node.func if isinstance(site.node, ast.Call) else site.node
    text = _dotted(node)
    shown = text or site.name or fallback
    if text and site.name and not site.name.endswith(text):
        shown = f"{text} ({site.name})"
    return f"{shown} (passed as a callable)" if site.reference else shown


def _dotted(node: ast.expr) -> str | None:
    parts = []
    for _ in range(12):
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return ".".join(reversed(parts))
        else:
            return None
    return None


# Functions some check looks at: a name bound to one of them (`from pickle import loads as L`) makes
# the lines that use that name worth searching.
TARGETS: set[str] = set()
