"""Chat templates (Jinja): parsed the way inference stacks parse them, never rendered.

transformers and llama-cpp-python render `tokenizer.chat_template` with jinja2. In a plain
`Environment` (CVE-2024-34359) a template reaches Python through attribute walks such as
`cycler.__init__.__globals__.os.popen(...)`; even in the sandbox such walks are an attack
attempt. We parse with the same environment transformers uses (sandbox, `loopcontrols`, a
no-op `{% generation %}` tag), walk the AST and report every walk towards Python internals
with the exact expression and its line. Parsing never runs template code.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from airlock.core.findings import Rule, Severity
from airlock.core.text import safe_text

if TYPE_CHECKING:
    from airlock.core.context import ScanContext
    from airlock.core.tree import Node


class TemplateEscape(Rule):
    id = "TPL001"
    severity = Severity.CRITICAL
    title = "Chat template reaches Python internals"
    help = ("The template walks dunder/private attributes, attributes of Jinja's own globals "
            "(cycler, joiner, namespace, lipsum) or names such as os/popen/eval: a sandbox escape "
            "(CVE-2024-34359 class). Ordinary chat templates never do this.")


class TemplateComputedAttribute(Rule):
    id = "TPL002"
    severity = Severity.HIGH
    title = "Chat template computes an attribute name"
    help = "`|attr(...)` with a name built at render time cannot be proven harmless."


class TemplateLoadsTemplates(Rule):
    id = "TPL003"
    severity = Severity.HIGH
    title = "Chat template loads other templates"
    help = "include/import/extends read other templates through the host's loader; chat templates never do."


class TemplateNotAnalysed(Rule):
    id = "TPL004"
    severity = Severity.MEDIUM
    title = "Chat template not analysed"
    help = "Jinja could not parse the template, so Airlock could not analyse it."


# Jinja's default globals: calling them is normal, walking their attributes reaches Python.
JINJA_GLOBALS = frozenset({"cycler", "joiner", "namespace", "lipsum", "range", "dict"})
# Names no chat template has a reason to mention (unless it defines them itself).
DANGEROUS_NAMES = frozenset({"os", "popen", "import", "eval", "exec", "subprocess", "system",
                             "builtins", "globals", "getattr", "setattr", "open", "compile",
                             "mro", "subclasses", "func_globals", "f_globals", "gi_frame", "tb_frame"})
# Filters whose first argument names an attribute to read; any filter's `attribute=` does too.
_ATTRIBUTE_FILTERS = frozenset({"attr", "selectattr", "rejectattr", "groupby"})
_ATTRIBUTE_KW = "attribute"
_FORMAT_FIELD = re.compile(r"\{[^{}]*(?:\._|\[_)")


def _is_private(name: str) -> bool:
    return name.startswith("_")


@functools.cache
def _environment() -> Any:
    """The environment transformers' `_compile_jinja_template` builds, minus its render globals."""
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        # transformers marks assistant turns with {% generation %}…{% endgeneration %}.
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                         extensions=[GenerationTag, loopcontrols])


def analyze_template(text: str, ctx: ScanContext, node: Node) -> None:
    """Parse `text` as a chat template and attach findings to `node` (never renders)."""
    from jinja2 import TemplateSyntaxError

    node.attrs.setdefault("text", text)
    node.attrs.setdefault("lines", text.count("\n") + 1)
    try:
        # The parser itself, not Environment.parse: on a syntax error that one rewrites the traceback
        # by compile()-ing a fake `raise` (jinja2.debug), and nothing in core may call compile.
        from jinja2.parser import Parser

        ast = Parser(_environment(), text).parse()
    except TemplateSyntaxError as exc:
        line = exc.lineno or 0
        node.attrs["findings_lines"] = [line] if line else []
        ctx.report(TemplateNotAnalysed,
                   f"chat template not analysed: Jinja cannot parse it (line {line}: "
                   f"{safe_text(str(exc.message or exc), 160)})", node=node)
        return
    except (RecursionError, MemoryError):
        ctx.report(TemplateNotAnalysed, "chat template not analysed: too deeply nested to parse", node=node)
        return
    hits = _Walker().run(ast)
    lines: set[int] = set()
    for rule, line, expr, why in hits:
        lines.add(line)
        ctx.report(rule, f"chat template line {line}: `{safe_text(expr, 160)}` {why}", node=node)
    if lines:
        node.attrs["findings_lines"] = sorted(lines)


