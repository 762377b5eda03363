"""JSON configs of Hugging Face-style model folders: remote code and chat templates.

transformers imports the Python files named by `auto_map` (config.json, tokenizer_config.json,
processor configs) and `custom_pipelines` when a model is loaded with `trust_remote_code=True`;
`repo--module.Class` references fetch that code from another repository. Chat templates in
`tokenizer_config.json` / `chat_template.json` are checked by airlock.core.templates.

This module sniffs low (any JSON object scores 20) so that more specific JSON formats, such as
a SafeTensors index, win.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.findings import InertContent, LimitExceeded, Malformed, NotInspected, Rule, Severity
from airlock.core.formats.contract import file_node
from airlock.core.hidden_text import report_hidden_in_json
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import GROUP, METADATA, TEMPLATE, Node

NAME = "json"
EXTENSIONS = (".json",)
OVERLAPS = ("safetensors-index", "yaml")  # YAML is a superset of JSON

MAX_JSON_BYTES = 64 * 1024 * 1024  # tokenizer.json files reach ~35 MB
EAGER_KEYS = 1000
# Files transformers reads auto_map or chat templates from: a malformed one breaks loading.
HF_CONFIG_NAMES = frozenset({"config.json", "tokenizer_config.json", "processor_config.json",
                             "preprocessor_config.json", "feature_extractor_config.json",
                             "image_processor_config.json", "chat_template.json", "generation_config.json"})


class RemoteCode(Rule):
    id = "MF001"
    severity = Severity.HIGH
    title = "Custom code runs under trust_remote_code=True"
    help = "The config's auto_map / custom_pipelines make transformers import Python files shipped "\
        "with the model (or fetched from another repository) when trust_remote_code=True."


class RemoteCodeNotShipped(Rule):
    id = "MF002"
    severity = Severity.MEDIUM
    title = "Config names custom code that is not in the folder"
    help = "Loading needs Python code that is not next to this config; it was not inspected."


def sniff(head: bytes, size: int) -> int:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text[:1] != b"{":
        return 0
    rest = text[1:].lstrip()
    return 20 if rest[:1] in (b'"', b"}") or (not rest and size > len(head)) else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    name = os.path.basename(source.member or source.name)
    if source.size > MAX_JSON_BYTES:
        ctx.report(LimitExceeded if name in HF_CONFIG_NAMES else NotInspected,
                   f"JSON of {source.size:,} bytes is over the {MAX_JSON_BYTES:,}-byte budget: not inspected",
                   node=root, offset=0)
        return root
    try:
        data = json.loads(source.read(0, source.size).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if name in HF_CONFIG_NAMES:  # transformers fails on it
            ctx.report(Malformed, f"malformed {name}: not JSON ({safe_text(str(exc), 160)})", node=root,
                       offset=0)
        elif isinstance(exc, UnicodeDecodeError):
            # Not text either (binary after a JSON-looking start): unknown content, medium like any other
            # (fail-closed policy), never the info of inert text.
            ctx.report(NotInspected, f"starts like JSON but is not UTF-8 text ({safe_text(str(exc), 160)}): "
                       "not inspected", node=root, offset=0)
        else:
            # Not a config any loader reads; text is inert (fail-closed policy), so info, not medium.
            ctx.report(NotInspected, f"starts like JSON but does not parse ({safe_text(str(exc), 160)}): "
                       "not inspected", node=root, offset=0, severity=Severity.INFO)
        return root
    if not isinstance(data, dict):
        _inert(data, ctx, root)
        return root
    before = len(ctx.findings)
    _add_keys(root, data, source)
    for key in ("model_type", "architectures", "tokenizer_class"):
        if key in data:
            root.attrs[key] = safe_text(str(data[key]), 120)
    refs = code_references(data)
    if refs:
        _judge_code(refs, source, ctx, root)
    _check_templates(data, ctx, root)
    if name in HF_CONFIG_NAMES:  # invisible or look-alike text (tokenizer.json's vocabulary is exempt)
        report_hidden_in_json(data, ctx, root, what=name, skip_keys=frozenset({"chat_template"}))
    if not refs and "chat_template" not in data and len(ctx.findings) == before:
        _inert(data, ctx, root)
    return root


def _inert(data: Any, ctx: ScanContext, root: Node) -> None:
    """JSON without templates or code references: data a loader reads, nothing it runs (issue 13's
    known-inert content, info like text and images), said so rather than left without a word."""
    what = f"{len(data):,} key(s)" if isinstance(data, dict) else type(data).__name__
    ctx.report(InertContent, f"JSON data ({what}) without templates or code references: loaders read it "
               "as data, nothing in it runs", node=root, offset=0)


def _add_keys(root: Node, data: dict[str, Any], source: Source) -> None:
    items = list(data.items())

    def make(key: str, value: Any) -> Node:
        preview = json.dumps(value, ensure_ascii=False, default=str)[:400]
        attrs: dict[str, Any] = {"key": safe_text(key), "value": safe_text(preview, 400)}
        if isinstance(value, list | dict):
            attrs["size"] = len(value)
        return Node(METADATA, f"{safe_text(key, 80)} = {safe_text(preview, 120)}", member=source.member,
                    attrs=attrs)

    if len(items) <= EAGER_KEYS:
        for key, value in items:
            root.add(make(key, value))
        return
    group = root.child(GROUP, f"keys ({len(items):,})")
    group.set_lazy_children(len(items), lambda a, b: [make(k, v) for k, v in items[a:b]])


def code_references(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, "module.Class" or "repo--module.Class") for every class transformers would import."""
    refs: list[tuple[str, str]] = []
    auto_map = data.get("auto_map")
    if isinstance(auto_map, dict):
        for auto, value in auto_map.items():
            for ref in value if isinstance(value, list) else [value]:
                if isinstance(ref, str) and ref:
                    refs.append((f"auto_map.{auto}", ref))
    elif isinstance(auto_map, list):  # older configs list bare class references
        refs += [("auto_map", ref) for ref in auto_map if isinstance(ref, str) and ref]
    pipelines = data.get("custom_pipelines")
    if isinstance(pipelines, dict):
        for task, spec in pipelines.items():
            impl = spec.get("impl") if isinstance(spec, dict) else None
            if isinstance(impl, str) and impl:
                refs.append((f"custom_pipelines.{task}", impl))
    return refs


