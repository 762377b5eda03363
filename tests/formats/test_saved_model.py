"""TF SavedModel graphs (airlock.core.formats.saved_model), built field by field from the TensorFlow protos
(tests/fixtures/saved_model_files.py)."""

import pytest
from fixtures import saved_model_files as f

from airlock.core.findings import Severity
from airlock.core.formats import saved_model
from airlock.core.scan import scan_bytes


def test_graph_functions_and_saver_are_listed_and_clean():
    result = scan_bytes(f.saved_model(), "renamed")  # content decides
    assert result.format == "saved_model"
    assert result.severity == Severity.NONE, [x.message for x in result.findings]
    assert result.inspected == "full"
    labels = [n.label for n in result.root.walk(expand_lazy=True)]
    assert "meta graph 0 [serve]" in labels
    assert "save/SaveV2: SaveV2" in labels  # the checkpoint saver every SavedModel has: listed, not flagged
    assert "function __inference_serve_12: nodes (1)" in labels and "relu: Relu" in labels


def test_an_op_tensorflow_does_not_ship_is_a_kernel_library():
    extra = [f.node("warp", "Addons>ImageProjectiveTransformV2", ("x",)), f.node("again", "SentencepieceOp")]
    result = scan_bytes(f.saved_model(extra), "saved_model.pb")
    hits = [x for x in result.findings if x.rule == "TFSM004"]
    assert [h.message.split(" (op ")[1].split(")")[0] for h in hits] == [
        "Addons>ImageProjectiveTransformV2", "SentencepieceOp"]
    assert result.severity == Severity.MEDIUM
    assert f.saved_model(extra)[hits[0].offset:].startswith(b"Addons>")  # the offset points at the op name


def test_a_node_may_call_a_function_of_the_library_by_name():
    calls = [f.node("call", "__inference_serve_12", ("x",))]  # TF1 graphs call library functions as ops
    assert scan_bytes(f.saved_model(calls), "saved_model.pb").severity == Severity.NONE
    unknown = [f.node("call", "__inference_elsewhere_7", ("x",))]
    assert {x.rule for x in scan_bytes(f.saved_model(unknown), "saved_model.pb").findings} == {"TFSM004"}


def test_the_builtin_op_list_is_tensorflows():
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).resolve().parents[2] / "resources/policy/tf_builtin_ops.json").read_text())
    assert "tf_builtin_ops_source.py" in data["about"] and data["tensorflow_version"].startswith("2.")
    ops = saved_model.builtin_ops()
    assert ops == frozenset(data["ops"]) and len(ops) > 1500
    assert {"Const", "MatMul", "StatefulPartitionedCall", "SaveV2", "RestoreV2", "PyFunc", "_Arg"} <= ops
    assert not {"SentencepieceOp", "Addons>ImageProjectiveTransformV2"} & ops


@pytest.mark.parametrize(("extra", "rule", "severity", "words"), [
    ([f.node("cb", "PyFunc", ("x",))], "TFSM001", Severity.CRITICAL, "op PyFunc"),
    ([f.node("cb", "PyFuncStateless")], "TFSM001", Severity.CRITICAL, "PyFuncStateless"),
    ([f.string_const("p", "/etc/passwd"), f.node("r", "ReadFile", ("p",))], "TFSM003", Severity.CRITICAL,
     "/etc/passwd"),
    ([f.string_const("p", "C:\\Windows\\x"), f.node("w", "WriteFile", ("p:0", "y"))], "TFSM003", Severity.CRITICAL,
     "Windows"),
    ([f.string_const("p", "data/labels.txt"), f.node("r", "ReadFile", ("p",))], "TFSM002", Severity.HIGH,
     "data/labels.txt"),
    ([f.node("l", "LoadLibrary", ("x",))], "TFSM002", Severity.HIGH, "LoadLibrary"),
    ([f.string_const("p", "../x"), f.node("r", "RestoreV2", ("p", "n", "s"))], "TFSM003", Severity.CRITICAL, "../x"),
])
def test_ops_that_reach_outside_the_tensors(extra, rule, severity, words):
    data = f.saved_model(extra)
    result = scan_bytes(data, "saved_model.pb")
    hits = [x for x in result.findings if x.rule == rule]
    assert hits and result.severity == severity, [x.message for x in result.findings]
    assert words in hits[0].message
    op = next(n for n in extra if b"Const" not in n)
    op_name = op.split(b"\x12", 1)[1][1:].split(b"\x1a")[0][:6]
    assert data[hits[0].offset:hits[0].offset + len(op_name)] == op_name  # points at the op's name


def test_checkpoint_ops_on_the_loaders_path_stay_clean():
    result = scan_bytes(f.saved_model([f.string_const("p", "variables/variables"),
                                       f.node("s", "SaveV2", ("p", "n", "s", "w"))]), "saved_model.pb")
    assert result.severity == Severity.NONE


def test_keras_metadata_is_judged_like_a_keras_config():
    lam = {"class_name": "exec", "module": "builtins", "config": {}}
    result = scan_bytes(f.saved_model(keras=f.keras_model([lam])), "saved_model.pb")
    assert result.severity == Severity.CRITICAL
    assert any(x.rule.startswith("KRS") for x in result.findings)
    assert any(n.label.startswith("Keras metadata") for n in result.root.walk(expand_lazy=True))


def test_keras_metadata_pb_next_to_the_model():
    lam = {"class_name": "exec", "module": "builtins", "config": {}}
    result = scan_bytes(f.keras_metadata(f.keras_model([lam])), "keras_metadata.pb")
    assert result.format == "saved_model" and result.severity == Severity.CRITICAL
    assert result.root.attrs["keras objects"] == 1
    assert scan_bytes(f.keras_metadata(f.keras_model([])), "keras_metadata.pb").severity == Severity.NONE


def test_truncated_and_garbled():
    data = f.saved_model([f.node("cb", "PyFunc")])
    for cut in range(6, len(data), 11):
        result = scan_bytes(data[:cut], "saved_model.pb")
        assert result.severity >= Severity.MEDIUM, cut


def test_onnx_is_not_a_savedmodel():
    from fixtures import onnx_files

    assert saved_model.sniff(onnx_files.matmul().SerializeToString(), 100) == 0


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "saved_model"
    assert result.severity == want, [x.message for x in result.findings]
