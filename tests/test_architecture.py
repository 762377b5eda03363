"""docs/ARCHITECTURE.md and README's Layout stay true: every registered format meets the "add a format"
checklist, every rule-id prefix in use is documented, and the Layout lists every module."""

from __future__ import annotations

import re
from pathlib import Path

import corpus
import pytest

from airlock.core import dispatch, formats
from airlock.core.formats.contract import check_names
from airlock.core.rule_catalog import all_rules
from airlock.core.source import Source

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
MODULES = formats.load_all_modules()


def _section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def _stem(module: object) -> str:
    return str(getattr(module, "__name__", "")).rpartition(".")[2]


@pytest.fixture(scope="module")
def claimed() -> dict[str, list[str]]:
    """Format name → generated corpus files (the no-execution proof's inputs) the engine gives it."""
    found: dict[str, list[str]] = {}
    for name, data, _ in corpus.all_fixtures():
        module, _ = dispatch.sniff(Source.from_bytes(data, name))
        if module is not None:
            found.setdefault(module.NAME, []).append(name)
    return found


# Checklist items 1-3: a module under core/formats, registered and mypy-checked, overlaps declared.
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_checklist_module_and_registration(module):
    path = ROOT / "core" / "formats" / f"{_stem(module)}.py"
    assert path.is_file(), f"{module.NAME}: expected its module at {path}"
    tree = (ROOT / "core" / "formats" / "__init__.py").read_text()
    checked = tree.split("CHECKED: tuple[FormatModule, ...] = (", 1)[1].split(")", 1)[0]
    assert re.search(rf"^\s+{_stem(module)},$", checked, re.M), (
        f"{module.NAME}: not in the CHECKED tuple of core/formats/__init__.py, so mypy does not check it")


def test_checklist_no_undeclared_overlap():
    check_names(MODULES)  # the sniff-tie half runs over the whole corpus in tests/formats/test_registry.py


# Item 4: tests. tests/formats/test_<name>.py (or tests/<name>/), or a test that imports the module or
# checks a scan's format against its NAME.
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_checklist_has_tests(module):
    stem = _stem(module)
    if list((ROOT / "tests").rglob(f"test_{stem}.py")) or (ROOT / "tests" / stem).is_dir():
        return
    pattern = re.compile(rf"airlock\.core\.formats\.{stem}\b|from airlock\.core\.formats import [^\n]*\b{stem}\b"
                         rf"|[\"']{re.escape(module.NAME)}[\"']")
    importers = [p for p in (ROOT / "tests").rglob("test_*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert importers, f"{module.NAME}: no test of it (add tests/formats/test_{stem}.py)"


# Item 5: in the no-execution proof. At least one generated corpus file is claimed by the format, so
# tests/test_no_execution.py scans it (and its mutants) under the audit hook.
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_checklist_in_the_no_execution_corpus(module, claimed):
    assert claimed.get(module.NAME), (f"{module.NAME}: no file of tests/corpus.py is sniffed as it: add a "
                                      f"generator in tests/fixtures/ (see docs/ARCHITECTURE.md)")


# Item 6: documented. README's Formats table names it in backticks.
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_checklist_in_the_readme_formats_table(module):
    table = _section(README, "## Formats")
    first_column = [line.split("|")[1] for line in table.splitlines() if line.startswith("| ")]
    assert any(f"`{module.NAME}`" in cell for cell in first_column), (
        f"{module.NAME}: README's Formats table has no row naming `{module.NAME}`")


def test_every_rule_id_prefix_is_documented():
    prefixes = {re.match(r"[A-Z]+", rule.id).group(0) for rule in all_rules()}  # type: ignore[union-attr]
    table = _section(ARCHITECTURE, "## Rule ids")
    documented = set(re.findall(r"^\| ([A-Z]+) \|", table, re.M))
    assert prefixes <= documented, f"rule-id prefixes missing from docs/ARCHITECTURE.md: {prefixes - documented}"
    assert documented <= prefixes, f"docs/ARCHITECTURE.md lists prefixes no rule uses: {documented - prefixes}"


def test_the_documented_contract_matches_the_protocol():
    from airlock.core.formats import contract

    members = {"NAME", "EXTENSIONS", "sniff", "parse"}
    assert members <= set(vars(contract.FormatModule))
    table = _section(ARCHITECTURE, "## The format contract")
    for name in (*members, "sniff_source", "OVERLAPS"):
        assert f"| `{name}" in table, f"docs/ARCHITECTURE.md's contract table does not list {name}"


def _layout_sections() -> dict[str, str]:
    block = _section(README, "## Layout").split("```\n", 1)[1].split("```", 1)[0]
    sections: dict[str, str] = {}
    folder = None
    for line in block.splitlines():
        if line and not line.startswith(" "):
            folder = line.split()[0].rstrip("/")
            sections[folder] = line[len(folder) + 1:]
        elif folder is not None:
            sections[folder] += "\n" + line
    return sections


def test_readme_layout_lists_every_module():
    sections = _layout_sections()
    for package in ("core", "gui"):
        for folder in sorted({p.parent for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts}):
            key = folder.relative_to(ROOT).as_posix()
            files = {p.name for p in folder.glob("*.py") if p.name != "__init__.py"}
            assert key in sections, f"README's Layout has no line for {key}/"
            listed = set(re.findall(r"\b(\w+\.py)\b", sections[key]))
            assert files <= listed, f"README's Layout misses in {key}/: {sorted(files - listed)}"
            assert listed <= files, f"README's Layout lists files {key}/ does not have: {sorted(listed - files)}"
