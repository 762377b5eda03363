"""skops (`.skops`, skops.io.dump): a zip with `schema.json` (the object tree) and `.npy`/`.npz` arrays.

skops.io.load rebuilds every node of schema.json with the loader its `__loader__` names: ObjectNode
imports `__module__` and rebuilds `__class__` with `__new__` + `__setstate__`, FunctionNode imports a
function, MethodNode fetches a method, PartialNode/OperatorFuncNode build callables. It refuses any type
its loader does not trust by default unless the caller passes it in `trusted=`, and many callers pass
whatever `get_untrusted_types()` returns. So every type is judged against skops' own default list
(resources/policy/skops_trusted.json, generated from skops): trusted ones are fine; an untrusted class
is medium (third-party code rebuilt), an untrusted function, method or callable high (called when the
model runs), and anything Airlock's pickle policy denies (`posix.system`, `builtins.eval`…) critical.
Arrays are `.npy`/`.npz` members, read by the NumPy readers (skops loads them with allow_pickle=False).
Neither skops nor scikit-learn is imported.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, NamedTuple

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats import zip as zipf
from airlock.core.formats.contract import file_node
from airlock.core.pickle.policy import DENIED, load_policy, read_policy_text
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, GLOBAL, GROUP, ROLE, Node
from airlock.core.zipread import ZipMember, member_names, read_member

NAME = "skops"
EXTENSIONS = (".skops",)

SCHEMA = "schema.json"
_ARRAY = re.compile(r"[^/]+\.(?:npy|npz)")
CALLABLE_LOADERS = frozenset({"FunctionNode", "MethodNode", "PartialNode", "OperatorFuncNode",
                              "ConstructorFromReduceNode"})
MAX_TYPE_FINDINGS = 20


class UntrustedClass(Rule):
    id = "SKO001"
    severity = Severity.MEDIUM
    title = "skops file rebuilds a type skops does not trust"
    help = ("skops.io.load refuses this type unless the caller trusts it (trusted=, often filled from "
            "get_untrusted_types()); trusting it imports its module and rebuilds an object with its code.")


class UntrustedCallable(Rule):
    id = "SKO002"
    severity = Severity.HIGH
    title = "skops file holds a function or callable skops does not trust"
    help = ("A FunctionNode, MethodNode, PartialNode, OperatorFuncNode or ConstructorFromReduceNode names a "
            "callable outside skops' default trusted list: once trusted, the model calls it.")


class DangerousType(Rule):
    id = "SKO003"
    severity = Severity.CRITICAL
    title = "skops file names a dangerous function or class"
    help = ("A type in schema.json is one Airlock's pickle policy denies (it runs commands, evaluates code, "
            "reads or writes files); a caller who trusts the file's types runs it.")


class TypeUse(NamedTuple):
    loader: str
    module: str
    qualname: str  # the class or function (MethodNode: class.method)
    uses: int

    @property
    def name(self) -> str:
        return f"{self.module}.{self.qualname}"


@functools.cache
def trusted_types() -> dict[str, frozenset[str]]:
    data = json.loads(read_policy_text("skops_trusted.json"))
    return {loader: frozenset(names) for loader, names in data["loaders"].items()}


def sniff_source(source: Source) -> int:
    names = member_names(source)
    if not names or SCHEMA not in names:
        return 0
    return 90 if all(n == SCHEMA or _ARRAY.fullmatch(n) for n in names) else 0


def sniff(head: bytes, size: int) -> int:
    return sniff_source(Source.from_bytes(head, "<head>"))


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    archive = zipf.open_checked(source, ctx, root)
    by_name = archive.by_name()
    schema = by_name.get(SCHEMA)
    nodes: dict[int, Node] = {}
    for m in ctx.each(archive.members, "members", every=1):
        nodes[m.index] = node = zipf.member_node(root, m, source)
        if m is schema:
            _read_schema(source, ctx, root, node, m, by_name)
        else:
            zipf.scan_member(source, ctx, node, archive, m)
    if schema is None:
        ctx.report(Malformed, f"skops archive without {SCHEMA}: skops.io.load fails", node=root,
                   offset=archive.central_offset)
    zipf.report_issues(archive, ctx, root, nodes, source)
    return root


def _read_schema(source: Source, ctx: ScanContext, root: Node, node: Node, m: ZipMember,
                 by_name: dict[str, ZipMember]) -> None:
    try:
        data = read_member(source, m, ctx.limits.max_header_bytes, ctx)
        ctx.check()
        tree = json.loads(data)
    except LimitExceeded as exc:
        ctx.report(LimitRule, f"{SCHEMA}: {exc.message}; not inspected", node=node, offset=m.header_offset)
        return
    except FormatError as exc:
        ctx.report(Malformed, f"{SCHEMA}: {exc.message}", node=node, offset=exc.offset)
        return
    except (ValueError, RecursionError) as exc:
        ctx.report(Malformed, f"{SCHEMA} is not valid JSON ({safe_text(str(exc), 120)}): skops.io.load fails",
                   node=node, offset=m.data_offset)
        return
    if not isinstance(tree, dict) or "__loader__" not in tree:
        ctx.report(Malformed, f"{SCHEMA} has no root object with a __loader__: skops.io.load fails",
                   node=node, offset=m.data_offset)
        return
    for key in ("protocol", "_skops_version"):
        if key in tree:
            root.attrs[key.strip("_")] = safe_text(str(tree[key]), 40)
    uses, files, unknown = _walk(tree, ctx)
    at = m.data_offset if m.method == 0 and m.data_offset is not None else m.header_offset
    raw = data if m.method == 0 else b""
    for loader in sorted(unknown)[:MAX_TYPE_FINDINGS]:
        ctx.report(Malformed, f"{SCHEMA} uses loader {safe_text(loader, 60)}, which skops does not have: "
                   "skops.io.load fails", node=node, offset=_find(raw, loader, at))
    for name in sorted(files):
        if name not in by_name:
            ctx.report(Malformed, f"{SCHEMA} names array file {safe_text(name, 80)}, which is not in the "
                       "archive: skops.io.load fails", node=node, offset=_find(raw, name, at))
    _judge(ctx, root, uses, raw, at, source)


def _walk(tree: dict[str, Any], ctx: ScanContext) -> tuple[list[TypeUse], set[str], set[str]]:
    """Every node of the schema (iteratively: no recursion on hostile nesting): the types it rebuilds,
    the array files it names, loaders skops does not have."""
    known = trusted_types()
    counts: dict[tuple[str, str, str], int] = {}
    files: set[str] = set()
    unknown: set[str] = set()
    stack: list[Any] = [tree]
    while stack:
        ctx.tick(1024)
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))
            continue
        if not isinstance(item, dict):
            continue
        stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        loader = item.get("__loader__")
        if not isinstance(loader, str):
            continue
        if loader not in known:
            unknown.add(loader)
            continue
        module, qualname = str(item.get("__module__")), str(item.get("__class__"))
        if isinstance(item.get("file"), str):
            files.add(item["file"])
        if loader == "MethodNode":
            content = item.get("content")
            func = content.get("func") if isinstance(content, dict) else None
            qualname = f"{qualname}.{func}"
        key = (loader, module, qualname)
        counts[key] = counts.get(key, 0) + 1
    return [TypeUse(*key, n) for key, n in sorted(counts.items())], files, unknown


def _judge(ctx: ScanContext, root: Node, uses: list[TypeUse], raw: bytes, at: int, source: Source) -> None:
    known = trusted_types()
    policy = load_policy()
    group = root.child(GROUP, f"types ({len(uses):,})", member=source.member, attrs={ROLE: CONTENTS})
    reported = 0
    for use in uses:
        ctx.tick(64)
        trusted = use.name in known[use.loader] and use.loader != "MethodNode"
        node = group.child(GLOBAL, safe_text(use.name, 200), member=source.member,
                           attrs={"loader": safe_text(use.loader, 40), "uses": use.uses,
                                  "trusted by skops": trusted})
        if trusted:
            continue
        verdict = policy.classify(use.module, use.qualname)
        if verdict.kind == DENIED:
            rule: type[Rule] = DangerousType
            why = f"Airlock's policy denies it: {safe_text(verdict.reason, 160)}"
        elif use.loader in CALLABLE_LOADERS or (use.loader == "TypeNode" and use.qualname[:1].islower()):
            # TypeNode also carries builtin functions (os.system is recorded as one): lowercase is a function
            rule, why = UntrustedCallable, "a callable skops does not trust; once trusted, the model calls it"
        else:
            rule, why = UntrustedClass, "a type skops does not trust; trusting it rebuilds it with its code"
        reported += 1
        if reported <= MAX_TYPE_FINDINGS or rule is DangerousType:
            shown = safe_text(use.name, 160)
            ctx.report(rule, f"{SCHEMA} {safe_text(use.loader, 40)} {shown}: {why}", node=node,
                       offset=_find(raw, use.qualname.split(".")[0], at))
    if reported > MAX_TYPE_FINDINGS:
        ctx.report(UntrustedClass, f"{reported - MAX_TYPE_FINDINGS:,} more types skops does not trust",
                   node=group, offset=at)


def _find(raw: bytes, text: str, at: int) -> int:
    """The offset of a JSON string in the stored schema, or the schema's start."""
    pos = raw.find(json.dumps(text).encode("utf-8")) if raw else -1
    return at + pos if pos >= 0 else at
