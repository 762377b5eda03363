"""Files a loader runs because of their name and the folder they sit in, whatever their content.

Not a format (it is not in the registry): `scan.scan_source` calls `check_shipped_code()` after a
`*.py` file on disk was parsed by whatever format its content is, and `chat_template.check_by_name()`
for a `*.jinja` (which asks `is_named_template()` here).

- Python files shipped with a model. A folder is a model folder when it holds a `config.json`
  with `model_type` or `auto_map`, a `hubconf.py`, or weights at its top level. Every `*.py` in it
  (or up to two folders below: `custom_generate/generate.py`) runs under some loader: transformers
  imports the modules `auto_map` / `custom_pipelines` name under `trust_remote_code=True` (and
  whatever they import), `custom_generate/generate.py` replaces `generate()`, `torch.hub.load` runs
  `hubconf.py`, Inference Endpoints run `handler.py`. Medium (MF003); high (MF001) when a config of
  the folder names the file. The code itself is judged by the Python-source format when there is
  one; this check only says that a loader runs it.
- Chat templates by name: transformers renders `chat_template.jinja` (and the `*.jinja` of
  `additional_chat_templates/`) by name, so such a file is analysed as a template even when its
  content sniffed as something else; the content's own format is still reported (a name adds
  checks, it never replaces the verdict of the content).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.findings import Rule, Severity
from airlock.core.formats.model_folder import HF_CONFIG_NAMES, RemoteCode, code_references, module_file
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import Node


class ShippedCode(Rule):
    id = "MF003"
    severity = Severity.MEDIUM
    title = "Python code shipped with a model"
    help = ("A *.py file in a model folder, or inside a model archive (tar, NeMo, 7z, zip), runs under some "
            "loader (transformers with trust_remote_code=True, torch.hub.load for hubconf.py, custom "
            "inference handlers): review it as part of the model.")


WEIGHT_EXTENSIONS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".keras",
                     ".msgpack", ".pkl", ".pickle", ".joblib", ".nemo", ".npz", ".pt2", ".tflite")
LEVELS_UP = 2  # custom_generate/generate.py, additional_chat_templates/x.jinja: one level is real
MAX_LISTING = 10_000  # names looked at per folder
MAX_CONFIG_BYTES = 16 * 1024**2  # real configs are KiB; tokenizer.json is not read here
TEMPLATE_NAME = "chat_template.jinja"


class Folder:
    """What a folder says about the files in it: why it is a model folder, and which files its
    configs name as code."""

    __slots__ = ("reasons", "references", "weights_only")

    def __init__(self, reasons: list[str], references: dict[str, str], weights_only: bool = False) -> None:
        self.reasons = reasons  # empty: not a model folder
        self.references = references  # module file (relative, "/"-separated) → which config names it
        # Only weights say so (no model config, no hubconf.py): enough for the files right beside them,
        # too weak for sub-folders — a repository with a checkpoint at its root is not a model
        # folder for every src/*.py below it.
        self.weights_only = weights_only


def check_shipped_code(source: Source, ctx: ScanContext, root: Node) -> None:
    """A *.py file on disk: whether a model folder at or above it makes a loader run it."""
    if source.path is not None and source.member is None:
        _shipped_code(source.path, ctx, root)


def check_archive_code(ctx: ScanContext, code: list[tuple[str, Node]], names: list[str]) -> None:
    """`*.py` members of an archive (tar, NeMo, 7z, zip): never the user's own code, but code shipped inside
    a model artifact, which whatever extracts and loads it may import (a TorchServe or Inference Endpoints
    handler, hubconf.py, the modules trust_remote_code imports). Medium (MF003), naming the model files
    beside it; the code itself was judged by the Python-source format."""
    if not code:
        return
    all_models = [n for n in names if n.lower().endswith(WEIGHT_EXTENSIONS) or
                  os.path.basename(n) in ("config.json", "hubconf.py")]
    for name, node in code:
        models = [n for n in all_models if n != name]
        beside = (f" beside {safe_text(models[0], 80)}" + (f" and {len(models) - 1:,} more model file(s)"
                                                           if len(models) > 1 else "")) if models else ""
        base = os.path.basename(name)
        if base == "hubconf.py":
            runner = _runner(base)
        elif base == "handler.py":
            runner = ("serving frameworks (TorchServe, Hugging Face Inference Endpoints) run it as the "
                      "model's handler")
        else:
            runner = ("whatever extracts the archive and imports it runs it (a serving handler, the modules "
                      "trust_remote_code imports, a hub loader)")
        member = f"{node.member}!{name}" if node.member else name  # where the finding points: the member
        ctx.report(ShippedCode, f"{safe_text(name, 120)} is Python code shipped inside this archive{beside}: "
                   f"{runner}", node=node, member=member, offset=0)


def is_named_template(source: Source) -> bool:
    """A file transformers renders by its name: chat_template.jinja anywhere, *.jinja next to a model or
    inside a model archive (extracted beside the model: `additional_chat_templates/*.jinja`)."""
    name = os.path.basename(source.member or source.name)
    if name == TEMPLATE_NAME:
        return True
    if not name.endswith(".jinja"):
        return False
    if source.member is not None:
        return True
    if source.path is None:
        return False
    return model_root(os.path.dirname(os.path.abspath(source.path))) is not None


def model_root(folder: str) -> tuple[str, Folder] | None:
    """The nearest model folder at or up to LEVELS_UP above `folder`."""
    for level in range(LEVELS_UP + 1):
        facts = _folder(folder)
        if facts.reasons and (level == 0 or not facts.weights_only):
            return folder, facts
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


def _shipped_code(path: str, ctx: ScanContext, root: Node) -> None:
    found = model_root(os.path.dirname(os.path.abspath(path)))
    if found is None:
        return
    folder, facts = found
    rel = os.path.relpath(os.path.abspath(path), folder).replace(os.sep, "/")
    why = "; ".join(facts.reasons[:3])
    named_by = facts.references.get(rel)
    if named_by is not None:
        ctx.report(RemoteCode, f"{named_by} names this file ({safe_text(rel, 120)}): transformers imports "
                   f"and runs it when the model is loaded with trust_remote_code=True (model folder: {why})",
                   node=root, offset=0)
        return
    ctx.report(ShippedCode, f"{safe_text(rel, 120)} is shipped with a model ({why}): {_runner(rel)}",
               node=root, offset=0)


def _runner(rel: str) -> str:
    if rel == "hubconf.py":
        return "torch.hub.load runs it when the model is loaded from this repository"
    if rel == "handler.py":
        return "Hugging Face Inference Endpoints run it as the model's custom handler"
    if rel == "custom_generate/generate.py":
        return ("transformers runs it in place of generate() when the model is loaded with "
                "trust_remote_code=True")
    return ("it runs if loaded with trust_remote_code=True (remote code imports its neighbours) or by "
            "the hub loader that ships it")


def _folder(folder: str) -> Folder:
    try:
        stamp = os.stat(folder).st_mtime_ns
    except OSError:
        return Folder([], {})
    return _folder_facts(folder, stamp)


@functools.lru_cache(maxsize=64)
def _folder_facts(folder: str, stamp: int) -> Folder:
    """Read once per folder (and again only when the folder changes): a scan of a repository with
    thousands of .py files reads its configs once."""
    try:
        with os.scandir(folder) as entries:
            names = []
            for entry in entries:
                names.append(entry.name)
                if len(names) >= MAX_LISTING:
                    break
    except OSError:
        return Folder([], {})
    reasons: list[str] = []
    configs = {name: _read_json(os.path.join(folder, name)) for name in names if name in HF_CONFIG_NAMES}
    config = configs.get("config.json")
    if isinstance(config, dict):
        keys = [k for k in ("model_type", "auto_map") if k in config]
        if keys:
            reasons.append(f"config.json with {' and '.join(keys)}")
    if "hubconf.py" in names:
        reasons.append("hubconf.py")
    weights = sorted(n for n in names if n.lower().endswith(WEIGHT_EXTENSIONS))
    if weights:
        reasons.append(f"weights at its top level ({safe_text(weights[0], 80)}"
                       f"{f' and {len(weights) - 1} more' if len(weights) > 1 else ''})")
    references: dict[str, str] = {}
    for config_name, data in sorted(configs.items()):
        if not isinstance(data, dict):
            continue
        for where, ref in code_references(data):
            repo, file = module_file(ref)
            if repo is None:
                references.setdefault(file, f"{config_name} {safe_text(where, 80)} ({safe_text(ref, 120)})")
    return Folder(reasons, references, weights_only=bool(weights) and len(reasons) == 1)


def _read_json(path: str) -> Any:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            return None
        return json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
