"""Hydra / OmegaConf configs: every `_target_` judged with the same callable policy as pickle globals.

`hydra.utils.instantiate(cfg)` imports the dotted name in `_target_` and calls it with the other keys as
arguments (`_args_` positional, `_partial_: true` wraps it in functools.partial for a later call), and
does so recursively for nested nodes: a config is a program. NeMo restores a `.nemo` this way, and also
imports `target` (no underscores) at the top of `model_config.yaml` (CVE-2025-23304). Lightning's
`hparams.yaml` is read with `yaml.full_load`/`unsafe_load` by some loaders, so Python tags
(`!!python/object/apply:os.system`) are judged too, and OmegaConf interpolations that call an `eval`
resolver (registered by many projects) are reported.

Verdicts: a denylisted name is critical, a name computed at load time (an interpolation) high, an
allowlisted one (pickle allowlist, or `resources/policy/hydra_targets.json` with a reason each) clean,
an unknown class medium, an unknown function high (it is called with the config's arguments).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.findings import Rule, Severity
from airlock.core.pickle.policy import DENIED, SAFE, load_policy, read_policy_text
from airlock.core.text import safe_text
from airlock.core.tree import CALL, Node

TARGET_KEYS = ("_target_",)
NEMO_TARGET_KEY = "target"  # NeMo's restore_from imports cfg.target (model_config.yaml, top level)
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_EVAL_RESOLVER = re.compile(r"\$\{\s*(eval|exec|python|py|lambda)\s*:")
# PyYAML's python tags that import (name, module) or call (object, object/new, object/apply) a name.
_PYTHON_TAG = "tag:yaml.org,2002:python/"
_CALLING_TAGS = ("object/apply:", "object/new:", "object:")
_NAMING_TAGS = ("name:", "module:")


class DangerousTarget(Rule):
    id = "HYD001"
    severity = Severity.CRITICAL
    title = "Config instantiates a dangerous callable"
    help = "A Hydra `_target_` (or NeMo `target`, or a YAML python tag) names a denylisted callable: "\
        "instantiating the config runs it (CVE-2025-23304 class)."


class UnknownFunctionTarget(Rule):
    id = "HYD002"
    severity = Severity.HIGH
    title = "Config calls an unknown function"
    help = "The config names a function (or a resolver) that is called with the config's arguments when "\
        "it is instantiated; it cannot be proven safe."


class ThirdPartyClassTarget(Rule):
    id = "HYD003"
    severity = Severity.MEDIUM
    title = "Config builds a third-party class"
    help = "Instantiating the config imports and builds a class outside Airlock's allowlist: loading needs "\
        "that package's code."


class ComputedTarget(Rule):
    id = "HYD004"
    severity = Severity.HIGH
    title = "Callable computed at load time"
    help = "The name to instantiate comes from an interpolation, or a value calls an eval-like resolver: "\
        "what runs is decided when the config is loaded."


class PythonTag(Rule):
    id = "HYD005"
    severity = Severity.HIGH
    title = "YAML python tag"
    help = "A `!!python/...` tag makes yaml.unsafe_load (and older full_load) import or call a name."


class Policy:
    """The pickle policy plus the Hydra allow/indirect prefixes."""

    def __init__(self) -> None:
        self.pickle = load_policy()
        data = json.loads(read_policy_text("hydra_targets.json"))
        self.allow = [(str(e["prefix"]), str(e["reason"])) for e in data["allow"]]
        self.indirect = [(str(e["prefix"]), str(e["reason"])) for e in data["indirect"]]

    def judge(self, dotted: str, *, called: bool) -> tuple[type[Rule] | None, str]:
        """(rule to report or None when allowed, why)."""
        parts = dotted.split(".")
        verdict = self.pickle.classify(parts[0], ".".join(parts[1:]))
        if verdict.kind == DENIED:
            if verdict.severity >= Severity.CRITICAL:
                return DangerousTarget, verdict.reason
            return UnknownFunctionTarget, verdict.reason
        if verdict.kind == SAFE:
            return None, verdict.reason
        for prefix, reason in self.indirect:
            if dotted == prefix or dotted.startswith(prefix + "."):
                return UnknownFunctionTarget, reason
        for prefix, reason in self.allow:
            if dotted.startswith(prefix):
                return None, reason
        if parts[-1][:1].isupper():
            return ThirdPartyClassTarget, "a class outside the allowlist: loading needs its package's code"
        if not called:
            return ThirdPartyClassTarget, "a name outside the allowlist: loading imports its package"
        return UnknownFunctionTarget, "a function outside the allowlist, called with the config's arguments"


@functools.cache
def policy() -> Policy:
    return Policy()


class Checker:
    """Judges the targets of one config document; findings attach under `root`."""

    def __init__(self, ctx: ScanContext, root: Node, *, nemo: bool = False) -> None:
        self.ctx = ctx
        self.root = root
        self.nemo = nemo  # also judge NeMo's top-level `target`
        self.policy = policy()
        self.targets = 0

    def target(self, value: Any, where: str, offset: int | None, *, key: str, partial: bool = False) -> None:
        self.targets += 1
        shown = safe_text(str(value), 200)
        node = self.root.child(CALL, f"{key}: {shown}", offset=offset, member=self.root.member,
                               attrs={"path": safe_text(where, 300), "partial": partial})
        if not isinstance(value, str):
            node.attrs["note"] = "not a name: Hydra imports strings only"
            return
        if "${" in value:
            self.ctx.report(ComputedTarget, f"{where}: {key} {shown!r} is an interpolation: the callable is "
                            "computed when the config is loaded", node=node, offset=offset)
            return
        name = value.strip()
        if not _DOTTED.match(name):
            node.attrs["note"] = "not a dotted name: Hydra cannot import it"
            return
        rule, reason = self.policy.judge(name, called=True)
        node.attrs["verdict"] = safe_text(reason, 200)
        if rule is None:
            return
        how = ("wrapped in functools.partial and called later" if partial
               else "called with the config's arguments")
        self.ctx.report(rule, f"{where}: {key} {name} is {how}: {safe_text(reason, 200)}", node=node,
                        offset=offset)

    def python_tag(self, tag: str, where: str, offset: int | None) -> None:
        suffix = tag[len(_PYTHON_TAG):]
        calling = suffix.startswith(_CALLING_TAGS)
        if not calling and not suffix.startswith(_NAMING_TAGS):
            return  # python/tuple, python/str...: plain data types
        name = suffix.split(":", 1)[1].strip()
        node = self.root.child(CALL, f"!!python/{safe_text(suffix, 200)}", offset=offset,
                               member=self.root.member, attrs={"path": safe_text(where, 300)})
        rule, reason = self.policy.judge(name, called=calling) if _DOTTED.match(name) else (PythonTag, "")
        does = " and calls it" if calling else ""
        if rule is DangerousTarget:
            self.ctx.report(rule, f"{where}: YAML tag !!python/{safe_text(suffix, 160)} imports {name}{does} "
                            f"under yaml.unsafe_load: {reason}", node=node, offset=offset)
        elif rule is not None:
            self.ctx.report(PythonTag if calling else ThirdPartyClassTarget,
                            f"{where}: YAML tag !!python/{safe_text(suffix, 160)}: yaml.unsafe_load imports "
                            f"{safe_text(name, 160)}{does} ({reason})", node=node, offset=offset)

    def scalar(self, value: str, where: str, offset: int | None) -> None:
        match = _EVAL_RESOLVER.search(value)
        if match is not None:
            node = self.root.child(CALL, f"${{{match.group(1)}:…}}", offset=offset, member=self.root.member,
                                   attrs={"path": safe_text(where, 300), "value": safe_text(value, 300)})
            resolver = match.group(1)
            self.ctx.report(UnknownFunctionTarget,
                            f"{where}: the interpolation {safe_text(value, 160)!r} calls the `{resolver}` "
                            "resolver, which runs Python in the projects that register it", node=node,
                            offset=offset)


# Plain data (JSON configs).


def check_json(value: Any, checker: Checker, raw: bytes) -> None:
    """Walk decoded JSON; offsets are found back in the raw bytes (JSON has no marks)."""
    for where, key, target, partial in _json_targets(value, checker):
        literal = json.dumps(target).encode() if isinstance(target, str) else None
        offset = raw.find(literal) if literal else -1
        checker.target(target, where, offset if offset >= 0 else None, key=key, partial=partial)


def _json_targets(value: Any, checker: Checker) -> Iterator[tuple[str, str, Any, bool]]:
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        checker.ctx.tick(256)
        item, where = stack.pop()
        if isinstance(item, dict):
            for key in TARGET_KEYS:
                if key in item:
                    yield where or "(top level)", key, item[key], item.get("_partial_") is True
            for k, v in item.items():
                if isinstance(v, dict | list):
                    stack.append((v, f"{where}.{k}" if where else str(k)))
                elif isinstance(v, str):
                    checker.scalar(v, f"{where}.{k}" if where else str(k), None)
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item) if isinstance(v, dict | list))
