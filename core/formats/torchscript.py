"""TorchScript archives (torch.jit.save): a torch zip plus `code/` sources and `constants.pkl`.

torch.load hands any archive with a `constants.pkl` record to torch.jit.load, whose C++ unpickler
resolves `__torch__.…` names to classes compiled from the archive's own `code/` (TorchScript, not
Python) and refuses other Python globals. So `__torch__` classes are not third-party code here;
what does need outside code is an operator namespace no torch build ships (`ops.mylib.op`).
"""

from __future__ import annotations

import functools
import re

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Malformed
from airlock.core.formats import zip as zipf
from airlock.core.formats.torch_rules import CustomOperator
from airlock.core.pickle.policy import SAFE, Policy, Verdict, load_policy
from airlock.core.source import Source
from airlock.core.text import escape, safe_text
from airlock.core.tree import FILE, TEXT, Node
from airlock.core.zipread import ZipArchive, ZipMember, crc_issue, peek_names, read_member

NAME = "torchscript"
EXTENSIONS = (".pt", ".pth", ".ptl", ".torchscript", ".jit")

_CONSTANTS = re.compile(r"[^/]+/constants\.pkl")
_OP = re.compile(rb"\bops\.([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")
# Operator namespaces registered by torch itself.
STANDARD_NAMESPACES = frozenset({
    "aten", "prim", "prims", "quantized", "_quantized", "_caffe2", "profiler", "cuda", "mkldnn",
    "onnx", "sparse", "quantized_decomposed", "rngprims", "higher_order", "c10d", "_c10d_functional",
    "c10d_functional", "_dtensor", "debugprims", "_nested_tensor", "xnnpack", "mkl", "_prims",
    "_higher_order_ops", "inductor", "_inductor", "attr", "_test", "vulkan", "metal", "_quant",
})
MAX_CODE_CHARS = 1 << 20  # characters of one source file kept on its node


class _TorchScriptPolicy(Policy):
    def classify(self, module: str, name: str) -> Verdict:
        if module == "__torch__" or module.startswith("__torch__."):
            return Verdict(SAFE, "a TorchScript class compiled from this archive's code/, not Python code")
        return super().classify(module, name)


@functools.cache
def torchscript_policy() -> Policy:
    base = load_policy()
    return _TorchScriptPolicy(base.allow, base.deny)


def sniff_source(source: Source) -> int:
    names = peek_names(source)
    if not names:
        return 0
    return 97 if any(_CONSTANTS.fullmatch(n) for n in names) else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    from airlock.core.formats.torch_zip import parse_archive

    root = ctx.current or Node(FILE, source.name, offset=0, length=source.size, member=source.member)
    parse_archive(source, ctx, root, torchscript=True)
    return root


def scan_code(source: Source, ctx: ScanContext, archive: ZipArchive,
              members: list[tuple[ZipMember, Node]]) -> None:
    """Each code/ source as a TEXT node with its text; CRC checked; custom operator namespaces rated."""
    custom: dict[str, tuple[Node, int, str]] = {}
    for m, node in members:
        ctx.check()
        node.kind = TEXT
        try:
            data = read_member(source, m, ctx.limits.max_pickle_member_bytes)
        except (FormatError, LimitExceeded) as exc:
            ctx.report(Malformed, f"code member {safe_text(m.name)}: {exc.message}", node=node,
                       offset=m.header_offset, member=source.member)
            continue
        issue = crc_issue(archive, m, data)
        if issue is not None:
            zipf.report_issue(issue, ctx, node, node, source)
        text = data[: MAX_CODE_CHARS * 4].decode("utf-8", "replace")[:MAX_CODE_CHARS]
        node.attrs["text"] = "\n".join(escape(line) for line in text.split("\n"))
        node.attrs["lines"] = data.count(b"\n")
        for match in _OP.finditer(data):
            ns = match.group(1).decode("ascii")
            if ns not in STANDARD_NAMESPACES and ns not in custom:
                custom[ns] = (node, match.start(), zipf.member_source(source, m, b"").member or m.name)
    for ns, (node, at, member) in custom.items():
        ctx.report(CustomOperator, f"TorchScript code calls operators of namespace {safe_text(ns, 60)!s} "
                   "(torch.ops." + safe_text(ns, 60) + "), which needs a native library outside torch",
                   node=node, offset=at, member=member)
