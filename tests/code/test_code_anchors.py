"""The anchor set (code_anchor_cases.py): every positive caught with the expected rule, no negative
flagged above info."""

import pytest
from code_anchor_cases import CASES

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes


def rules_of(source: str) -> set[str]:
    result = scan_bytes(source.encode(), "case.py")
    assert result.format == "python", result.format
    return {f.rule for f in result.findings if f.severity > Severity.INFO}


@pytest.mark.parametrize(("name", "source", "expected", "truth"), [c[:4] for c in CASES], ids=[c[0] for c in CASES])
def test_anchor_case(name: str, source: str, expected: set[str], truth: bool) -> None:
    found = rules_of(source)
    assert found == expected, f"{name}: expected {sorted(expected)}, found {sorted(found)}"
    assert bool(found) == truth


def test_the_set_covers_both_anchors_both_ways() -> None:
    labels = {(c[4], c[3]) for c in CASES} | {(c[5], c[3]) for c in CASES}
    for anchor in ("pos", "neg"):
        assert (anchor, True) in labels and (anchor, False) in labels
    assert len(CASES) >= 100


def test_imports_of_deserialisers_are_info_notes() -> None:
    for source in ("import pickle\n", "import torch.package\n", "from torch import package\n"):
        result = scan_bytes(source.encode(), "m.py")
        assert [f.rule for f in result.findings] == ["PY100"]
        assert result.severity == Severity.INFO
