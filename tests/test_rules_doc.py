"""docs/rules.md is generated from the rule registry and kept up to date (SARIF's helpUri points there)."""

from pathlib import Path

from airlock.core.findings import all_rules
from airlock.core.report import rules_doc

DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def test_docs_rules_md_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == rules_doc.render(), (
        f"docs/rules.md is out of date: run `{rules_doc.COMMAND}`")


def test_every_rule_has_an_anchor_named_by_its_id():
    text = DOC.read_text(encoding="utf-8")
    for rule in all_rules():
        assert f'<a id="{rule.id}"></a>' in text
        assert f"## {rule.id}: {rule.title}" in text
