"""What a format module is, in types: the `FormatModule` protocol, and the registry's conflict checks.

A format module stays a plain module (mitmproxy's content views are the model): module-level `NAME`,
`EXTENSIONS`, `sniff` and `parse` satisfy `FormatModule` structurally, and mypy checks every
registered module against it (the `TYPE_CHECKING` block in `airlock.core.formats`). Two optional
module attributes are read with defaults:

    sniff_source(source) -> int   replaces `sniff` when the head is not enough (a zip's EOCD)
    OVERLAPS: tuple[str, ...]     names of formats this one knowingly shares extensions or bytes with

Overlaps are refused unless declared (by either side): two formats taking the same extension, or
sniffing the same bytes at the same top score, would otherwise be settled silently by registry order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from airlock.core.errors import AirlockError
from airlock.core.findings import LimitExceeded  # the rule, not the exception
from airlock.core.tree import FILE, Node

if TYPE_CHECKING:
    from airlock.core.context import ScanContext
    from airlock.core.source import Source


class FormatModule(Protocol):
    """The contract every module in `formats.MODULE_NAMES` meets (read-only, so module constants fit)."""

    @property
    def NAME(self) -> str: ...

    @property
    def EXTENSIONS(self) -> tuple[str, ...]: ...

    def sniff(self, head: bytes, size: int) -> int:
        """0 = not mine ... 100 = certain, from content only (see docs/ARCHITECTURE.md for the scale)."""
        ...

    def parse(self, source: Source, ctx: ScanContext) -> Node:
        """The tree of `source`; findings go to `ctx`. Bad input raises FormatError/LimitExceeded."""
        ...


class SourceSniffer(Protocol):
    """The optional `sniff_source(source) -> int` of a format that must look past the head."""

    def __call__(self, source: Source) -> int: ...


class RegistryConflict(AirlockError):
    """Two formats claim the same extension or the same bytes at the same score, undeclared."""


def file_node(source: Source, ctx: ScanContext) -> Node:
    """The node a parser fills: the scan's placeholder for this file, or a fresh FILE node when the
    parser is called on its own (tests, the converter)."""
    return ctx.current or Node(FILE, source.name, offset=0, length=source.size, member=source.member)


def over_size_budget(source: Source, ctx: ScanContext, root: Node, what: str, cap: int) -> bool:
    """A file larger than its format reads (`cap` bytes) gets a finding instead of a parse: True
    when it did. For formats whose reader holds the whole file (Python source, a notebook)."""
    if source.size <= cap:
        return False
    ctx.report(LimitExceeded, f"{what} of {source.size:,} bytes is over the {cap:,}-byte budget: "
               "not analysed", node=root, offset=0)
    return True


def overlaps(module: object) -> tuple[str, ...]:
    found = getattr(module, "OVERLAPS", ())
    return tuple(found)


def _declared(a: FormatModule, b: FormatModule) -> bool:
    return b.NAME in overlaps(a) or a.NAME in overlaps(b)


def check_names(modules: Sequence[FormatModule]) -> None:
    """Refuse a registry with a repeated NAME or an undeclared shared extension."""
    seen: dict[str, FormatModule] = {}
    owners: dict[str, FormatModule] = {}
    for module in modules:
        if module.NAME in seen:
            raise RegistryConflict(f"format name {module.NAME!r} is registered twice "
                                   f"({_module_name(seen[module.NAME])} and {_module_name(module)})")
        seen[module.NAME] = module
        for ext in module.EXTENSIONS:
            if ext != ext.lower() or not ext.startswith("."):
                raise RegistryConflict(f"format {module.NAME!r}: extension {ext!r} must be lower case "
                                       "and start with a dot")
            owner = owners.get(ext)
            if owner is not None and not _declared(owner, module):
                raise RegistryConflict(
                    f"formats {owner.NAME!r} and {module.NAME!r} both claim the extension {ext!r}: "
                    f"declare the overlap (OVERLAPS = ({owner.NAME!r},) in {_module_name(module)}) "
                    "or drop the extension from one of them")
            owners.setdefault(ext, module)


def check_sniff_ties(modules: Sequence[FormatModule], samples: Iterable[tuple[str, Source]]) -> None:
    """Refuse when two formats sniff the same bytes at the same top score without a declared overlap.

    `samples` are (label, source) pairs: the registry has no bytes of its own, so the test suite
    feeds it every generated fixture (tests/formats/test_registry.py)."""
    sniffers = [(module, getattr(module, "sniff_source", None)) for module in modules]
    for label, source in samples:
        head, size = source.head(), source.size
        best: list[FormatModule] = []
        top = 0
        for module, sniff_source in sniffers:
            try:
                score = sniff_source(source) if sniff_source is not None else module.sniff(head, size)
            except Exception:  # noqa: BLE001 - a failing sniffer claims nothing (as in dispatch.sniff)
                continue
            if score > top:
                top, best = score, [module]
            elif score == top and score > 0:
                best.append(module)
        for i, first in enumerate(best):
            for second in best[i + 1:]:
                if not _declared(first, second):
                    raise RegistryConflict(
                        f"formats {first.NAME!r} and {second.NAME!r} both claim {label} with score {top}: "
                        "raise one score, or declare the overlap in OVERLAPS")


def _module_name(module: object) -> str:
    return str(getattr(module, "__name__", module))