def module_file(ref: str) -> tuple[str | None, str]:
    """(other repository or None, module file name) of a class reference."""
    repo, sep, local = ref.rpartition("--")
    module = local.rsplit(".", 1)[0] if "." in local else local
    return (repo if sep else None), module.replace(".", "/") + ".py"


def _judge_code(refs: list[tuple[str, str]], source: Source, ctx: ScanContext, root: Node) -> None:
    group = root.child(GROUP, f"custom code references ({len(refs)})")
    on_disk = source.member is None and source.path is not None
    folder = (os.path.dirname(source.path) or ".") if on_disk and source.path is not None else None
    shipped = _python_files(folder) if folder is not None else []
    present: list[str] = []
    missing: list[str] = []
    other_repos: list[str] = []
    for where, ref in refs:
        repo, file = module_file(ref)
        node = group.child(METADATA, f"{safe_text(where, 80)} → {safe_text(ref, 160)}",
                           attrs={"module_file": safe_text(file, 160)})
        if repo is not None:
            other_repos.append(f"{ref} (from {repo})")
            node.attrs["repository"] = safe_text(repo, 160)
        elif folder is not None and _inside(folder, file):
            present.append(file)
        else:
            missing.append(file)
    names = ", ".join(safe_text(n, 80) for n in dict.fromkeys(present + shipped))
    local = [r for _, r in refs if "--" not in r]
    if present or (shipped and local):
        ctx.report(RemoteCode, f"the config names custom classes ({_list(local)}) and the folder "
                   f"ships Python files ({names}): that code runs under trust_remote_code=True",
                   node=group, offset=0)
    if other_repos:
        ctx.report(RemoteCode, f"the config loads code from another repository ({_list(other_repos)}): it "
                   "is fetched and run under trust_remote_code=True and was not inspected",
                   node=group, offset=0)
    if missing and not present and not shipped and not other_repos:
        where = "next to this config" if folder is not None else "visible (the config sits in a container)"
        ctx.report(RemoteCodeNotShipped, f"the config names custom code ({_list(missing)}) that is not "
                   f"{where}: loading needs it, and it was not inspected", node=group, offset=0)


def _python_files(folder: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(folder) if name.endswith(".py"))
    except OSError:
        return []


def _inside(folder: str, module_file: str) -> bool:
    parts = [p for p in module_file.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return False
    return os.path.isfile(os.path.join(folder, *parts))


def _list(items: Any, limit: int = 6) -> str:
    values = list(dict.fromkeys(items))
    shown = ", ".join(safe_text(v, 100) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _check_templates(data: dict[str, Any], ctx: ScanContext, root: Node) -> None:
    value = data.get("chat_template")
    templates: list[tuple[str, str]] = []
    if isinstance(value, str):
        templates.append(("chat_template", value))
    elif isinstance(value, list):  # named templates: [{"name": "tool_use", "template": "..."}]
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                templates.append((f"chat_template.{item.get('name', '?')}", item["template"]))
    if not templates:
        return
    from airlock.core.templates import analyze_template

    for label, text in templates:
        node = root.child(TEMPLATE, safe_text(label, 120), attrs={"size": len(text)})
        analyze_template(text, ctx, node)
