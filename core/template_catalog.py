"""The catalogue of known chat templates (resources/templates/): exact matches, the closest family,
and the drift of a template from it as a unified diff.

Each entry names its family, the model it comes from, where the copy was taken and under which
licence. Entries whose licence allows redistribution keep their text (`<id>.jinja`); the others
(Llama, Gemma, Cohere, DeepSeek and Mistral research licences) keep only the SHA-256 of the
whitespace-normalised text, the hashes of their literals and a *skeleton*: one line per tag or
text run, keeping the statement keyword and the special tokens and replacing natural-language
text with a hash (`«text:1a2b3c4d»`), enough to show where a template drifts from the family.

Matching ignores whitespace (templates are re-indented and re-wrapped when copied between
tokenizer_config.json, GGUF and .jinja files). `known_literal` says whether a string literal
occurs in some catalogued template: the default system prompts of real templates ("You are Qwen,
created by Alibaba Cloud…", Llama 3.1's "Cutting Knowledge Date") stay info that way.

`python -m airlock.core.template_catalog build MANIFEST.json` rebuilds the catalogue from local
copies of the templates (the manifest lists each file with its source and licence).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import sys
from typing import Any

from airlock.core.template_literals import SPECIAL_TOKEN, TEXT, classify

CATALOG_FILE = "catalog.json"
SKELETON_VERSION = 1
MAX_DRIFT_CHARS = 256 * 1024  # longer templates are matched by hash only
MAX_DRIFT_LINES = 4000
CLOSE_ENOUGH = 0.35  # share of skeleton lines in common before a family counts as "closest"
DIFF_CONTEXT = 2
MAX_DIFF_LINES = 120

_PARTS = re.compile(r"(\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\})", re.S)
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)
_KEYWORD = re.compile(r"\{%-?\+?\s*(\w+)")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _SPACE.sub("", text)


def digest(text: str) -> str:
    return hashlib.sha256(normalize(text).encode("utf-8", "surrogatepass")).hexdigest()


def literal_hash(literal: str) -> str | None:
    """Short hash of a literal, whitespace removed; None for whitespace-only literals."""
    norm = normalize(literal)
    return hashlib.sha256(norm.encode("utf-8", "surrogatepass")).hexdigest()[:24] if norm else None


def template_lines(text: str) -> list[str]:
    """One line per tag or text run, whitespace collapsed, comments dropped: the unit of a diff."""
    lines = []
    for part in _PARTS.split(text):
        if not part or part.startswith("{#"):
            continue
        shown = " ".join(part.split())
        if shown:
            lines.append(shown)
    return lines


def _skeleton_text(raw: str) -> str:
    out = []
    last = 0
    for m in SPECIAL_TOKEN.finditer(raw):
        out.append(_skeleton_words(raw[last:m.start()]))
        out.append(m.group())
        last = m.end()
    out.append(_skeleton_words(raw[last:]))
    return "".join(out)


def _skeleton_words(part: str) -> str:
    if classify(part.replace("\\n", "\n")) != TEXT:
        return part
    return f"«text:{hashlib.sha256(normalize(part).encode('utf-8', 'surrogatepass')).hexdigest()[:8]}»"


def skeleton_line(line: str) -> str:
    """A template line reduced to its structure: keyword, special tokens, hashed prose."""
    if line.startswith("{%"):
        m = _KEYWORD.match(line)
        head = "{%" + ("-" if line.startswith("{%-") else "") + f" {m.group(1) if m else '?'}"
        literals = " ".join(_skeleton_text(s) for s in _STRING.findall(line))
        return f"{head} {literals} %}}".replace("  ", " ")
    if line.startswith("{{"):
        literals = " ".join(_skeleton_text(s) for s in _STRING.findall(line))
        return f"{{{{ {literals} }}}}".replace("  ", " ")
    return _skeleton_text(line)


def skeleton_lines(text: str) -> list[str]:
    return [skeleton_line(line) for line in template_lines(text)]


# The catalogue


class Entry:
    __slots__ = ("family", "file", "id", "licence", "literals", "model", "origin", "sha256", "skeleton",
                 "source", "stored")

    def __init__(self, data: dict[str, Any]) -> None:
        self.id = str(data["id"])
        self.family = str(data["family"])
        self.model = str(data.get("model", ""))
        self.origin = str(data.get("origin", ""))
        self.source = str(data["source"])
        self.licence = str(data["licence"])
        self.stored = str(data["stored"])  # "text" or "hash+skeleton"
        self.file = data.get("file")
        self.sha256 = str(data["sha256"])
        self.literals = frozenset(str(h) for h in data.get("literals", ()))
        self.skeleton = [str(s) for s in data.get("skeleton", ())]

    def text(self) -> str | None:
        return _read_resource(self.file) if self.file else None


class Catalog:
    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.by_hash: dict[str, Entry] = {}
        self.families: dict[str, str] = {}  # hash → every family that ships it ("Llama 3.1 / Llama 3.3")
        for e in entries:
            self.by_hash.setdefault(e.sha256, e)
            names = self.families.get(e.sha256)
            self.families[e.sha256] = e.family if names is None or e.family in names.split(" / ") \
                else f"{names} / {e.family}"
        self.literals = frozenset(h for e in entries for h in e.literals)
        self._skeleton_sets = [frozenset(e.skeleton) for e in entries]

    def exact(self, text: str) -> Entry | None:
        return self.by_hash.get(digest(text))

    def known_literal(self, literal: str) -> bool:
        h = literal_hash(literal)
        return h is not None and h in self.literals

    def closest(self, skeleton: list[str]) -> tuple[Entry, float] | None:
        mine = frozenset(skeleton)
        if not mine:
            return None
        best: tuple[Entry, float] | None = None
        for entry, theirs in zip(self.entries, self._skeleton_sets, strict=True):
            score = len(mine & theirs) / len(mine | theirs) if theirs else 0.0
            if best is None or score > best[1]:
                best = (entry, score)
        return best if best is not None and best[1] >= CLOSE_ENOUGH else None


def _read_resource(name: str) -> str:
    """resources/templates/<name> through the package's loader (wheel, editable, frozen)."""
    import airlock.resources as package

    loader = package.__spec__.loader if package.__spec__ else None
    get_data = getattr(loader, "get_data", None)
    folder = os.path.dirname(package.__file__ or "")
    if get_data is None or not folder:
        from importlib import resources

        return resources.files("airlock.resources").joinpath("templates", name).read_text("utf-8")
    data: bytes = get_data(os.path.join(folder, "templates", name))
    return data.decode("utf-8")


