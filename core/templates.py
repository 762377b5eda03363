"""Chat templates (Jinja): parsed the way inference stacks parse them, never rendered.

transformers and llama-cpp-python render `tokenizer.chat_template` with jinja2. Two kinds of
attack hide in one:
- code: in a plain `Environment` (CVE-2024-34359) a template reaches Python through attribute
  walks such as `cycler.__init__.__globals__.os.popen(...)`; even in the sandbox such walks are an
  attack attempt (TPL001–003, the walker below);
- no code at all: valid Jinja that injects instructions into every prompt, or only when a message
  contains a trigger, or rewrites what the user wrote, or hides text in invisible Unicode
  (TPL005–008, template_emits.py, hidden_text.py). The catalogue of known templates
  (template_catalog.py) names the family of a known template and shows how an unknown one drifts
  from the closest family.
We parse with the environment transformers uses (sandbox, `loopcontrols`, a no-op
`{% generation %}` tag) and walk the AST; every walk is linear in the template's size and checks
the scan's deadline. Every finding quotes the expression or text and its line, and the template
node's `marks` point the GUI at the spots.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airlock.core.errors import LimitExceeded
from airlock.core.findings import Rule, Severity
from airlock.core.template_ast import parse_template, reads_messages, render_expr
from airlock.core.template_escapes import TemplateEscape, Walker
from airlock.core.text import safe_text

if TYPE_CHECKING:
    from airlock.core.context import ScanContext
    from airlock.core.template_catalog import Catalog
    from airlock.core.template_emits import Analysis
    from airlock.core.tree import Node

__all__ = ["analyze_template", "parse_template", "render_expr"]


class TemplateNotAnalysed(Rule):
    id = "TPL004"
    severity = Severity.MEDIUM
    title = "Chat template not analysed"
    incomplete = True
    help = "Jinja could not parse the template, so Airlock could not analyse it."


class TemplateTrigger(Rule):
    id = "TPL005"
    severity = Severity.HIGH
    title = "Chat template injects text when a message contains a trigger"
    help = ("Natural-language text the template emits only when a message's content passes a test "
            "(`in`, `startswith`, comparisons, length checks, filters over it, or a flag set by one): "
            "a trigger-conditional backdoor. Real templates test roles and types, not what users write.")


class TemplatePayload(Rule):
    id = "TPL006"
    severity = Severity.HIGH
    title = "Chat template emits a URL, address, encoded blob or concealment instruction"
    help = ("Text the template itself adds to the prompt carries a URL, an e-mail address, a base64 or "
            "hex blob, an HTML comment, or an instruction to conceal or override (\"do not mention\", "
            "\"ignore previous\"): no catalogued template does.")


class TemplateRewritesContent(Rule):
    id = "TPL007"
    severity = Severity.HIGH
    title = "Chat template rewrites message content"
    help = ("The template changes what a message says before the model sees it (replace, slicing, case "
            "changes, messages dropped by content or role). Trimming whitespace and cutting reasoning "
            "off at a special token are not counted.")


class TemplateInjectsText(Rule):
    id = "TPL008"
    severity = Severity.MEDIUM
    title = "Chat template adds text found in no known template"
    help = ("The template adds natural-language text to every prompt that no catalogued template "
            "contains. Real default system prompts (Qwen's, Llama 3.1's knowledge date) are catalogued.")


class KnownTemplate(Rule):
    id = "TPL009"
    severity = Severity.INFO
    title = "Known chat template"
    help = "The template is, whitespace aside, one of the catalogued official templates."


class TemplateDrift(Rule):
    id = "TPL010"
    severity = Severity.INFO
    title = "Chat template differs from its closest known template"
    help = "The finding's detail is a unified diff against the closest catalogued template (or its skeleton)."


MAX_TEMPLATE_CHARS = 1024 * 1024  # real templates are a few KiB; the longest tool-use ones ~30 KiB
MAX_PER_RULE = 20  # injection findings per rule and template; the rest are counted


class _Progress:
    """Where the analysis of one template is, for a time-out message that says how far it got."""

    def __init__(self, ctx: ScanContext, text: str) -> None:
        self.ctx = ctx
        self.stage = "parsing"
        self.steps = 0
        self.size = len(text)

    def tick(self) -> None:
        self.steps += 1
        self.ctx.tick(256)


def analyze_template(text: str, ctx: ScanContext, node: Node) -> None:
    """Parse `text` as a chat template and attach findings to `node` (never renders)."""
    from jinja2 import TemplateSyntaxError

    node.attrs.setdefault("text", text)
    node.attrs.setdefault("lines", text.count("\n") + 1)
    report = _Reporter(text, ctx, node)
    if len(text) > MAX_TEMPLATE_CHARS:
        from airlock.core.findings import LimitExceeded as LimitRule

        ctx.report(LimitRule, f"chat template of {len(text):,} characters is over the {MAX_TEMPLATE_CHARS:,}-"
                   "character budget: not analysed", node=node)
        return
    from airlock.core.hidden_text import report_hidden

    hidden = report_hidden(text, ctx, node, what="chat template", severity=Severity.HIGH, marks_too=True)
    report.spans += hidden
    report.hidden = bool(hidden)
    progress = _Progress(ctx, text)
    try:
        try:
            ast = parse_template(text, progress.tick)
        except TemplateSyntaxError as exc:
            line = exc.lineno or 0
            report.line(line)
            ctx.report(TemplateNotAnalysed,
                       f"chat template not analysed: Jinja cannot parse it (line {line}: "
                       f"{safe_text(str(exc.message or exc), 160)})", node=node)
            return
        except (RecursionError, MemoryError):
            ctx.report(TemplateNotAnalysed, "chat template not analysed: too deeply nested to parse",
                       node=node)
            return
        progress.stage = "looking for sandbox escapes"
        walker = Walker(progress.tick)
        for rule, line, expr, why, needle in walker.run(ast):
            report.add(rule, line, f"`{safe_text(expr, 160)}` {why}", needle)
        if walker.suppressed:
            ctx.report(TemplateEscape, f"chat template: {walker.suppressed:,} more expressions reach Python "
                       "internals (not listed)", node=node)
        if reads_messages(ast, progress.tick):
            progress.stage = "analysing what the template emits"
            from airlock.core.template_emits import analyse

            _judge_emissions(analyse(ast, progress.tick), report)
            progress.stage = "matching the catalogue of known templates"
            _judge_catalogue(text, report)
    except LimitExceeded as exc:
        raise LimitExceeded(f"{exc.message} while {progress.stage} in a chat template of {progress.size:,} "
                            f"characters ({progress.steps:,} steps done); the template was not fully "
                            "analysed",
                            exc.offset) from None
    finally:
        report.finish()


class _Reporter:
    """Findings for one template, each with its line; and the spans the GUI marks."""

    def __init__(self, text: str, ctx: ScanContext, node: Node) -> None:
        self.text = text
        self.ctx = ctx
        self.node = node
        self.lines: set[int] = set()
        self.spans: list[tuple[int, int]] = []
        self.counts: dict[str, int] = {}
        self.hidden = False  # invisible text found
        self._starts: list[int] | None = None

    def line(self, line: int, needle: str | None = None) -> None:
        if line <= 0:
            return
        self.lines.add(line)
        span = self._locate(line, needle)
        if span is not None:
            self.spans.append(span)

    def add(self, rule: type[Rule], line: int, what: str, needle: str | None = None, *,
            severity: Severity | None = None, detail: str | None = None) -> None:
        count = self.counts[rule.id] = self.counts.get(rule.id, 0) + 1
        if count > MAX_PER_RULE and rule is not TemplateEscape:
            return
        self.line(line, needle)
        where = f"chat template line {line}: " if line else "chat template: "
        kwargs: dict[str, Any] = {"severity": severity}
        if detail is not None:
            kwargs["detail"] = detail
        self.ctx.report(rule, where + what, node=self.node, **kwargs)

    def finish(self) -> None:
        for rule_id, count in self.counts.items():
            if count > MAX_PER_RULE and rule_id != TemplateEscape.id:
                rule = Rule.registry[rule_id]
                self.ctx.report(rule, f"chat template: {count - MAX_PER_RULE:,} more findings of this kind "
                                "(not listed)", node=self.node)
        if self.lines:
            self.node.attrs["findings_lines"] = sorted(self.lines)
        if self.spans:
            self.node.attrs["marks"] = sorted(set(self.spans))[:500]

    def _locate(self, line: int, needle: str | None) -> tuple[int, int] | None:
        if self._starts is None:
            self._starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        if line > len(self._starts):
            return None
        start = self._starts[line - 1]
        end = self.text.find("\n", start)
        end = len(self.text) if end < 0 else end
        if needle:
            at = self.text.find(needle, start, min(len(self.text), start + 256 * 1024))
            if at >= 0:
                return at, at + len(needle)
        return (start, min(end, start + 200)) if end > start else None


def _needle(literal: str) -> str | None:
    """A piece of an emitted literal that appears verbatim in the template source (escapes such as
    `\\n` differ between the value and the source, so stop at the first such character)."""
    for segment in re.split(r"[\n\t\r\\'\"]", literal):
        segment = segment.strip()
        if len(segment) >= 4:
            return segment[:60]
    return None


def _judge_emissions(analysis: Analysis, report: _Reporter) -> None:
    from airlock.core.template_catalog import catalog
    from airlock.core.template_literals import padding, payloads, text_segments

    try:
        cat: Catalog | None = catalog()
    except (OSError, ValueError, KeyError):  # catalogue missing or broken: nothing counts as known
        cat = None

    def known(literal: str) -> bool:
        return cat is not None and cat.known_literal(literal)
    for e in analysis.emissions:
        if known(e.literal):
            continue
        # Line by line: a copy of a real template that differs in one sentence keeps its other
        # (catalogued) lines quiet, and the finding quotes only what is new.
        fresh = [line for line in e.literal.split("\n") if line.strip() and not known(line)]
        segments = [seg for line in fresh for seg in text_segments(line)]
        quoted = safe_text(" … ".join(segments) if segments else " ".join(fresh).strip(), 200)
        needle = _needle(" ".join(segments) if segments else " ".join(fresh))
        found = [p for line in fresh for p in payloads(line)]
        if found:
            report.add(TemplatePayload, e.line, f"the template emits text carrying {', '.join(found[:3])}: "
                       f"\"{quoted}\"", needle)
        if not segments:
            continue
        blank = padding(e.literal)
        hidden = f" (after {blank:,} whitespace characters that push it out of view)" if blank else ""
        if e.trigger is not None:
            report.add(TemplateTrigger, e.line, f"emits \"{quoted}\" only when a message's content passes "
                       f"`{safe_text(e.trigger.expr, 160)}` (line {e.trigger.line}){hidden}", needle)
        else:
            report.add(TemplateInjectsText, e.line,
                       f"adds text that is in no catalogued template: \"{quoted}\""
                       f"{hidden}", needle, severity=Severity.HIGH if hidden else None)
    for r in analysis.rewrites:
        word = re.search(r"[.|](\w+)", r.why)
        report.add(TemplateRewritesContent, r.line, f"`{safe_text(r.expr, 160)}` {r.why}: the model does not "
                   "see what the user wrote", word.group(1) if word else None)
    if analysis.more_rewrites:
        report.add(TemplateRewritesContent, 0,
                   f"{analysis.more_rewrites:,} more places rewrite message content")
    if analysis.truncated:
        from airlock.core.findings import LimitExceeded as LimitRule

        report.add(LimitRule, 0, "emits more literal pieces than Airlock follows; the rest was not analysed")


def _judge_catalogue(text: str, report: _Reporter) -> None:
    from airlock.core.template_catalog import catalog, drift

    try:
        cat = catalog()
    except (OSError, ValueError, KeyError):
        return
    entry = cat.exact(text)
    node = report.node
    if entry is not None:
        family = cat.families[entry.sha256]
        node.attrs["known_template"] = family
        report.add(KnownTemplate, 0,
                   f"known template: {family} ({safe_text(entry.model, 80)}; {entry.licence})")
        return
    found = drift(text, cat)
    if found is None or not (found.added or found.removed):
        return
    node.attrs["closest_template"] = found.entry.family
    node.attrs["drift"] = found.diff
    # Every drift is in the reports (info: it does not fail CI by itself), so a reviewer reading the
    # report sees what changed against the family, not only when an injection rule fired.
    report.add(TemplateDrift, 0, f"differs from the closest known template, {found.entry.family} "
               f"({safe_text(found.entry.model, 80)}, {found.similarity:.0%} of its lines shared): "
               f"{found.added} line(s) added, {found.removed} removed (the detail shows the diff)",
               detail=found.diff)