class _Walker:
    """Collects (rule, line, expression, why) for every suspicious expression in a template AST."""

    def __init__(self) -> None:
        self.parents: dict[int, Any] = {}
        self.defined: set[str] = set()
        self.hits: list[tuple[type[Rule], int, str, str]] = []
        self._index: dict[tuple[str, int, str], int] = {}

    def run(self, ast: Any) -> list[tuple[type[Rule], int, str, str]]:
        from jinja2 import nodes

        every: list[Any] = []
        stack = [ast]
        while stack:  # iterative: a hostile template may nest deeper than the recursion limit
            current = stack.pop()
            every.append(current)
            for child in current.iter_child_nodes():
                self.parents[id(child)] = current
                stack.append(child)
        for n in every:  # names the template binds itself are its own data
            if (isinstance(n, nodes.Name) and n.ctx in ("store", "param")) or isinstance(n, nodes.Macro):
                self.defined.add(n.name)
        for n in reversed(every):  # innermost first, so reasons read in the order they are written
            self._check(n, nodes)
        return self.hits

    def _check(self, n: Any, nodes: Any) -> None:
        if isinstance(n, nodes.Getattr):
            if _is_private(n.attr):
                kind = "dunder" if n.attr.startswith("__") and n.attr.endswith("__") else "private"
                self._hit(TemplateEscape, n, f"reads the {kind} attribute {n.attr!r}")
            elif n.attr in DANGEROUS_NAMES:
                self._hit(TemplateEscape, n, f"reads the attribute {n.attr!r}")
            elif isinstance(n.node, nodes.Name) and n.node.name in JINJA_GLOBALS \
                    and n.node.name not in self.defined:
                self._hit(TemplateEscape, n, f"reads an attribute of Jinja's global {n.node.name!r}")
            elif n.attr in ("format", "format_map") and _format_string_escapes(n.node, nodes):
                self._hit(TemplateEscape, n, "formats a string whose fields read private attributes")
        elif isinstance(n, nodes.Getitem):
            key = n.arg.value if isinstance(n.arg, nodes.Const) else None
            if isinstance(key, str) and (key.startswith("__") or key in DANGEROUS_NAMES):
                self._hit(TemplateEscape, n, f"reads the item {key!r}")
            elif isinstance(n.node, nodes.Name) and n.node.name in JINJA_GLOBALS \
                    and n.node.name not in self.defined:
                self._hit(TemplateEscape, n, f"reads an item of Jinja's global {n.node.name!r}")
        elif isinstance(n, nodes.Name) and n.ctx == "load":
            if n.name in DANGEROUS_NAMES and n.name not in self.defined:
                self._hit(TemplateEscape, n, f"uses the name {n.name!r}, which no chat template needs")
            elif _is_private(n.name) and n.name.startswith("__"):
                self._hit(TemplateEscape, n, f"uses the name {n.name!r}")
        elif isinstance(n, nodes.Filter | nodes.Test):
            self._check_filter(n, nodes)
        elif isinstance(n, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            self._hit(TemplateLoadsTemplates, n, "loads another template through the host's loader")

    def _check_filter(self, n: Any, nodes: Any) -> None:
        names: list[Any] = []
        if n.name in _ATTRIBUTE_FILTERS and n.args:
            names.append(n.args[0])
        names.extend(kw.value for kw in n.kwargs if kw.key == _ATTRIBUTE_KW)
        for arg in names:
            if isinstance(arg, nodes.Const):
                if isinstance(arg.value, str) and any(
                        _is_private(part) or part in DANGEROUS_NAMES for part in arg.value.split(".")):
                    self._hit(TemplateEscape, n, f"reads the attribute {arg.value!r} through |{n.name}")
            elif n.name == "attr":
                self._hit(TemplateComputedAttribute, n, "reads an attribute whose name is computed")
        if n.name == "format" and _format_string_escapes(n.node, nodes):
            self._hit(TemplateEscape, n, "formats a string whose fields read private attributes")

    def _hit(self, rule: type[Rule], n: Any, why: str) -> None:
        expr = render_expr(self._outermost(n))
        line = getattr(n, "lineno", 0) or 0
        key = (rule.id, line, expr)
        i = self._index.get(key)
        if i is None:
            self._index[key] = len(self.hits)
            self.hits.append((rule, line, expr, why))
        elif why not in self.hits[i][3]:  # `a.__class__.__mro__` is one finding with both reasons
            self.hits[i] = (rule, line, expr, f"{self.hits[i][3]}; {why}")

    def _outermost(self, n: Any) -> Any:
        """Climb to the whole expression this access is part of (`x.__class__.__mro__[1]()`)."""
        from jinja2 import nodes

        while True:
            parent = self.parents.get(id(n))
            if isinstance(parent, nodes.Getattr | nodes.Getitem | nodes.Call | nodes.Filter) \
                    and parent.node is n:
                n = parent
            else:
                return n


def _format_string_escapes(n: Any, nodes: Any) -> bool:
    return isinstance(n, nodes.Const) and isinstance(n.value, str) and bool(_FORMAT_FIELD.search(n.value))


_BINOPS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "FloorDiv": "//", "Mod": "%", "Pow": "**",
           "And": "and", "Or": "or"}