@functools.cache
def catalog() -> Catalog:
    data = json.loads(_read_resource(CATALOG_FILE))
    if data.get("skeleton_version") != SKELETON_VERSION:
        raise ValueError(f"template catalogue skeleton version {data.get('skeleton_version')} "
                         f"!= {SKELETON_VERSION}: rebuild it")
    return Catalog([Entry(item) for item in data["templates"]])


class Drift:
    """How a template differs from its closest catalogued one."""

    __slots__ = ("added", "diff", "entry", "removed", "similarity")

    def __init__(self, entry: Entry, similarity: float, diff: str, added: int, removed: int) -> None:
        self.entry = entry
        self.similarity = similarity
        self.diff = diff
        self.added = added
        self.removed = removed


def drift(text: str, cat: Catalog | None = None) -> Drift | None:
    """The closest catalogued template and a unified diff against it (its text when stored, else
    its skeleton), or None when no catalogued template is close or the template is too long."""
    if len(text) > MAX_DRIFT_CHARS:
        return None
    cat = cat or catalog()
    lines = template_lines(text)[:MAX_DRIFT_LINES]
    skeleton = [skeleton_line(line) for line in lines]
    found = cat.closest(skeleton)
    if found is None:
        return None
    entry, score = found
    stored = entry.text()
    if stored is not None:
        theirs = template_lines(stored)
        mine_keys, theirs_keys = lines, theirs
        label = f"{entry.id}.jinja (catalogued text)"
    else:
        theirs = entry.skeleton
        mine_keys, theirs_keys = skeleton, theirs
        label = f"{entry.id} (skeleton: its licence keeps the text out of the catalogue)"
    diff, added, removed = unified(theirs, lines, theirs_keys, mine_keys, label)
    return Drift(entry, score, diff, added, removed)


