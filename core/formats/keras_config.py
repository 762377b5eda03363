"""Keras model configs (the `model_config` attribute of an .h5, `config.json` of a .keras), judged.

Keras rebuilds every `{"class_name", "module", "registered_name", "config"}` dict it meets by
importing `module` and fetching the name: a config is a list of imports and calls. The walk
below visits every dict at any depth (wrappers such as TimeDistributed/Bidirectional, nested
models, functional graphs, compile configs) and rates what each one would import.
Lambda code is base64 of a marshalled code object: it is measured and its readable names listed,
never unmarshalled. Every other string is handed to keras_values: encoded serialized objects
(TorchModuleWrapper's torch.save blob) are scanned as nested files, and paths and URLs in layer
arguments are judged against the archive's members.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.findings import Rule, Severity
from airlock.core.formats.keras_values import ARGUMENT_KEYS, MIN_BLOB_CHARS, judge_path, scan_blob
from airlock.core.pickle.policy import DENIED, load_policy
from airlock.core.text import safe_text
from airlock.core.tree import LAYER, Node

KERAS_PACKAGES = ("keras", "tf_keras", "keras_hub", "keras_cv", "keras_nlp", "tensorflow.keras",
                  "tensorflow.python.keras")
# Keras' own functions that download, overwrite or turn safe mode off (CVE-2025-1550 and
# its successors reach them through a config); the denylist names their public paths, these
# catch the keras.src.* spellings too.
KERAS_GADGETS = frozenset({"get_file", "enable_unsafe_deserialization", "load_model", "load_weights",
                           "save_model", "model_from_json", "model_from_yaml", "save_weights", "set_value"})
_NAMES = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]{2,63}")
_MAX_CODE = 16 * 1024 * 1024


class LambdaLayer(Rule):
    id = "KRS001"
    severity = Severity.CRITICAL
    title = "Lambda layer or code object in a Keras config"
    help = "Keras rebuilds a Lambda by unmarshalling Python bytecode from the config: it runs code."


class DangerousReference(Rule):
    id = "KRS002"
    severity = Severity.CRITICAL
    title = "Keras config names a dangerous function"
    help = "The config makes Keras import a denylisted module or a known gadget (file download, "\
        "overwrite, unsafe deserialization)."


class NonKerasModule(Rule):
    id = "KRS003"
    severity = Severity.HIGH
    title = "Keras config imports a non-Keras module"
    help = "Keras imports the named module and fetches the object: any function it names can run."


class CustomObject(Rule):
    id = "KRS004"
    severity = Severity.MEDIUM
    title = "Custom registered Keras object"
    help = "Loading needs a custom class registered by third-party code (`package>Name`)."


def is_keras_module(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in KERAS_PACKAGES)


class ConfigWalker:
    """Walks one parsed config and reports; builds LAYER nodes for every serialized object."""

    def __init__(self, ctx: ScanContext, where: str, *, members: frozenset[str] | None = None,
                 member: str | None = None) -> None:
        self.ctx = ctx
        self.where = where
        self.members = members  # the archive's member names (None for an .h5: no archive)
        self.member = member  # where the config itself lives, for nested sources decoded from it
        self.policy = load_policy()
        self.objects = 0
        self.code_strings: set[int] = set()  # Lambda code, measured by _lambda, not a blob to decode
        self.torch_wrappers: set[int] = set()  # config dicts of TorchModuleWrapper layers

    def walk(self, value: Any, parent: Node) -> None:
        handled: set[int] = set()
        stack: list[tuple[Any, Node, str]] = [(value, parent, "")]
        while stack:
            self.ctx.tick(1024)
            item, node, path = stack.pop()
            if isinstance(item, list):
                for i, v in enumerate(item):
                    if isinstance(v, str) and len(v) >= MIN_BLOB_CHARS:  # a list element is only a blob
                        self._string("", v, item, node, f"{path}[{i}]")
                stack.extend((v, node, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
                continue
            if not isinstance(item, dict):
                continue
            here = node
            if isinstance(item.get("class_name"), str) and id(item) not in handled:
                here = self._object(item, node, path, handled)
            for key, child in reversed(list(item.items())):
                where = f"{path}.{key}" if path else str(key)
                if isinstance(child, dict | list):
                    stack.append((child, here, where))
                elif isinstance(child, str) and isinstance(key, str) and (
                        len(child) >= MIN_BLOB_CHARS or key in ARGUMENT_KEYS or "://" in child):
                    self._string(key, child, item, here, where)

    def _string(self, key: str, value: str, container: Any, node: Node, path: str) -> None:
        if id(value) in self.code_strings:
            return
        where = f"{self.where} at {safe_text(path, 120)}"
        member = f"{self.member}#{path}" if self.member else path
        torch_wrapper = key == "module" and id(container) in self.torch_wrappers
        if scan_blob(value, where, self.ctx, node, member, torch_wrapper):
            return
        if key:
            judge_path(key, value, where, self.ctx, node, self.members)

    def _object(self, obj: dict[str, Any], parent: Node, path: str, handled: set[int]) -> Node:
        self.objects += 1
        cls = obj["class_name"]
        raw_module, raw_registered = obj.get("module"), obj.get("registered_name")
        module = raw_module if isinstance(raw_module, str) else None
        registered = raw_registered if isinstance(raw_registered, str) else None
        inner = obj.get("config")
        raw_name = inner.get("name") if isinstance(inner, dict) else None
        name = raw_name if isinstance(raw_name, str) else ""
        label = f"{safe_text(cls, 80)} {safe_text(name, 80)}".strip()
        attrs: dict[str, Any] = {"class_name": safe_text(cls)}
        if module is not None:
            attrs["module"] = safe_text(module)
        if registered is not None:
            attrs["registered_name"] = safe_text(registered)
        node = parent.child(LAYER, label, attrs=attrs)
        where = f"{self.where} at {safe_text(path, 120) or 'the top'}"
        if cls.rsplit(".", 1)[-1] == "Lambda" or cls == "__lambda__":
            self._lambda(obj, inner, node, where, handled)
            return node
        if cls == "TFOpLambda" or cls == "SlicingOpLambda":
            self._tf_op(inner, node, where)
        if cls.rsplit(">", 1)[-1] == "TorchModuleWrapper" and isinstance(inner, dict):
            self.torch_wrappers.add(id(inner))
        self._judge(cls, module, registered, inner, node, where)
        return node

    def _judge(self, cls: str, module: str | None, registered: str | None, inner: Any, node: Node,
               where: str) -> None:
        target = inner if cls == "function" and isinstance(inner, str) else cls
        dotted = [f"{module}.{target}"] if module else []
        if "." in target:
            dotted.append(target)
        if registered and ">" not in registered and registered != target and module:
            dotted.append(f"{module}.{registered}")
        for full in dotted:
            mod, _, attr = full.rpartition(".")
            verdict = self.policy.classify(mod, attr)
            gadget = attr in KERAS_GADGETS and is_keras_module(mod)
            if verdict.kind == DENIED or gadget:
                why = verdict.reason if verdict.kind == DENIED else "a Keras function that downloads, "\
                    "overwrites or turns off safe mode"
                self.ctx.report(DangerousReference, f"{where}: the config makes Keras import "
                                f"{safe_text(full, 160)} ({why})", node=node)
                return
        if registered and ">" in registered:
            self.ctx.report(CustomObject, f"{where}: custom object {safe_text(registered, 120)!r}"
                            f"{' from module ' + repr(safe_text(module, 120)) if module else ''} needs "
                            "third-party code registered before loading", node=node)
        elif module and not is_keras_module(module):
            self.ctx.report(NonKerasModule, f"{where}: the config makes Keras import "
                            f"{safe_text(module, 120)} and fetch {safe_text(target, 120)!r}", node=node)
        elif not module and ">" in cls:
            self.ctx.report(CustomObject, f"{where}: custom object {safe_text(cls, 120)!r} needs "
                            "third-party code registered before loading", node=node)

    def _tf_op(self, inner: Any, node: Node, where: str) -> None:
        # tf.keras' TFOpLambda calls the TensorFlow API function its config names.
        fn = inner.get("function") if isinstance(inner, dict) else None
        if not isinstance(fn, str):
            return
        mod, _, attr = f"tensorflow.{fn}".rpartition(".")
        verdict = self.policy.classify(mod, attr)
        if verdict.kind == DENIED:
            self.ctx.report(DangerousReference, f"{where}: TFOpLambda calls tf.{safe_text(fn, 120)} "
                            f"({verdict.reason})", node=node)

    def _lambda(self, obj: dict[str, Any], inner: Any, node: Node, where: str, handled: set[int]) -> None:
        code, detail = _lambda_code(obj, inner, handled, self.code_strings)
        if code is not None:
            names = readable_names(code)
            node.attrs["code_bytes"] = len(code)
            node.attrs["names"] = safe_text(", ".join(names[:40]), 400)
            detail = f"{len(code):,} bytes of marshalled Python bytecode"
            if names:
                detail += f" naming {safe_text(', '.join(names[:12]), 240)}"
        name = inner.get("name") if isinstance(inner, dict) else None
        shown = f" {safe_text(name, 80)!r}" if isinstance(name, str) else ""
        self.ctx.report(LambdaLayer, f"{where}: {safe_text(obj['class_name'], 40)}{shown} runs Python code "
                        "when the model loads "
                        f"({detail})", node=node)


# marshal type codes of strings (FLAG_REF, 0x80, may be set): short ASCII (1-byte length) and
# ASCII / Unicode (4-byte length). Only the bytes are read; nothing is unmarshalled.
_SHORT_STR = frozenset(b"zZ")
_LONG_STR = frozenset(b"aAu")


def readable_names(code: bytes, limit: int = 60) -> list[str]:
    """Identifier-like strings stored in marshalled bytecode (names, constants, file name)."""
    names: dict[str, None] = {}
    i = 0
    while i < len(code) - 1 and len(names) < limit:
        kind = code[i] & 0x7F
        if kind in _SHORT_STR:
            size, start = code[i + 1], i + 2
        elif kind in _LONG_STR and i + 5 <= len(code):
            size, start = int.from_bytes(code[i + 1 : i + 5], "little"), i + 5
        else:
            i += 1
            continue
        raw = code[start : start + size]
        if 0 < size <= 200 and len(raw) == size and raw.isascii() and raw.decode("ascii").isprintable():
            names.setdefault(raw.decode("ascii"))
            i = start + size
        else:
            i += 1
    if not names:  # not the marshal layout we know: fall back to printable runs
        names = dict.fromkeys(m.decode("ascii") for m in _NAMES.findall(code[: 1 << 20]))
    return list(names)[:limit]


def _lambda_code(obj: dict[str, Any], inner: Any, handled: set[int],
                 code_strings: set[int]) -> tuple[bytes | None, str]:
    """The marshalled code of a Lambda (Keras 2 list, Keras 3 `__lambda__` dict), undecoded."""
    if obj.get("class_name") == "__lambda__":
        fn: Any = obj
    else:
        fn = inner.get("function") if isinstance(inner, dict) else None
    if isinstance(fn, dict) and fn.get("class_name") != "__lambda__":
        # A named function, serialized like any object: judged on its own by the walk.
        return None, f"it calls the function {safe_text(str(fn.get('module')), 80)}."\
            f"{safe_text(str(fn.get('config')), 80)}"
    if isinstance(fn, dict):
        handled.add(id(fn))
        fn_config = fn.get("config")
        # Lambda.get_config() writes {"code": ...}; serialize_keras_object() {"value": [code, ...]}.
        fn = fn_config.get("code", fn_config.get("value")) if isinstance(fn_config, dict) else None
    if isinstance(fn, list) and fn:
        fn = fn[0]
    if isinstance(fn, str) and isinstance(inner, dict) and inner.get("function_type") == "function":
        module = inner.get("module")
        return None, f"it calls the function {safe_text(str(module), 80)}.{safe_text(fn, 80)}"
    if not isinstance(fn, str):
        return None, "its code could not be located in the config"
    code_strings.add(id(fn))
    if len(fn) > _MAX_CODE * 2:
        return None, f"{len(fn):,} characters of encoded code, too large to measure"
    try:
        return base64.b64decode(fn.encode("ascii", "replace"), validate=False), ""
    except (binascii.Error, ValueError):
        return None, "its code is not valid base64"
