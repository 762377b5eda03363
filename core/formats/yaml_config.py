"""YAML configs (Hydra/OmegaConf, NeMo `model_config.yaml`, Lightning `hparams.yaml`) and JSON configs
that carry Hydra `_target_` keys: every target judged by airlock.core.formats.hydra.

YAML is composed, never constructed: `yaml.compose_all` with PyYAML's *safe* loader builds the node graph
(tags and positions kept, nothing imported or called), so a `!!python/object/apply` tag is seen as a tag.
A document too deeply nested for libyaml's recursive C composer (which has no depth check) is composed by
the pure-Python one, whose recursion limit turns it into a finding. Text that is not a YAML mapping or
list (a README whose first line has a colon) is reported as the text it is.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.findings import InertContent, LimitExceeded, NotInspected
from airlock.core.formats import hydra
from airlock.core.formats.contract import file_node
from airlock.core.formats.inert import looks_like_text
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import Node

NAME = "yaml"
EXTENSIONS = (".yaml", ".yml", ".json")  # after the JSON module in the registry: .json stays "json"
OVERLAPS = ("json", "safetensors-index")  # JSON is YAML: .json stays json by registry order
# A Hugging Face model card (README.md) opens with YAML front matter: read as YAML, but no mismatch.
ALSO_NAMED = (".md",)

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # Hydra/NeMo configs are kilobytes; the pure-Python composer is slow
_C_COMPOSER_DEPTH = 64  # deeper (estimated) documents go through the pure-Python composer
_KEY_LINE = re.compile(rb"(['\"]?)[A-Za-z_][\w .\-]*\1\s*:(\s|$)")
_BOM = b"\xef\xbb\xbf"
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _content_lines(head: bytes) -> list[bytes]:
    lines = []
    for line in head.split(b"\n", 64)[:64]:
        stripped = line.strip()
        if stripped and not stripped.startswith(b"#"):
            lines.append(line.rstrip(b"\r"))
    return lines


def sniff(head: bytes, size: int) -> int:
    if b"\x00" in head or not looks_like_text(head, final=len(head) >= size):
        return 0
    lines = _content_lines(head.removeprefix(_BOM))
    if not lines:
        return 0
    if lines[0].startswith((b"%YAML", b"---")):
        return 30
    # A mapping from its first line, with a second top-level key: a Markdown file whose heading reads as
    # a YAML comment and has one "License: MIT" line stays text.
    if _KEY_LINE.match(lines[0]) and sum(1 for line in lines[1:] if _KEY_LINE.match(line)) >= 1:
        return 15  # below the JSON module (20): a JSON object is not claimed here by its first line
    return 0


def sniff_source(source: Source) -> int:
    head = source.head()
    if head.removeprefix(_BOM).lstrip()[:1] == b"{":
        # A JSON config is Hydra's when it names a target: read it (configs are small) to know.
        if source.size <= MAX_CONFIG_BYTES and b'"_target_"' in source.read(0, source.size):
            return 25
        return 0
    score = sniff(head, source.size)
    if not score and (source.member or source.name).lower().endswith((".yaml", ".yml")):
        # The name adds a check, never removes one: text named as YAML is read as a config (Hydra and
        # NeMo load such files by name), whatever its first line looks like.
        return 16 if b"\x00" not in head and looks_like_text(head, final=len(head) >= source.size) else 0
    return score


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    if source.size > MAX_CONFIG_BYTES:
        ctx.report(NotInspected, f"config of {source.size:,} bytes is over the {MAX_CONFIG_BYTES:,}-byte "
                   "budget: its targets were not inspected", node=root, offset=0)
        return root
    raw = source.read(0, source.size)
    name = os.path.basename(source.member or source.name).lower()
    checker = hydra.Checker(ctx, root, nemo=name == "model_config.yaml")
    before = len(ctx.findings)
    if raw.removeprefix(_BOM).lstrip()[:1] == b"{":
        _parse_json(raw, root, ctx, checker)
    else:
        _parse_yaml(raw, root, ctx, checker)
    root.attrs["targets"] = checker.targets
    if not checker.targets and len(ctx.findings) == before:
        # Known-inert content (a model card's front matter, a plain hparams file) is info, said so,
        # like JSON data and text: never a file without a word.
        ctx.report(InertContent, "YAML data without Hydra _target_ entries: loaders read it as data, nothing "
                   "in it runs", node=root, offset=0)
    return root


def _parse_json(raw: bytes, root: Node, ctx: ScanContext, checker: hydra.Checker) -> None:
    root.attrs["syntax"] = "json"
    try:
        value = json.loads(raw.removeprefix(_BOM).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        ctx.report(NotInspected, f"names _target_ but is not valid JSON ({safe_text(str(exc), 160)}): its "
                   "targets were not inspected", node=root, offset=0)
        return
    hydra.check_json(value, checker, raw)


def _parse_yaml(raw: bytes, root: Node, ctx: ScanContext, checker: hydra.Checker) -> None:
    import yaml  # PyYAML, imported for configs only

    root.attrs["syntax"] = "yaml"
    bom = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        ctx.report(NotInspected, f"YAML that is not UTF-8 (byte {exc.start + bom:,}): not inspected",
                   node=root, offset=exc.start + bom)
        return
    fast = getattr(yaml, "CSafeLoader", None)
    loader = fast if fast is not None and _depth_estimate(raw) < _C_COMPOSER_DEPTH else yaml.SafeLoader
    walker = _Walker(ctx, checker, text, bom)
    documents = 0
    try:
        for document in yaml.compose_all(text, Loader=loader):
            ctx.check()
            if document is not None:
                documents += 1
                walker.walk(document)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = walker.offset(mark.index) if mark is not None else 0
        if documents == 0 and not walker.containers:
            _as_text(root, ctx, f"does not parse as YAML ({safe_text(str(exc).splitlines()[0], 120)})")
            return
        ctx.report(NotInspected, f"YAML stops parsing at line {getattr(mark, 'line', 0) + 1}: "
                   f"{safe_text(str(exc).splitlines()[0], 160)}; the rest was not inspected", node=root,
                   offset=where)
    except RecursionError:
        ctx.report(LimitExceeded, "YAML nested too deeply to compose; the rest was not inspected", node=root,
                   offset=0)
        return
    if documents and not walker.containers:
        _as_text(root, ctx, "is a plain YAML scalar")


def _as_text(root: Node, ctx: ScanContext, why: str) -> None:
    root.attrs["format"] = "text"
    ctx.report(InertContent, f"UTF-8 text ({why}), {root.length or 0:,} bytes: no model loader runs it",
               node=root, offset=0)


def _depth_estimate(raw: bytes) -> int:
    """An upper bound of the nesting: open flow brackets, and indentation (one space per level)."""
    depth = deepest = 0
    for byte in raw.translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    indent = max((len(line) - len(line.lstrip(b" ")) for line in raw.split(b"\n")), default=0)
    return max(deepest, indent)


class _Walker:
    """Visits every node of a composed document once (aliases share nodes: a billion-laughs document
    is walked in linear time), judging targets, python tags and eval interpolations."""

    def __init__(self, ctx: ScanContext, checker: hydra.Checker, text: str, bom: int) -> None:
        self.ctx = ctx
        self.checker = checker
        self.text = text
        self.bom = bom
        self.seen: set[int] = set()
        self.containers = 0

    def offset(self, index: int) -> int:
        return len(self.text[:index].encode("utf-8", "surrogatepass")) + self.bom

    def walk(self, document: Any) -> None:
        import yaml

        stack: list[tuple[Any, str]] = [(document, "")]
        while stack:
            self.ctx.tick(256)
            node, where = stack.pop()
            if id(node) in self.seen:
                continue
            self.seen.add(id(node))
            place = where or "(top level)"
            if (node.tag or "").startswith("tag:yaml.org,2002:python/"):
                self.checker.python_tag(node.tag, place, self.offset(node.start_mark.index))
            if isinstance(node, yaml.MappingNode):
                self.containers += 1
                self._mapping(node, where, stack)
            elif isinstance(node, yaml.SequenceNode):
                self.containers += 1
                stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node.value))
            elif isinstance(node.value, str) and "${" in node.value:
                self.checker.scalar(node.value, place, self.offset(node.start_mark.index))

    def _mapping(self, node: Any, where: str, stack: list[tuple[Any, str]]) -> None:
        import yaml

        targets = []
        partial = False
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is None:
                stack.append((key, where))
                continue
            nemo_target = self.checker.nemo and not where and name == hydra.NEMO_TARGET_KEY
            if name in hydra.TARGET_KEYS or nemo_target:
                targets.append((name, value))
            elif name == "_partial_" and isinstance(value, yaml.ScalarNode):
                partial = value.value.lower() == "true"
            stack.append((value, f"{where}.{name}" if where else str(name)))
        for name, value in targets:
            string = isinstance(value, yaml.ScalarNode) and value.tag.endswith(":str")
            if not string:
                continue  # Hydra imports names only; a tagged value is judged as the tag it carries
            self.checker.target(value.value, where or "(top level)", self.offset(value.start_mark.index),
                                key=name, partial=partial)
