"""Sandbox escapes in chat templates (CVE-2024-34359 class): every walk towards Python internals.

In a plain jinja2 `Environment` a template reaches Python through attribute walks such as
`cycler.__init__.__globals__.os.popen(...)`; even in the sandbox such walks are an attack attempt.
The walker reports each with the whole expression it is part of and its line, in one pass that is
linear in the template's size (a 10,000-link chain is one finding, found in 10,000 steps).
"""

from __future__ import annotations

import re
from typing import Any

from airlock.core.findings import Rule, Severity
from airlock.core.template_ast import nodes_module, render_expr


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
MAX_HITS = 200  # escape findings per template; a 10,000-link chain is one finding, not 10,000
MAX_REASONS = 8  # reasons listed per finding; the rest are counted


def _is_private(name: str) -> bool:
    return name.startswith("_")


class Walker:
    """Collects (rule, line, expression, why, needle) for every expression that reaches Python."""

    def __init__(self, tick: Any) -> None:
        self.tick = tick
        self.defined: set[str] = set()
        self.outer: dict[int, Any] = {}
        self.suppressed = 0
        self._found: list[tuple[type[Rule], int, str, str | None]] = []
        self._reasons: list[dict[str, None]] = []  # ordered sets of reasons, one per finding
        self._more: dict[int, int] = {}
        self._index: dict[tuple[str, int, int], int] = {}

    def run(self, ast: Any) -> list[tuple[type[Rule], int, str, str, str | None]]:
        nodes = nodes_module()
        chain = nodes.Getattr | nodes.Getitem | nodes.Call | nodes.Filter
        every: list[Any] = []
        # One pass, parents before children: each node's outermost enclosing access chain
        # (`x.__class__.__mro__[1]()` for its `x.__class__`) is its parent's when the parent
        # extends it, so a 10,000-link chain costs 10,000 steps, not 10,000².
        stack = [ast]
        while stack:
            current = stack.pop()
            self.tick()
            every.append(current)
            top = self.outer.get(id(current), current)
            for child in current.iter_child_nodes():
                self.outer[id(child)] = top if isinstance(current, chain) and current.node is child else child
                stack.append(child)
        for n in every:  # names the template binds itself are its own data
            if (isinstance(n, nodes.Name) and n.ctx in ("store", "param")) or isinstance(n, nodes.Macro):
                self.defined.add(n.name)
        for n in reversed(every):  # innermost first, so reasons read in the order they are written
            self.tick()
            self._check(n, nodes)
        return self.hits

    def _check(self, n: Any, nodes: Any) -> None:
        if isinstance(n, nodes.Getattr):
            if _is_private(n.attr):
                kind = "dunder" if n.attr.startswith("__") and n.attr.endswith("__") else "private"
                self._hit(TemplateEscape, n, f"reads the {kind} attribute {n.attr!r}", n.attr)
            elif n.attr in DANGEROUS_NAMES:
                self._hit(TemplateEscape, n, f"reads the attribute {n.attr!r}", n.attr)
            elif isinstance(n.node, nodes.Name) and n.node.name in JINJA_GLOBALS \
                    and n.node.name not in self.defined:
                self._hit(TemplateEscape, n, f"reads an attribute of Jinja's global {n.node.name!r}",
                          n.node.name)
            elif n.attr in ("format", "format_map") and _format_string_escapes(n.node, nodes):
                self._hit(TemplateEscape, n, "formats a string whose fields read private attributes", n.attr)
        elif isinstance(n, nodes.Getitem):
            key = n.arg.value if isinstance(n.arg, nodes.Const) else None
            if isinstance(key, str) and (key.startswith("__") or key in DANGEROUS_NAMES):
                self._hit(TemplateEscape, n, f"reads the item {key!r}", key)
            elif isinstance(n.node, nodes.Name) and n.node.name in JINJA_GLOBALS \
                    and n.node.name not in self.defined:
                self._hit(TemplateEscape, n, f"reads an item of Jinja's global {n.node.name!r}", n.node.name)
        elif isinstance(n, nodes.Name) and n.ctx == "load":
            if n.name in DANGEROUS_NAMES and n.name not in self.defined:
                self._hit(TemplateEscape, n, f"uses the name {n.name!r}, which no chat template needs",
                          n.name)
            elif _is_private(n.name) and n.name.startswith("__"):
                self._hit(TemplateEscape, n, f"uses the name {n.name!r}", n.name)
        elif isinstance(n, nodes.Filter | nodes.Test):
            self._check_filter(n, nodes)
        elif isinstance(n, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            self._hit(TemplateLoadsTemplates, n, "loads another template through the host's loader",
                      type(n).__name__.lower())

    def _check_filter(self, n: Any, nodes: Any) -> None:
        names: list[Any] = []
        if n.name in _ATTRIBUTE_FILTERS and n.args:
            names.append(n.args[0])
        names.extend(kw.value for kw in n.kwargs if kw.key == _ATTRIBUTE_KW)
        for arg in names:
            if isinstance(arg, nodes.Const):
                if isinstance(arg.value, str) and any(
                        _is_private(part) or part in DANGEROUS_NAMES for part in arg.value.split(".")):
                    self._hit(TemplateEscape, n, f"reads the attribute {arg.value!r} through |{n.name}",
                              arg.value)
            elif n.name == "attr":
                self._hit(TemplateComputedAttribute, n, "reads an attribute whose name is computed", "attr")
        if n.name == "format" and _format_string_escapes(n.node, nodes):
            self._hit(TemplateEscape, n, "formats a string whose fields read private attributes", "format")

    def _hit(self, rule: type[Rule], n: Any, why: str, needle: str | None) -> None:
        outer = self.outer.get(id(n), n)
        line = getattr(n, "lineno", 0) or 0
        key = (rule.id, line, id(outer))
        i = self._index.get(key)
        if i is not None:  # `a.__class__.__mro__` is one finding with both reasons
            reasons = self._reasons[i]
            if why not in reasons and len(reasons) < MAX_REASONS:
                reasons[why] = None
            elif why not in reasons:
                self._more[i] = self._more.get(i, 0) + 1
            return
        if len(self._found) >= MAX_HITS:
            self.suppressed += 1
            return
        self._index[key] = len(self._found)
        self._found.append((rule, line, render_expr(outer), needle))
        self._reasons.append({why: None})

    @property
    def hits(self) -> list[tuple[type[Rule], int, str, str, str | None]]:
        out = []
        for i, (rule, line, expr, needle) in enumerate(self._found):
            why = "; ".join(self._reasons[i])
            if i in self._more:
                why += f"; and {self._more[i]:,} more"
            out.append((rule, line, expr, why, needle))
        return out


def _format_string_escapes(n: Any, nodes: Any) -> bool:
    return isinstance(n, nodes.Const) and isinstance(n.value, str) and bool(_FORMAT_FIELD.search(n.value))
