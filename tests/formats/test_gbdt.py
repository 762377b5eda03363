"""XGBoost JSON/UBJSON and LightGBM text models (airlock.core.formats.gbdt), written by the real libraries
(tests/fixtures/gbdt_files.py)."""

import json

import pytest
from fixtures import gbdt_files as f

from airlock.core.findings import Severity
from airlock.core.formats import gbdt
from airlock.core.scan import scan_bytes


@pytest.mark.parametrize(("data", "model"), [
    (f.xgboost("json"), "xgboost-json"), (f.xgboost("ubj"), "xgboost-ubjson"), (f.lightgbm(), "lightgbm-text")])
def test_real_models_are_read_and_clean(data, model):
    result = scan_bytes(data, "renamed")
    assert result.format == "gbdt" and result.root.attrs["model"] == model
    assert result.severity == Severity.NONE, [x.message for x in result.findings]
    assert result.root.attrs["trees"] == 3 and result.root.attrs["features"] == 3
    labels = [n.label for n in result.root.walk(expand_lazy=True)]
    assert "trees (3)" in labels and any(label.startswith("tree 2:") for label in labels)


def test_ubjson_reads_the_same_model_as_json():
    as_json = scan_bytes(f.xgboost("json"), "m.json").root
    as_ubj = scan_bytes(f.xgboost("ubj"), "m.ubj").root
    labels = [n.label for n in as_json.walk(expand_lazy=True)][1:]
    assert labels == [n.label for n in as_ubj.walk(expand_lazy=True)][1:]


@pytest.mark.parametrize(("name", "words"), [
    ("xgb_far_child.json", "outside the tree"),
    ("xgb_far_feature.json", "feature 99"),
    ("xgb_short_array.json", "parents has"),
    ("lgb_far_feature.txt", "split_feature has"),
    ("lgb_truncated.txt", "end of trees"),
])
def test_structure_breaks_are_malformed(name, words):
    data = dict((n, d) for n, d, _s in f.corpus())[name]
    result = scan_bytes(data, name)
    assert any(x.rule == "AIR002" and words in x.message for x in result.findings), \
        [x.message for x in result.findings]


def test_lightgbm_child_and_feature_indices():
    result = scan_bytes(f.lightgbm_edited("left_child=-1", "left_child=5"), "m.txt")
    assert any("left_child holds 5" in x.message for x in result.findings)
    result = scan_bytes(f.lightgbm_edited("split_feature=0", "split_feature=9"), "m.txt")
    assert any("feature 9" in x.message for x in result.findings), [x.message for x in result.findings]


def test_hostile_ubjson_counts_and_truncation():
    data = f.xgboost("ubj")
    for cut in range(20, len(data), 97):
        assert scan_bytes(data[:cut], "m.ubj").severity == Severity.HIGH, cut
    huge = b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner[$d#L\x7f\xff\xff\xff\xff\xff\xff\xff"
    assert any("count" in x.message for x in scan_bytes(huge, "m.ubj").findings)


def test_json_that_is_not_xgboost_is_not_claimed():
    assert gbdt.sniff(json.dumps({"model_type": "llama"}).encode(), 30) == 0
    assert gbdt.sniff(b"tree\nversion=v4\n", 17) == 85


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "gbdt"
    assert result.severity == want, [x.message for x in result.findings]


def test_models_over_the_budget_are_a_limit_finding(monkeypatch):
    monkeypatch.setattr(gbdt, "MAX_MODEL_BYTES", 1000)  # scaled down
    result = scan_bytes(f.xgboost("json"), "m.json")
    assert [x.rule for x in result.findings] == ["AIR003"] and result.severity == Severity.HIGH
