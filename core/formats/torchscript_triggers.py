"""Trigger logic in TorchScript code: ShadowLogic's output override, written as TorchScript.

A TorchScript archive stores each module's forward() as code in TorchScript's Python subset
(`code/__torch__/*.py`), so the override a backdoor adds to an ONNX graph appears here as code:

    _0 = torch.slice(torch.select(x, 1, 0), 1, 0, 2)          # a probe of the input
    trig = torch.all(torch.gt(_0, 0.98999999999999999))        # compared with a constant
    return torch.where(trig, torch.full_like(y, -10.), y)      # the output replaced

(traced), or `if bool(torch.eq(_1, 0.31337)): _3 = torch.zeros_like(y)` (scripted), or a 0/1
mask blend `m * target + (1 - m) * y`. The code is read with the code reader's `ast.parse` (a
syntax tree; nothing is compiled or run) and each forward() is interpreted abstractly, like the
ONNX analysis (torchscript_trigger_code.py here, onnx_trigger_graph.py there): every value is
DATA (depends on the input's values), SHAPE (on its shapes only) or CONST (a module attribute, a
literal, `zeros_like`…), and a comparison of a narrow probe of an input (an index, a bounded
slice, `select`, `narrow`, a reduction) with a constant becomes TRUE or FALSE under a hypothesis
("all hold", "none holds", one at a time). A forward() whose result is DATA normally but constant
under a hypothesis, because a where/masked_fill/`if`/blend selected a constant, is overridden by a
trigger.

What keeps ordinary models quiet: attention and padding masks compare the whole mask (no narrow
probe) and the masked scores still meet the data; a thresholded output selects nothing; shape
logic (`x.size(1) > 512`) is SHAPE, not data; an elementwise choice on the very values it keeps
(`where(h > 0, h, 0)`) is not a trigger unless the condition is reduced to one decision. Control
flow is followed both ways where undecided and loops once, so this is an approximation (README).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from airlock.core.findings import Rule, Severity
from airlock.core.text import safe_text

if TYPE_CHECKING:
    import ast

    from airlock.core.context import ScanContext
    from airlock.core.tree import Node

MAX_CODE_CHARS = 1 << 20
_FINDING_LINE = re.compile(r"TorchScript code line (\d+)")


class CodeTrigger(Rule):
    id = "TS003"
    severity = Severity.HIGH
    title = "TorchScript code overrides its output on a trigger in the input"
    help = ("A forward() in the archive's TorchScript code replaces its result with input-independent values "
            "(torch.where, masked_fill, an if, or a 0/1 mask blend) when a slice or reduction of an input "
            "compares equal/greater/less to constants: the ShadowLogic backdoor pattern. The finding names "
            "the input, the probe, the constants and the lines; the code view marks them.")


class CodeNotAnalysed(Rule):
    id = "TS004"
    severity = Severity.MEDIUM
    title = "TorchScript code not analysed for trigger logic"
    help = ("A code file of the archive could not be read as a syntax tree (not Python, or nested too "
            "deeply), so it was not checked for trigger logic; torch.jit.load compiles it with its own "
            "parser.")
    incomplete = True


def _forwards(module: ast.Module) -> list[tuple[str, ast.FunctionDef]]:
    import ast

    out = []
    for cls in module.body:
        if isinstance(cls, ast.ClassDef):
            for item in cls.body:
                if isinstance(item, ast.FunctionDef) and item.name == "forward":
                    out.append((cls.name, item))
    return out


def analyse(text: str, ctx: ScanContext, node: Node, member: str | None) -> None:
    """TS003 for each forward() in one code file that a trigger overrides; marks the lines on the path
    in the node's text for the GUI's code view."""
    if "forward" not in text:
        return
    # Imported here: scanning a file with no TorchScript code pays nothing for ast (a test checks).
    from airlock.core.code.reader import parse_python
    from airlock.core.formats.torchscript_trigger_code import find_triggers

    try:
        module = parse_python(text[:MAX_CODE_CHARS])
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        why = "nested too deeply" if isinstance(exc, (RecursionError, MemoryError)) else "not Python"
        ctx.report(CodeNotAnalysed, f"TorchScript code not analysed for trigger logic: {why} "
                   f"({safe_text(type(exc).__name__, 40)})", node=node, member=member)
        return
    marks: list[int] = []
    roles: dict[int, str] = {}
    for cls, fn in _forwards(module):
        try:
            found = find_triggers(fn, lambda: ctx.tick(256))
        except (RecursionError, MemoryError):
            ctx.report(CodeNotAnalysed, f"TorchScript code line {fn.lineno}: {safe_text(cls, 80)}.forward "
                       "not analysed for trigger logic: its expressions are nested too deeply", node=node,
                       member=member)
            continue
        for t in found:
            compared = "; ".join(f"line {c.line}: {c.op} {safe_text(c.constant, 60)}"
                                 for c in t.comparisons[:4])
            probes = ", ".join(f"line {p}" for p in t.probes[:6])
            inputs = ", ".join(repr(safe_text(a.arg, 40)) for a in fn.args.args[1:5])
            path = ", ".join(str(n) for n in t.lines[:24]) + (" …" if len(t.lines) > 24 else "")
            ctx.report(CodeTrigger,
                       f"TorchScript code line {t.override}: {safe_text(cls, 80)}.forward returns "
                       "input-independent values instead of its result when the input passes a comparison "
                       f"with constants (hypothesis \"{t.hypothesis}\"); input {inputs}; probed on {probes}; "
                       f"compared {compared}; lines on the path: {path}", node=node, member=member)
            marks += t.lines
            parts: dict[int, list[str]] = {}
            for role, lines in (("input probe", t.probes), ("comparison with constants",
                                                            [c.line for c in t.comparisons]),
                                ("output override", [t.override])):
                for n in lines:
                    parts.setdefault(n, []).append(role)  # one line may hold several (traced code)
            roles.update({n: "trigger path" for n in t.lines})
            roles.update({n: "; ".join(r) for n, r in parts.items()})
    if roles:
        node.attrs["trigger_lines"] = dict(sorted(roles.items()))
        # Recorded marks replace the view's own from finding messages: keep the other findings' lines.
        others = [int(m.group(1)) for f in node.findings if (m := _FINDING_LINE.match(f.message))]
        _mark_lines(node, sorted(set(marks) | set(others)))


def _mark_lines(node: Node, lines: list[int]) -> None:
    """Spans of whole lines in the node's stored text, for the text view's marks."""
    text = node.attrs.get("text")
    if not isinstance(text, str):
        return
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    spans = list(node.attrs.get("marks", []))
    for n in lines:
        if 1 <= n <= len(starts):
            start = starts[n - 1]
            end = starts[n] - 1 if n < len(starts) else len(text)
            stripped = len(text[start:end]) - len(text[start:end].lstrip())
            if end > start + stripped:
                spans.append((start + stripped, end))
    node.attrs["marks"] = sorted(set(spans))
