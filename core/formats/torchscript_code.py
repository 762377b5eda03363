"""TorchScript code (`code/` of a torch.jit.save archive): kept on its node, and judged.

torch.jit.load compiles `code/` when the archive loads, and the compiled methods run on every call,
so the code is judged too: TorchScript builtins that read or write files (`torch.from_file`,
`torch.save`, `aten::from_file`, library loading) and anything that is not TorchScript at all but
Python reaching the process (`open(`, `os.`, `subprocess`, `__import__`, `exec`, a `PythonOp`:
`torch.jit.script` never writes those, so a file that has them was edited by hand) are high, with
the line they are on. String literals are blanked before matching, so a message that mentions
`open(` is not a call. Operator namespaces no torch build ships (`ops.mylib.op`) are rated with
`torch_rules.CustomOperator`.

Used by `torch_zip.parse_archive` when it reads a TorchScript archive (the `torchscript` format
module is its sniffer and entry point); below both, so neither is imported back.
"""

from __future__ import annotations

import functools
import re

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats import torchscript_triggers
from airlock.core.formats import zip as zipf
from airlock.core.formats.torch_rules import STANDARD_NAMESPACES, CustomOperator
from airlock.core.pickle.policy import SAFE, Policy, Verdict, load_policy
from airlock.core.source import Source
from airlock.core.text import escape, safe_text
from airlock.core.tree import TEXT, Node
from airlock.core.zipread import ZipArchive, ZipMember, crc_issue, read_member

_OP = re.compile(rb"\bops\.([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")
MAX_CODE_CHARS = 1 << 20  # characters of one source file kept on its node
MAX_CALL_FINDINGS = 10  # per code file: enough to show what it does without burying the rest

# What the code may do besides computing on tensors. Each alternative names itself in the message.
_NOT_A_NAME = r"(?<![\w.])"  # a bare name: not `x.open(`, not `torch.compile`
_DANGEROUS = re.compile("|".join([
    r"\btorch\.from_file\s*\(", r"\bops\.aten\.from_file\b", r"\baten::from_file\b",
    r"\btorch\.(?:save|load)\s*\(", r"\btorch\.jit\.(?:save|load)\b", r"\bops\.aten\.save\b",
    r"\bload_library\b", r"\bPythonOp\b", r"\btorch\.(?:compile|jit\._script|jit\.compile)\b",
    # Operators no torch build has, named after what they would do (peers flag `ops.aten.system`).
    r"\bops\.\w+\.(?:system|popen|exec|eval|spawn|subprocess|socket|connect|__import__|importlib)\b",
    _NOT_A_NAME + r"(?:open|__import__|exec|execfile|eval|compile|breakpoint|input|raw_input|reload)\s*\(",
    _NOT_A_NAME + r"(?:os|posix|nt|sys|subprocess|shutil|socket|importlib|builtins|__builtin__|ctypes|pickle|"
    r"cPickle|dill|marshal|shelve|runpy|pty|urllib|urllib2|urllib3|requests|http|httplib|ftplib|telnetlib|"
    r"smtplib|webbrowser)\.",
    r"\b__(?:builtins|globals|subclasses|import)__\b",
    r"^\s*(?:import|from)\s+(?!__torch__\b|torch\b)\w",  # the archive's own code imports only these
]), re.MULTILINE)
# Every match of _DANGEROUS contains one of these: lines without any are skipped without a regex
# (the regex costs ~0.5 µs a character, and real code/ folders hold hundreds of KiB).
_TRIGGERS = ("from_file", "save", "load", "PythonOp", "compile", "_script", "system", "popen", "exec", "eval",
             "spawn", "subprocess", "socket", "connect", "import", "open", "breakpoint", "input", "reload",
             "os.", "posix.", "nt.", "sys.", "shutil.", "builtin", "ctypes.", "ickle.", "dill.", "marshal.",
             "shelve.", "runpy.", "pty.", "urllib", "requests.", "http", "ftplib.", "telnetlib.", "smtplib.",
             "webbrowser.", "__globals__", "__subclasses__", "from")
_CALLEE = re.compile(r"(?:import|from)\s+[\w.]+|[\w.:]+")  # the name shown for a match
_STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'" + r'|"(?:[^"\\\n]|\\.)*"')


class CodeTouchesSystem(Rule):
    id = "TS002"
    severity = Severity.HIGH
    title = "TorchScript code touches files or runs Python"
    help = ("The archive's code/ calls builtins that read or write files (torch.from_file, torch.save, "
            "library loading), or names Python that TorchScript cannot compile (open, os, subprocess, "
            "__import__, exec, PythonOp): the code was edited by hand, and it runs when the model is called.")


class _TorchScriptPolicy(Policy):
    def classify(self, module: str, name: str) -> Verdict:
        if module == "__torch__" or module.startswith("__torch__."):
            return Verdict(SAFE, "a TorchScript class compiled from this archive's code/, not Python code")
        return super().classify(module, name)


@functools.cache
def torchscript_policy() -> Policy:
    base = load_policy()
    return _TorchScriptPolicy(base.allow, base.deny)


def scan_code(source: Source, ctx: ScanContext, archive: ZipArchive,
              members: list[tuple[ZipMember, Node]]) -> None:
    """Each code/ source as a TEXT node with its text; CRC checked; custom operator namespaces rated."""
    custom: dict[str, tuple[Node, int, str]] = {}
    for m, node in members:
        ctx.check()
        node.kind = TEXT
        try:
            data = read_member(source, m, ctx.limits.max_pickle_member_bytes, ctx)
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
        _judge_calls(text, ctx, node, zipf.member_source(source, m, b"").member or m.name)
        torchscript_triggers.analyse(text, ctx, node, zipf.member_source(source, m, b"").member or m.name)
    from airlock.core.graph.torchscript_graph import attach  # the graph view's source, built on demand

    attach([node for _m, node in members if "text" in node.attrs])
    for ns, (node, at, member) in custom.items():
        ctx.report(CustomOperator, f"TorchScript code calls operators of namespace {safe_text(ns, 60)!s} "
                   "(torch.ops." + safe_text(ns, 60) + "), which needs a native library outside torch",
                   node=node, offset=at, member=member)


def _judge_calls(text: str, ctx: ScanContext, node: Node, member: str) -> None:
    """TS002 for each line whose code (string literals blanked) reads or writes files or runs Python."""
    present = [t for t in _TRIGGERS if t in text]
    if not present:
        return
    found = 0
    offset = 0
    for number, line in enumerate(text.split("\n"), 1):
        ctx.tick(1024)
        if not any(t in line for t in present):
            offset += len(line.encode("utf-8")) + 1
            continue
        code = _STRING.sub(lambda m: " " * len(m.group()), line)
        match = _DANGEROUS.search(code)
        if match is not None:
            found += 1
            if found <= MAX_CALL_FINDINGS:
                at = offset + len(line[:match.start()].encode("utf-8"))
                name = _CALLEE.match(code, match.start() + len(match.group()) - len(match.group().lstrip()))
                callee = name.group() if name is not None else match.group()
                ctx.report(CodeTouchesSystem, f"TorchScript code line {number} uses {safe_text(callee, 60)}: "
                           f"{safe_text(line.strip(), 200)}", node=node, offset=at, member=member)
        offset += len(line.encode("utf-8")) + 1
    if found > MAX_CALL_FINDINGS:
        ctx.report(CodeTouchesSystem, f"{found - MAX_CALL_FINDINGS:,} more lines of this code file call "
                   "file or process functions", node=node, member=member)
