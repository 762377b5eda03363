"""Core ML .mlmodel protobufs (airlock.core.formats.coreml), built from coremltools' protos
(tests/fixtures/coreml_files.py)."""

import pytest
from fixtures import coreml_files as f

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes


def test_pipeline_network_and_program_are_listed():
    result = scan_bytes(f.pipeline(), "renamed")
    assert result.format == "coreml" and result.severity == Severity.NONE
    labels = [n.label for n in result.root.walk(expand_lazy=True)]
    assert {"NeuralNetwork", "MLProgram", "dense (layer type 140)", "const", "relu"} <= set(labels)


@pytest.mark.parametrize(("data", "rule", "words"), [
    (f.network("EvilLayer"), "CML001", "EvilLayer"),
    (f.custom_model("Mine"), "CML001", "Mine"),
    (f.program("/Users/x/secret.bin"), "CML002", "/Users/x/secret.bin"),
    (f.program("@model_path/../x"), "CML002", "../x"),
    (f.linked("C:\\models\\other.mlmodelc"), "CML002", "other"),
])
def test_custom_code_and_paths_outside(data, rule, words):
    hits = [x for x in scan_bytes(data, "m.mlmodel").findings if x.rule == rule]
    assert hits and words in hits[0].message
    assert words.encode()[:4] in data[hits[0].offset:hits[0].offset + 200]  # the offset points at the name


def test_networks_inside_branches_and_loops_are_walked():
    result = scan_bytes(f.control_flow("HiddenLayer", depth=3), "m.mlmodel")
    hits = [x for x in result.findings if x.rule == "CML001"]
    assert len(hits) == 1 and "branch2/else/loop1/body/branch0/else/mystery" in hits[0].message
    assert f.control_flow("HiddenLayer", depth=3)[hits[0].offset:hits[0].offset + 11] == b"HiddenLayer"
    labels = [n.label for n in result.root.walk(expand_lazy=True)]
    assert "branch2/if/noop (layer type 130)" in labels and "branch2/else/loop1 (layer type 615)" in labels
    assert scan_bytes(f.control_flow(None, depth=3), "m.mlmodel").severity == Severity.NONE


def test_control_flow_nested_past_the_limit_is_not_fully_inspected():
    from airlock.core.formats.coreml import MAX_DEPTH

    result = scan_bytes(f.control_flow(None, depth=MAX_DEPTH + 2), "m.mlmodel")
    assert result.inspected == "partial" and result.severity >= Severity.MEDIUM
    assert any("nested deeper than" in x.message for x in result.findings)


def test_weight_files_inside_the_package_are_fine():
    assert scan_bytes(f.program("@model_path/weights/weight.bin"), "m.mlmodel").severity == Severity.NONE


def test_truncation_never_reads_clean():
    data = f.network("EvilLayer")
    for cut in range(4, len(data), 3):
        assert scan_bytes(data[:cut], "m.mlmodel").severity >= Severity.MEDIUM, cut


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "coreml"
    assert result.severity == want, [x.message for x in result.findings]
