"""Which globals are harmless, which are gadgets: data in `airlock.resources/policy/`, read here.

Allowlist first: a name proven harmless is safe. Then the denylist (a module prefix or an exact
name, with the reason shown to the user). Everything else is "unknown" and is rated by the
machine's rules (class rebuilt → medium, function called → high).
"""

from __future__ import annotations

import functools
import json
import os
from typing import NamedTuple

from airlock.core.errors import PolicyMissing
from airlock.core.findings import Severity

SAFE = "safe"
DENIED = "denied"
UNKNOWN = "unknown"

# Attribute walks through these reach interpreter internals from any object.
DANGEROUS_DUNDERS = frozenset({
    "__builtins__", "__globals__", "__dict__", "__class__", "__subclasses__", "__bases__",
    "__base__", "__mro__", "__code__", "__import__", "__getattribute__", "__getattr__",
    "__init__", "__loader__", "__spec__", "__closure__", "__func__", "__self__", "__reduce__",
    "__reduce_ex__", "__setstate__", "__call__", "__module__", "__kwdefaults__", "__defaults__",
})


# A walk that ends at one of these reaches a command or code runner, whatever it walked through.
DANGEROUS_LEAVES = frozenset({
    "system", "popen", "popen2", "popen3", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
    "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "execl", "execle", "execlp",
    "execlpe", "execv", "execve", "execvp", "execvpe", "fork", "forkpty", "getoutput",
    "getstatusoutput", "check_output", "check_call", "Popen", "eval", "exec", "execfile", "compile",
    "import_module", "urlopen", "urlretrieve", "rmtree", "unlink", "remove", "removedirs", "rmdir",
    "write_text", "write_bytes", "run_path", "run_module", "interact", "breakpoint", "resolve_name",
    "locate", "create_subprocess_shell", "create_subprocess_exec", "startfile", "kill", "killpg",
})


class Verdict(NamedTuple):
    kind: str  # SAFE | DENIED | UNKNOWN
    reason: str = ""
    severity: Severity = Severity.NONE


class Policy:
    def __init__(self, allow: dict[str, str], deny: dict[str, tuple[str, Severity]]) -> None:
        self.allow = allow
        self.deny = deny

    def classify(self, module: str, name: str) -> Verdict:
        full = f"{module}.{name}" if name else module
        reason = self.allow.get(full)
        if reason is not None:
            return Verdict(SAFE, reason)
        hit = self._deny_match(full)
        if hit is not None:
            return hit
        parts = full.split(".")
        # Protocol 4 dotted names walk attributes: `logging` + `os.system` is os.system. Check every
        # tail of the walk that starts after the module, and any dunder on the way.
        name_parts = name.split(".")
        for part in name_parts:
            if part in DANGEROUS_DUNDERS:
                return Verdict(DENIED, f"walks attribute {part}, which reaches interpreter internals",
                               Severity.CRITICAL)
        if len(name_parts) > 1:
            for i in range(1, len(parts) - 1):
                tail = ".".join(parts[i:])
                hit = self._deny_match(tail)
                if hit is None and parts[i].startswith("_"):
                    # Modules keep private aliases of what they import (tempfile._os, ..._subprocess).
                    tail = ".".join([parts[i].lstrip("_"), *parts[i + 1 :]])
                    hit = self._deny_match(tail)
                if hit is not None:
                    return Verdict(DENIED, f"attribute walk reaches {tail}: {hit.reason}", hit.severity)
            if name_parts[-1] in DANGEROUS_LEAVES:
                return Verdict(DENIED, f"attribute walk ends at {name_parts[-1]}, a function that runs "
                               "commands or code or deletes files", Severity.CRITICAL)
        return Verdict(UNKNOWN)

    def _deny_match(self, full: str) -> Verdict | None:
        probe = full
        while True:
            entry = self.deny.get(probe)
            if entry is not None:
                return Verdict(DENIED, entry[0], entry[1])
            cut = probe.rfind(".")
            if cut < 0:
                return None
            probe = probe[:cut]

    def is_safe(self, dotted: str) -> bool:
        return dotted in self.allow


def read_policy_text(name: str) -> str:
    """resources/policy/<name>, read through the package's own loader, as importlib.resources does
    for a regular package (wheel, editable install, frozen app), without importing it: its zipfile,
    tempfile and pathlib imports were ~12 ms of every scan's start-up, measured."""
    import airlock.resources as package

    get_data = getattr(package.__spec__.loader if package.__spec__ else None, "get_data", None)
    folder = os.path.dirname(package.__file__ or "")
    if get_data is None or not folder:  # an unusual loader: the general (slower) way
        from importlib import resources

        return resources.files("airlock.resources").joinpath("policy", name).read_text("utf-8")
    data: bytes = get_data(os.path.join(folder, "policy", name))
    return data.decode("utf-8")


def _read_json(name: str) -> dict[str, object]:
    try:
        text = read_policy_text(name)
    except (FileNotFoundError, ModuleNotFoundError, OSError) as exc:
        raise PolicyMissing(
            f"policy data {name} is missing from airlock.resources ({exc}); refusing to scan "
            "without it: reinstall Airlock") from None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise PolicyMissing(f"policy data {name} is not a JSON object")
    return data


@functools.cache
def load_policy() -> Policy:
    allow_data = _read_json("allowlist.json")
    deny_data = _read_json("denylist.json")
    allow = {str(e["name"]): str(e["reason"]) for e in allow_data["entries"]}  # type: ignore[attr-defined]
    deny = {
        str(e["prefix"]): (str(e["reason"]), Severity.parse(str(e.get("severity", "critical"))))
        for e in deny_data["entries"]  # type: ignore[attr-defined]
    }
    if not allow or not deny:
        raise PolicyMissing("policy data is empty; refusing to scan")
    return Policy(allow, deny)


def extend_allowlist(extra: dict[str, str]) -> None:
    """Add globals a user's policy file allows (name → reason naming the policy entry) to this
    process's allowlist. airlock.core.policy_file refuses names on the denylist before this."""
    load_policy().allow.update(extra)
