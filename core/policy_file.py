"""The user's policy file: `airlock.toml`, `[tool.airlock]` in `pyproject.toml`, or `--policy FILE`.

Where it is looked up: `--policy FILE` when given (`--no-policy` for none); else the current folder
and then each parent folder up to the root, the first `airlock.toml`, or `pyproject.toml` holding a
`[tool.airlock]` table, wins. Never one inside a scanned folder or beside a scanned file, even when
the scan runs from there (`cd model && airlock scan .`): a downloaded model must not bring a policy
that waves itself through. Such a file is passed over with a warning and the lookup goes on upward.

Every key is in `KEYS` (top level) or `TABLES` (arrays of tables): later features add theirs there.
An unknown key or a bad value raises `PolicyError` naming the key, its table and its line (tomllib
gives no positions: the line is found by searching the text). Nothing a policy changes is silent:
`apply` marks each finding it suppressed or re-rated with the entry that did it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from airlock.core.errors import AirlockError
from airlock.core.findings import Severity

FILE_NAME = "airlock.toml"
SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
SHA256 = re.compile(r"[0-9a-f]{64}")


class PolicyError(AirlockError):
    """The policy file cannot be used; the message names the file, line, table and key."""


# Value checkers: each returns the normalised value or raises ValueError saying what it expected.

def _severity(value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() == "none":  # "none" would fail on every file
        raise ValueError("expected a severity name (critical, high, medium, low, info)")
    return Severity.parse(value).label


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
        if match is None or match.group(2).upper() not in SIZE_UNITS:
            raise ValueError("expected a size in bytes or with a unit (500MB, 2GiB)")
        number = int(float(match.group(1)) * SIZE_UNITS[match.group(2).upper()])
    else:
        raise ValueError("expected a size in bytes or with a unit (500MB, 2GiB)")
    if number <= 0:
        raise ValueError("expected a positive size")
    return number


MIN_MEMORY_BUDGET = 64 * 1024**2


def _memory(value: Any) -> int:
    # The budget is the scanning process's whole data limit (RLIMIT_DATA), its own interpreter and
    # parsers included: below this, Airlock itself fails (a traceback), not the file it scans.
    number = _size(value)
    if number < MIN_MEMORY_BUDGET:
        raise ValueError(f"expected at least 64MiB (the scanning process itself needs that), "
                         f"found {number:,} bytes")
    return number


def _seconds(value: Any) -> float:
    # `0 < value < inf` also refuses NaN, which compares false with everything (a budget never reached).
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise ValueError("expected a positive number of seconds")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def _rule_id(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{2,4}\d{3}", value):
        raise ValueError("expected a rule id such as PKL005 or AIR004")
    from airlock.core.rule_catalog import all_rules

    if value not in {rule.id for rule in all_rules()}:  # a typo would change nothing, silently
        raise ValueError(f"no rule is called {value} (docs/rules.md lists them)")
    return value


def _sha256(value: Any) -> str:
    if not isinstance(value, str) or not SHA256.fullmatch(value.lower()):
        raise ValueError("expected 64 hexadecimal digits")
    return value.lower()


def _glob(value: Any) -> str:
    return _text(value).replace("\\", "/")


def _global_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", value):
        raise ValueError("expected a dotted name module.name, such as mypackage.config.Settings")
    return value


def _formats(value: Any) -> list[str]:
    from airlock.core import formats

    known = {module.NAME for module in formats.load_all_modules()} | {"unknown"}
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of format names")
    bad = [v for v in value if v not in known]
    if bad:
        raise ValueError(f"unknown format {bad[0]!r} (known: {', '.join(sorted(known))})")
    return sorted(set(value))


# key → (checker, what it does). Issue-specific features extend these two tables.
KEYS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "fail-on": (_severity, "exit 1 when a file reaches this severity (the command line's --fail-on wins)"),
    "require-signature": (_bool, "an unsigned or unverified model folder is high in `airlock verify`"),
    "require-approved": (_bool, "`airlock scan` gates model files on an approval of their sha256 "
                                "(as --require-approved)"),
    "refuse-formats": (_formats, "files of these formats get a high finding"),
    "max-decompressed": (_size, "decompressed bytes per scanned file (Limits.max_decompressed_bytes)"),
    "max-header": (_size, "SafeTensors/GGUF/ONNX header bytes read into memory"),
    "memory-budget": (_memory, "resident memory per scanning worker"),
    "timeout": (_seconds, "time budget per file, in seconds (the command line's --timeout wins)"),
}
TABLES: dict[str, dict[str, tuple[Callable[[Any], Any], bool]]] = {
    # table → key → (checker, required)
    "allow-global": {"name": (_global_name, True), "reason": (_text, True)},
    "override": {"rule": (_rule_id, True), "severity": (_severity, True), "path": (_glob, False),
                 "sha256": (_sha256, False), "reason": (_text, True)},
    "suppress": {"rule": (_rule_id, True), "path": (_glob, False), "sha256": (_sha256, False),
                 "reason": (_text, True)},
}
LIMIT_KEYS = {"max-decompressed": "max_decompressed_bytes", "max-header": "max_header_bytes",
              "memory-budget": "memory_budget_bytes", "timeout": "time_budget_s"}


class UserPolicy:
    """A checked policy file. `settings` holds KEYS, `tables` the arrays of tables; every table entry
    keeps `where` ("airlock.toml:12") so that what it changes can point back at it."""

    def __init__(self, path: str | None, settings: dict[str, Any], tables: dict[str, list[dict[str, Any]]]):
        self.path = path
        self.settings = settings
        self.tables = tables
        self.folder = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    @property
    def needs_hashes(self) -> bool:
        return any("sha256" in e for name in ("override", "suppress") for e in self.tables.get(name, []))

    def canonical(self) -> dict[str, Any]:
        """The policy as data, without where it was written: what the digest covers."""
        tables = {name: [{k: v for k, v in e.items() if k != "where"} for e in entries]
                  for name, entries in self.tables.items() if entries}
        return {"settings": self.settings, "tables": tables}

    def limits(self, base: Any) -> Any:
        changes = {attr: self.settings[key] for key, attr in LIMIT_KEYS.items() if key in self.settings}
        return base.replace(**changes) if changes else base


EMPTY = UserPolicy(None, {}, {})


def find(start: str | None = None, scanned: Iterable[str] = ()) -> str | None:
    """The policy file for a run started in `start` (default: the current folder) over the `scanned`
    paths, or None. A policy file inside a scanned folder, or beside a scanned file, came with what is
    being scanned: it is passed over (see `brought_along`) and the search goes on upward."""
    inside = _scanned_folders(scanned)
    return next((path for path in _candidates(start) if not _within(path, inside)), None)


def brought_along(scanned: Iterable[str], start: str | None = None) -> list[str]:
    """Policy files the lookup passed over because they sit in or under a scanned folder or beside a
    scanned file: a downloaded model must not bring the policy that waves it through (`--policy FILE`
    still uses one on purpose). For the warning that says so."""
    inside = _scanned_folders(scanned)
    found = []
    for path in _candidates(start):
        if not _within(path, inside):
            break
        found.append(path)
    return found


def _candidates(start: str | None) -> Iterable[str]:
    """airlock.toml, or pyproject.toml with a [tool.airlock] table, in `start` and each folder above."""
    try:
        folder = os.path.abspath(start or os.getcwd())
    except OSError:  # the current folder was removed: there is nothing to look up from
        return
    while True:
        candidate = os.path.join(folder, FILE_NAME)
        if os.path.isfile(candidate):
            yield candidate
        else:
            pyproject = os.path.join(folder, "pyproject.toml")
            if os.path.isfile(pyproject) and _has_tool_table(pyproject):
                yield pyproject
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def _scanned_folders(scanned: Iterable[str]) -> list[str]:
    """The folders whose policy files a scan of these paths must not take: each scanned folder, and
    the folder of each scanned file (real paths: a symlink does not hide where a file sits)."""
    folders = []
    for path in scanned:
        if "://" in path:  # a URL: nothing on this disk came with it
            continue
        real = os.path.realpath(path)
        folders.append(real if os.path.isdir(real) else os.path.dirname(real))
    return folders


def _within(policy: str, folders: list[str]) -> bool:
    where = os.path.dirname(os.path.realpath(policy))
    return any(where == f or where.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _has_tool_table(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return re.search(r"^\s*\[\s*tool\s*\.\s*airlock\s*[\].]", fh.read(), re.MULTILINE) is not None
    except OSError:
        return False


def load(path: str) -> UserPolicy:
    """Read and check a policy file (airlock.toml, or pyproject.toml's [tool.airlock])."""
    import tomllib

    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror or exc}") from None
    text = raw.decode("utf-8", "replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    prefix = ""
    if name == "pyproject.toml":
        data = data.get("tool", {}).get("airlock", {})
        prefix = "tool.airlock"
        if not isinstance(data, dict):
            raise PolicyError(f"{path}: [tool.airlock] must be a table")
    return parse(data, path, text, prefix)


def parse(data: dict[str, Any], path: str, text: str = "", prefix: str = "") -> UserPolicy:
    shown_table = f"[{prefix}]" if prefix else "the top level"
    settings: dict[str, Any] = {}
    tables: dict[str, list[dict[str, Any]]] = {}
    for key, value in data.items():
        if key in TABLES:
            tables[key] = _parse_table(key, value, path, text, prefix)
            continue
        if key not in KEYS:
            known = ", ".join(sorted([*KEYS, *TABLES]))
            line = _line_of(text, prefix, None, key)
            raise PolicyError(f"{path}, line {line}: unknown key {key!r} in {shown_table} (known keys: "
                              f"{known})")
        try:
            settings[key] = KEYS[key][0](value)
        except ValueError as exc:
            line = _line_of(text, prefix, None, key)
            raise PolicyError(f"{path}, line {line}: bad value for {key!r} in {shown_table}: {exc}, "
                              f"found {value!r}") from None
    _check_allowed_globals(tables.get("allow-global", []), path)
    _check_critical_waivers(tables, path)
    return UserPolicy(path, settings, tables)


def _check_critical_waivers(tables: dict[str, list[dict[str, Any]]], path: str) -> None:
    """A critical rule (a dangerous call, a template escape…) is waived only for the file reviewed: a
    [[suppress]], or an [[override]] to a lower severity, of one must name it by sha256 or path. Without,
    it would wave through every file, the next hostile one included."""
    waivers = [(name, e) for name in ("suppress", "override") for e in tables.get(name, [])
               if "sha256" not in e and "path" not in e
               and (name == "suppress" or Severity.parse(e["severity"]) < Severity.CRITICAL)]
    if not waivers:
        return
    from airlock.core.rule_catalog import all_rules

    critical = {r.id for r in all_rules() if r.severity == Severity.CRITICAL}
    for name, entry in waivers:
        if entry["rule"] in critical:
            raise PolicyError(f"{path}: [[{name}]] at {entry['where']} waives {entry['rule']}, a critical "
                              "rule, for every file: name the file that was reviewed (sha256 = \"…\" or "
                              "path = \"…\")")


def _parse_table(name: str, value: Any, path: str, text: str, prefix: str) -> list[dict[str, Any]]:
    full = f"{prefix}.{name}" if prefix else name
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PolicyError(f"{path}, line {_line_of(text, prefix, None, name)}: {name!r} must be an "
                          f"array of tables "
                          f"([[{full}]])")
    spec = TABLES[name]
    entries = []
    for index, entry in enumerate(value):
        table_line = _line_of(text, full, index, None)
        checked: dict[str, Any] = {"where": f"{os.path.basename(path)}:{table_line}"}
        for key, item in entry.items():
            line = _line_of(text, full, index, key)
            if key not in spec:
                raise PolicyError(f"{path}, line {line}: unknown key {key!r} in [[{full}]] number "
                                  f"{index + 1} "
                                  f"(known keys: {', '.join(spec)})")
            try:
                checked[key] = spec[key][0](item)
            except ValueError as exc:
                raise PolicyError(f"{path}, line {line}: bad value for {key!r} in [[{full}]] number "
                                  f"{index + 1}: "
                                  f"{exc}, found {item!r}") from None
        for key, (_, required) in spec.items():
            if required and key not in checked:
                raise PolicyError(f"{path}, line {table_line}: [[{full}]] number {index + 1} lacks {key!r}")
        entries.append(checked)
    return entries


def _check_allowed_globals(entries: list[dict[str, Any]], path: str) -> None:
    from airlock.core.pickle.policy import DENIED, load_policy

    policy = load_policy()
    for entry in entries:
        module, _, attr = entry["name"].rpartition(".")
        verdict = policy.classify(module, attr)
        if verdict.kind == DENIED:
            raise PolicyError(f"{path}, line {entry['where'].rpartition(':')[2]}: [[allow-global]] "
                              f"{entry['name']!r} is "
                              f"on Airlock's denylist ({verdict.reason}): a policy cannot allow it; accept a "
                              "reviewed file's findings with [[suppress]] and its sha256 instead")


def _line_of(text: str, table: str, index: int | None, key: str | None) -> int:
    """The line where `key` is set in `table` (its `index`-th occurrence for an array of tables), or
    the table's header when `key` is None. 1 when the text does not show it (a dotted key)."""
    lines = text.splitlines()
    current, count, fallback = "", -1, 0
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")
    key_re = re.compile(r"^\s*(\"?)" + re.escape(key) + r"\1\s*=") if key else None
    for number, line in enumerate(lines, start=1):
        match = header.match(line)
        if match is not None:
            current = re.sub(r"\s*\.\s*", ".", match.group(1).replace('"', ""))
            if current == table:
                count += 1
                if key_re is None and (index is None or count == index):
                    return number
            continue
        if key_re is not None and key_re.match(line):
            fallback = fallback or number
            if current == table and (index is None or count == index):
                return number
    return fallback or 1


def resolve(explicit: str | None, disabled: bool = False, scanned: Iterable[str] = ()) -> UserPolicy:
    """The policy for a run: the given file, else the one found from the current folder up (never
    one that came with the `scanned` paths)."""
    if disabled:
        return EMPTY
    path = explicit if explicit is not None else find(scanned=scanned)
    if path is None:
        return EMPTY
    if explicit is not None and not os.path.exists(explicit):
        raise PolicyError(f"no such policy file: {explicit}")
    return load(path)


def install(policy: UserPolicy) -> None:
    """Make the policy's allowed globals part of the pickle allowlist of this process (and of the
    workers it forks), each with its reason and where it was allowed."""
    if policy.tables.get("allow-global"):
        from airlock.core.pickle.policy import extend_allowlist

        extend_allowlist({e["name"]: f"allowed by policy {e['where']}: {e['reason']}"
                          for e in policy.tables["allow-global"]})


# Every file of resources/policy/ (tests/test_policy_file.py keeps this list equal to the folder): each one
# decides verdicts (pickle globals, torch's weights-only set, Hydra targets, skops' trusted types, TF ops),
# so a change to any of them is a different policy for the locks and approvals that record the digest.
BUILTIN_DATA = ("allowlist.json", "denylist.json", "hydra_targets.json", "skops_trusted.json",
                "tf_builtin_ops.json", "torch_weights_only.json")


def digest(policy: UserPolicy) -> str:
    """SHA-256 of the canonical JSON of the effective policy: Airlock's built-in allow/deny data
    merged with the user's file. Locks, approvals and caches record it."""
    import hashlib
    import json

    from airlock.core.pickle.policy import read_policy_text

    builtin = {name: json.loads(read_policy_text(name)) for name in BUILTIN_DATA}
    effective = {"builtin": builtin, "user": policy.canonical()}
    canonical = json.dumps(effective, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


# Applying a policy to report entries (the JSON report's file dicts).

def _matches(entry: dict[str, Any], rule: str, file: dict[str, Any], folder: str) -> bool:
    if entry["rule"] != rule:
        return False
    if "sha256" in entry and file.get("sha256") != entry["sha256"]:
        return False
    if "path" in entry:
        return _path_matches(entry["path"], str(file["path"]), folder)
    return True


def _path_matches(pattern: str, path: str, folder: str) -> bool:
    import fnmatch

    shown = path.replace(os.sep, "/")
    candidates = [shown, shown.removeprefix("./")]
    try:
        rel = os.path.relpath(os.path.abspath(path), folder)
        if not rel.startswith(".."):
            candidates.append(rel.replace(os.sep, "/"))
    except ValueError:  # another drive (Windows)
        pass
    if "/" not in pattern:
        candidates.append(shown.rsplit("/", 1)[-1])
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return dict(entry)


def apply(policy: UserPolicy, files: Iterable[dict[str, Any]]) -> None:
    """Mark, in place, the findings the policy suppresses (`suppressed_by`: they stay in the report
    and no longer count toward the verdict) or re-rates (`overridden_by`, with the severity it had),
    add a high finding to files of a refused format, and recompute each file's severity."""
    from airlock.core.provenance.rules import FormatRefused

    suppress = policy.tables.get("suppress", [])
    override = policy.tables.get("override", [])
    refused = set(policy.get("refuse-formats", []))
    for file in files:
        if file.get("format") in refused:
            file["findings"].append({"rule": FormatRefused.id, "severity": FormatRefused.severity.label,
                                     "message": f"format {file['format']} is refused by the policy "
                                                f"({os.path.basename(policy.path or '')})",
                                     "offset": None, "member": None, "node": None})
        # A member is judged like a file: a refused pickle inside a zip, a tar or a .pkl.gz is refused too.
        for inner in sorted(refused.intersection(file.get("member_formats", ())) - {file.get("format")}):
            file["findings"].append({"rule": FormatRefused.id, "severity": FormatRefused.severity.label,
                                     "message": f"holds a member of format {inner}, which the policy refuses "
                                                f"({os.path.basename(policy.path or '')})",
                                     "offset": None, "member": None, "node": None})
        for finding in file["findings"]:
            for entry in override:
                if _matches(entry, finding["rule"], file, policy.folder):
                    finding["overridden_by"] = {**_public(entry), "was": finding["severity"]}
                    finding["severity"] = entry["severity"]
                    break
            for entry in suppress:
                if _matches(entry, finding["rule"], file, policy.folder):
                    finding["suppressed_by"] = _public(entry)
                    break
        counted = [Severity.parse(f["severity"]) for f in file["findings"] if "suppressed_by" not in f]
        file["severity"] = max(counted, default=Severity.NONE).label