def render_expr(n: Any, depth: int = 0) -> str:
    """Jinja source for an expression node, close to how it was written."""
    from jinja2 import nodes

    if depth > 40:
        return "…"
    d = depth + 1
    if isinstance(n, nodes.Name):
        return str(n.name)
    if isinstance(n, nodes.Const):
        return repr(n.value)
    if isinstance(n, nodes.Getattr):
        return f"{render_expr(n.node, d)}.{n.attr}"
    if isinstance(n, nodes.Getitem):
        return f"{render_expr(n.node, d)}[{render_expr(n.arg, d)}]"
    if isinstance(n, nodes.Call):
        return f"{render_expr(n.node, d)}({_render_args(n, d)})"
    if isinstance(n, nodes.Filter):
        args = _render_args(n, d)
        return f"{render_expr(n.node, d)}|{n.name}" + (f"({args})" if args else "")
    if isinstance(n, nodes.Test):
        return f"{render_expr(n.node, d)} is {n.name}"
    if isinstance(n, nodes.Concat):
        return " ~ ".join(render_expr(x, d) for x in n.nodes)
    if isinstance(n, nodes.BinExpr):
        return f"{render_expr(n.left, d)} {_BINOPS.get(type(n).__name__, '?')} {render_expr(n.right, d)}"
    if isinstance(n, nodes.Tuple | nodes.List):
        return "[" + ", ".join(render_expr(x, d) for x in n.items) + "]"
    if isinstance(n, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
        return f"{type(n).__name__.lower()} {render_expr(n.template, d)}"
    if isinstance(n, nodes.Slice):
        return ":".join(render_expr(x, d) if x is not None else "" for x in (n.start, n.stop))
    return f"<{type(n).__name__}>"


def _render_args(n: Any, depth: int) -> str:
    parts = [render_expr(a, depth) for a in n.args]
    parts += [f"{kw.key}={render_expr(kw.value, depth)}" for kw in n.kwargs]
    if n.dyn_args is not None:
        parts.append("*" + render_expr(n.dyn_args, depth))
    if n.dyn_kwargs is not None:
        parts.append("**" + render_expr(n.dyn_kwargs, depth))
    return ", ".join(parts)
