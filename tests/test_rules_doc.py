"""docs/rules.md is generated from the rule registry and kept up to date (SARIF's helpUri points there)."""

from pathlib import Path

from airlock.core.report import rules_doc
from airlock.core.rule_catalog import all_rules

DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def test_docs_rules_md_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == rules_doc.render(), (
        f"docs/rules.md is out of date: run `{rules_doc.COMMAND}`")


def test_every_rule_has_an_anchor_named_by_its_id():
    text = DOC.read_text(encoding="utf-8")
    for rule in all_rules():
        assert f'<a id="{rule.id}"></a>' in text
        assert f"## {rule.id}: {rule.title}" in text


def test_all_rules_knows_every_rule_class_in_core_whatever_was_imported_before():
    """Rules living in modules a scan imports lazily still reach SARIF and docs/rules.md: every class
    in core/ that sets a string `id` is registered by all_rules() in a fresh interpreter."""
    import ast
    import json
    import subprocess
    import sys

    declared = {}
    for path in (Path(__file__).resolve().parent.parent / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "Rule" for b in node.bases):
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and any(getattr(t, "id", None) == "id" for t in stmt.targets)
                            and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
                        declared[stmt.value.value] = str(path)
    fresh = subprocess.run([sys.executable, "-c", "import json; from airlock.core.rule_catalog import all_rules; "
                            "print(json.dumps([r.id for r in all_rules()]))"], capture_output=True, text=True,
                           check=True, timeout=120)
    registered = set(json.loads(fresh.stdout))
    assert declared and {rule: where for rule, where in declared.items() if rule not in registered} == {}
