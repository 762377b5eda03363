"""Bytes to a tree: the format that claims them (by content), its parser, and what failed as findings.

Used for a whole file (`scan.scan_source`) and for bytes found inside another format (a zip member,
trailing data), which parsers reach through `ScanContext.parse_nested`. Formats are found through the
registry (`airlock.core.formats`), which loads their modules by name: the parsers call back into
this module through the context, never by importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airlock.core import claims, formats, model_card
from airlock.core.errors import Cancelled, FormatError, LimitExceeded
from airlock.core.findings import EmptyFile, Malformed, NotInspected, ParserCrash
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.formats.contract import FormatModule
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import FILE, Node

if TYPE_CHECKING:
    from airlock.core.context import ScanContext

UNKNOWN = "unknown"  # no format claims the bytes
EMPTY = "empty"


def sniff(source: Source,
          failures: list[str] | None = None) -> tuple[FormatModule | None, list[FormatModule]]:
    """The best format for these bytes, and every other format that also claims them.

    Modules sniff the head; one that needs more (a zip's central directory sits at the end)
    defines `sniff_source(source) -> int`, which may read small pieces anywhere. A sniffer that
    fails counts as "not mine"; its error goes to `failures` when given.
    """
    head = source.head()
    size = source.size
    scored = []
    for module, sniff_source in formats.sniffers():
        try:
            score = sniff_source(source) if sniff_source is not None else module.sniff(head, size)
        except Exception as exc:  # noqa: BLE001 - a sniffer bug must not take the whole scan down
            if failures is not None:
                failures.append(f"{module.NAME} sniffer failed: {type(exc).__name__}: {exc}")
            continue
        if score > 0:
            scored.append((score, module))
    if not scored:
        return None, []
    scored.sort(key=lambda pair: -pair[0])  # stable: registry order breaks ties
    best = scored[0][1]
    return best, [m for s, m in scored[1:] if s >= 50]


def parse_into(source: Source, ctx: ScanContext, parent: Node | None, *, label: str | None = None) -> Node:
    """Sniff and parse `source`; failures become findings on a partial tree. Returns its node."""
    failures: list[str] = []
    module, others = sniff(source, failures)
    name = module.NAME if module is not None else UNKNOWN
    if module is None:
        node = Node(FILE, label or source.name, offset=0, length=source.size, member=source.member,
                    attrs={"format": UNKNOWN if source.size else EMPTY, "size": source.size})
        if parent is not None:
            parent.add(node)
        _report_sniff_failures(failures, ctx, node)
        if source.size:
            # Fail closed: bytes no format claims are not known to be safe (medium, never clean).
            ctx.report(NotInspected, "unrecognised binary content: no format Airlock reads claims it, so it "
                       "was not inspected", node=node, offset=0)
        else:
            ctx.report(EmptyFile, "empty (0 bytes): nothing to inspect", node=node, offset=0)
        if parent is not None:
            claims.check_name(source.member or source.name, node.attrs["format"], source, ctx, node,
                              mismatch=False)
        return node

    outer = ctx.current
    placeholder = Node(FILE, label or source.name, offset=0, length=source.size, member=source.member,
                       attrs={"format": name, "size": source.size})
    if parent is not None:
        parent.add(placeholder)
    ctx.current = placeholder
    ctx.depth += 1
    _report_sniff_failures(failures, ctx, placeholder)
    try:
        if ctx.depth > ctx.limits.max_nesting_depth:
            raise LimitExceeded(f"nesting deeper than {ctx.limits.max_nesting_depth} containers")
        node = module.parse(source, ctx)
        if node is not placeholder:
            _adopt(placeholder, node)
        if placeholder.attrs.get("format") in model_card.TEXT_FORMATS:  # a README.md: hidden text
            model_card.check(source, ctx, placeholder)
        for other in others:
            if other is not module and getattr(other, "POLYGLOT_CHECK", True):
                placeholder.attrs.setdefault("also_valid_as", []).append(other.NAME)
    except Cancelled:
        raise
    except FormatError as exc:
        ctx.report(Malformed, f"malformed {name}: {exc.message}", node=placeholder,
                   offset=exc.offset, member=exc.member or source.member)
    except LimitExceeded as exc:
        ctx.report(LimitRule, f"{name}: {exc.message}; the rest was not inspected", node=placeholder,
                   offset=exc.offset)
    except (MemoryError, RecursionError) as exc:
        ctx.report(LimitRule, f"{name}: {type(exc).__name__} while parsing; the rest was not inspected",
                   node=placeholder)
    except Exception as exc:  # noqa: BLE001 - a parser bug must be a finding, never a dead scan
        ctx.report(ParserCrash, f"{name} parser failed: {type(exc).__name__}: {exc}", node=placeholder)
    finally:
        ctx.depth -= 1
        ctx.current = outer
    if parent is not None:  # a container member: its name claims a format as a file's would
        claims.check_name(source.member or source.name, placeholder.attrs.get("format", name), source, ctx,
                          placeholder, mismatch=False)
    return placeholder


def _report_sniff_failures(failures: list[str], ctx: ScanContext, node: Node) -> None:
    for failure in failures:
        ctx.report(ParserCrash, safe_text(failure, 300), node=node, offset=0)


def _adopt(placeholder: Node, node: Node) -> None:
    """Move a parser's returned root into the placeholder that findings may already point at."""
    placeholder.kind = node.kind
    placeholder.attrs = {**placeholder.attrs, **node.attrs}
    if node.is_lazy:
        placeholder.adopt_lazy_children(node)
    else:
        for child in node.children():
            placeholder.add(child)
    for finding in node.findings:
        placeholder.attach(finding)
