"""docs/rules.md: every rule of the registry, each under an anchor named by its id.

SARIF's `helpUri` points at `<Documentation>/rules.md#<id>` when the package metadata names a
documentation site. Regenerate after adding or changing a rule:

    python -m airlock.core.report.rules_doc > docs/rules.md

(tests/test_rules_doc.py fails, with this command, while the file is out of date).
"""

from __future__ import annotations

import sys

from airlock.core.report.sarif import rule_help
from airlock.core.rule_catalog import all_rules

COMMAND = "python -m airlock.core.report.rules_doc > docs/rules.md"


def render() -> str:
    rules = all_rules()
    lines = ["# Airlock rules", "",
             f"Every check Airlock makes, by stable id. Generated from the rule registry (`{COMMAND}`); "
             "the SARIF report's `help` carries the same text.", "",
             "| id | default severity | title |", "|---|---|---|"]
    lines += [f"| [{r.id}](#{r.id}) | {r.severity.label} | {r.title} |" for r in rules]
    for rule in rules:
        lines += ["", f'<a id="{rule.id}"></a>', "", f"## {rule.id}: {rule.title}", "",
                  rule_help(rule)["markdown"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
