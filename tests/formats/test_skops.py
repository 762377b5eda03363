"""skops files (airlock.core.formats.skops), written by skops.io.dump (tests/fixtures/skops_files.py) and
judged against skops' own default trusted list (resources/policy/skops_trusted.json)."""

import io
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from fixtures import skops_files as f

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes

ROOT = Path(__file__).resolve().parents[2]


def _untrusted_by_skops(data: bytes) -> set[str]:
    import skops.io as sio

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(folder, "m.skops")
        Path(path).write_bytes(data)
        return set(sio.get_untrusted_types(file=path))


def _untrusted_by_airlock(result) -> set[str]:
    return {n.label for n in result.root.walk(expand_lazy=True)
            if n.kind == "global" and n.attrs.get("trusted by skops") is False}


def _more_models() -> list[bytes]:
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import SGDClassifier
    from sklearn.tree import DecisionTreeClassifier

    x, y = f._data()
    return [f.dump(m.fit(x, y)) for m in (RandomForestClassifier(n_estimators=3, random_state=0),
                                          GradientBoostingClassifier(n_estimators=3), SGDClassifier(),
                                          DecisionTreeClassifier())] + \
        [f.dump({"rng": np.random.default_rng(0), "arr": np.arange(4), "fn": np.exp, "t": (1, "a")})]


def test_untrusted_types_are_exactly_skops_own():
    """Airlock's verdict of "trusted" is skops' own, on real files of many node kinds."""
    for data in [f.pipeline(), f.counter_object(), f.with_function(os.system), f.with_function(math.floor),
                 *_more_models()]:
        assert _untrusted_by_airlock(scan_bytes(data, "m.skops")) == _untrusted_by_skops(data)


def test_a_fitted_pipeline_is_clean_and_its_types_are_listed():
    result = scan_bytes(f.pipeline(), "renamed")
    assert result.format == "skops"
    assert result.severity == Severity.NONE, [x.message for x in result.findings]
    labels = {n.label for n in result.root.walk(expand_lazy=True) if n.kind == "global"}
    assert {"sklearn.pipeline.Pipeline", "sklearn.linear_model._logistic.LogisticRegression", "numpy.log1p"} <= labels
    assert any(n.attrs.get("format") == "npy" for n in result.root.walk(expand_lazy=True))


@pytest.mark.parametrize(("func", "rule", "severity"), [
    (os.system, "SKO003", Severity.CRITICAL),
    (eval, "SKO003", Severity.CRITICAL),
    (math.floor, "SKO002", Severity.HIGH),  # a builtin function skops does not trust
])
def test_functions(func, rule, severity):
    data = f.with_function(func)
    result = scan_bytes(data, "m.skops")
    assert result.severity == severity and rule in {x.rule for x in result.findings}, \
        [x.message for x in result.findings]
    hit = next(x for x in result.findings if x.rule == rule)
    name = func.__name__
    assert data[hit.offset:hit.offset + len(name) + 2] == f'"{name}"'.encode()  # points into schema.json


def test_untrusted_class_is_medium():
    result = scan_bytes(f.counter_object(), "m.skops")
    assert result.severity == Severity.MEDIUM
    assert [x.rule for x in result.findings if x.severity >= Severity.MEDIUM] == ["SKO001"]


def test_broken_schemas_are_malformed():
    for data, words in [(f.unknown_loader(), "EvilNode"), (f.missing_array(), "not in the archive"),
                        (f.edit_schema(f.pipeline(), lambda s: s.clear()), "no root object")]:
        result = scan_bytes(data, "m.skops")
        assert any(x.rule == "AIR002" and words in x.message for x in result.findings), \
            [x.message for x in result.findings]


def test_deep_nesting_is_not_a_crash():
    buf = io.BytesIO()
    import zipfile
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", "[" * 100_000 + "]" * 100_000)
    result = scan_bytes(buf.getvalue(), "m.skops")
    assert result.format == "skops" and result.severity == Severity.HIGH


@pytest.mark.slow
def test_trusted_list_is_what_the_generator_writes_from_installed_skops():
    proc = subprocess.run([sys.executable, str(ROOT / "tests/formats/skops_trusted_source.py")],
                          capture_output=True, text=True, check=True, timeout=300)
    committed = json.loads((ROOT / "resources/policy/skops_trusted.json").read_text())
    assert json.loads(proc.stdout)["loaders"] == committed["loaders"], \
        "regenerate: python tests/formats/skops_trusted_source.py > resources/policy/skops_trusted.json"


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "skops"
    assert result.severity == want, [x.message for x in result.findings]
