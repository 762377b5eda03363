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
    (f.build(steps=[[(1, 2), (0, 0), (0, 9)]]), "node 2 of tree 0 steps to node 11, past the tree's 3 nodes"),
    (f.build(steps=[[(1, 2), (0, 0), (0, 0)], [(3, 1), (0, 0)]]), "node 0 of tree 1 steps to node 3"),
    (f.build(steps=f.STEPS, approx=3, ids=[[f.NO_LEAF, 0, 3], [f.NO_LEAF, f.NO_LEAF, 6, 9, 13]]),
     "terminal node 4 of tree 1 reads leaf values 13 to 15, the model has 15"),
    (f.build(steps=f.STEPS, splits=4), "must agree"),
])
def test_structure_breaks_are_malformed(data, words):
    result = scan_bytes(data, "m.cbm")
    assert any(x.rule == "AIR002" and words in x.message for x in result.findings), \
        [x.message for x in result.findings]


def test_non_symmetric_trees_are_walked():
    result = scan_bytes(f.build(steps=f.STEPS, approx=3), "m.cbm")
    assert result.severity == Severity.NONE and result.inspected == "full", [x.message for x in result.findings]
    assert result.root.attrs["trees"] == 2 and result.root.attrs["leaf_values"] == 5 * 3


def test_a_step_past_the_tree_points_at_its_node():
    data = f.build(steps=[[(1, 2), (0, 0), (0, 9)]])
    hit = next(x for x in scan_bytes(data, "m.cbm").findings if x.rule == "AIR002")
    assert data[hit.offset:hit.offset + 4] == b"\x00\x00\x09\x00"  # the third node's (0, 9) step


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