def unified(old: list[str], new: list[str], old_keys: list[str], new_keys: list[str],
            label: str) -> tuple[str, int, int]:
    """A unified diff matched on keys but showing the lines themselves (the new side always shows
    the scanned template's own text, even against a skeleton)."""
    matcher = difflib.SequenceMatcher(None, old_keys, new_keys, autojunk=False)
    out = [f"--- {label}", "+++ scanned template"]
    added = removed = 0
    for group in matcher.get_grouped_opcodes(DIFF_CONTEXT):
        first, last = group[0], group[-1]
        out.append(f"@@ -{first[1] + 1},{last[2] - first[1]} +{first[3] + 1},{last[4] - first[3]} @@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out.extend(f" {line}" for line in new[j1:j2])
                continue
            if tag in ("replace", "delete"):
                out.extend(f"-{line}" for line in old[i1:i2])
                removed += i2 - i1
            if tag in ("replace", "insert"):
                out.extend(f"+{line}" for line in new[j1:j2])
                added += j2 - j1
    if len(out) > MAX_DIFF_LINES:
        out = [*out[:MAX_DIFF_LINES], f"… {len(out) - MAX_DIFF_LINES} more diff lines"]
    return ("\n".join(out) if added or removed else ""), added, removed


# Building the catalogue (maintainers only; the scan never runs this)


def template_literals(text: str) -> set[str]:
    from airlock.core.template_ast import descendants, nodes_module, parse_template

    nodes = nodes_module()
    found: set[str] = set()
    for node in descendants(parse_template(text)):
        if isinstance(node, nodes.Const) and isinstance(node.value, str):
            found.add(node.value)
        elif isinstance(node, nodes.TemplateData):
            found.add(node.data)
    return found


def entry_for(text: str, meta: dict[str, Any]) -> dict[str, Any]:
    pieces = set()
    for lit in template_literals(text):  # each literal whole, and each of its lines
        pieces.add(lit)
        pieces.update(lit.split("\n"))
    hashes = sorted({h for piece in pieces if (h := literal_hash(piece)) is not None})
    item: dict[str, Any] = {key: meta[key] for key in ("id", "family", "model", "origin", "source", "licence")
                            if key in meta}
    item["stored"] = "text" if meta["redistribute"] else "hash+skeleton"
    if not meta["redistribute"]:
        item["why_not_stored"] = meta.get("why_not_stored", "its licence does not allow redistribution")
    else:
        item["file"] = f"{meta['id']}.jinja"
    item["sha256"] = digest(text)
    item["literals"] = hashes
    item["skeleton"] = skeleton_lines(text)
    return item


def build(manifest_path: str, out_dir: str) -> None:
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    base = os.path.dirname(os.path.abspath(manifest_path))
    entries = []
    for meta in manifest:
        with open(os.path.join(base, meta["path"]), encoding="utf-8") as fh:
            text = fh.read()
        entries.append(entry_for(text, meta))
        if meta["redistribute"]:
            with open(os.path.join(out_dir, f"{meta['id']}.jinja"), "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
    doc = {"skeleton_version": SKELETON_VERSION,
           "note": "Known chat templates. Each entry: family, model, where the copy was taken (source), "
                   "licence; "
                   "'text' entries keep the template in <id>.jinja, 'hash+skeleton' entries keep only hashes "
                   "and the structure. Rebuild: python -m airlock.core.template_catalog build MANIFEST.json",
           "templates": entries}
    with open(os.path.join(out_dir, CATALOG_FILE), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False)
        fh.write("\n")


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    if len(sys.argv) != 3 or sys.argv[1] != "build":
        sys.exit("usage: python -m airlock.core.template_catalog build MANIFEST.json")
    import airlock.resources

    build(sys.argv[2], os.path.join(os.path.dirname(airlock.resources.__file__ or "."), "templates"))
