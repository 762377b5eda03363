"""CatBoost .cbm models (airlock.core.formats.catboost), built from model.fbs (tests/fixtures/catboost_files.py)."""

import pytest
from fixtures import catboost_files as f

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes


def test_info_map_and_trees():
    result = scan_bytes(f.build((2, 1, 3)), "renamed")
    assert result.format == "catboost" and result.severity == Severity.NONE
    assert result.root.attrs["trees"] == 3 and result.root.attrs["leaf_values"] == 4 + 2 + 8
    labels = [n.label for n in result.root.walk()]
    assert any(label.startswith("params = ") and "Logloss" in label for label in labels)


@pytest.mark.parametrize(("data", "words"), [
    (f.build(splits=7), "add up to"),
    (f.build(leaves=3), "leaf values"),
    (f.build(core_size_extra=1 << 20), "follow the header"),
    (f.build((40,), leaves=1), "depth 40"),
])
def test_structure_breaks_are_malformed(data, words):
    result = scan_bytes(data, "m.cbm")
    assert any(x.rule == "AIR002" and words in x.message for x in result.findings), \
        [x.message for x in result.findings]


def test_truncation_never_reads_clean():
    data = f.build()
    for cut in range(8, len(data), 3):
        assert scan_bytes(data[:cut], "m.cbm").severity >= Severity.MEDIUM, cut


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "catboost"
    assert result.severity == want, [x.message for x in result.findings]
