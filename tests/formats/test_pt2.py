"""torch.export archives (airlock.core.formats.pt2), made with torch.export.save and edited the way an
attacker would (tests/fixtures/pt2_files.py)."""

import json

import pytest
from fixtures import pt2_files as f

from airlock.core.findings import Severity
from airlock.core.formats import pt2
from airlock.core.scan import scan_bytes


def _rules(result):
    return {x.rule for x in result.findings}


def test_real_archive_has_its_program_and_weights_and_nothing_worse_than_info():
    result = scan_bytes(f.real(), "renamed")
    assert result.format == "pt2"
    assert result.severity == Severity.INFO, [x.message for x in result.findings]
    assert result.inspected == "full"
    nodes = list(result.root.walk(expand_lazy=True))
    targets = [n.attrs["target"] for n in nodes if n.kind == "operator"]
    assert targets == ["torch.ops.aten.linear.default", "torch.ops.aten.relu.default", "torch.ops.aten.add.Tensor"]
    tensors = {n.label: n.attrs for n in nodes if n.kind == "tensor" and "file" in n.attrs}
    assert tensors["lin.weight"]["shape"] == [2, 3] and tensors["lin.weight"]["dtype"] == "float32"
    assert tensors["lin.weight"]["parameter"] is True and "parameter" not in tensors["shift"]
    # The sample input (a torch.save zip) is read by the torch zip reader.
    assert any(n.attrs.get("format") == "torch_zip" for n in nodes)


@pytest.mark.parametrize(("target", "rule", "severity"), [
    ("torch.os.system", "PT2003", Severity.CRITICAL),
    ("torch.serialization.load", "PT2003", Severity.CRITICAL),
    ("torch.ops.mylib.fancy.default", "PT2001", Severity.MEDIUM),
    ("torch.ops.evil.system.default", "PT2003", Severity.CRITICAL),
    ("#my_extension:op", "PT2001", Severity.MEDIUM),
    ("_operator.attrgetter", "PT2002", Severity.HIGH),
    ("torch.nn.functional.relu", "PT2002", Severity.HIGH),
])
def test_node_targets_are_judged(target, rule, severity):
    result = scan_bytes(f.with_target(target), "m.pt2")
    hits = [x for x in result.findings if x.rule == rule]
    assert hits and result.severity == severity, [x.message for x in result.findings]
    assert target in hits[0].message
    # The offset points at the target's text in the stored JSON member.
    data = f.with_target(target)
    assert data[hits[0].offset:hits[0].offset + len(json.dumps(target))] == json.dumps(target).encode()


@pytest.mark.parametrize("target", ["_operator.getitem", "math.ceil", "torch.sym_max", "torch.ops.aten.mm.default",
                                    "torch.ops.higher_order.cond", "some.string.the.graph.cannot.call"])
def test_targets_torch_writes_are_clean(target):
    assert pt2.judge_target(target) is None


def test_pickled_weight_is_read_as_a_pickle():
    result = scan_bytes(f.pickled_weight(), "m.pt2")
    assert result.severity == Severity.CRITICAL
    assert any("os.system" in x.message for x in result.findings)
    loaded = [n for n in result.root.walk(expand_lazy=True) if n.attrs.get("loaded_by")]
    assert any(n.attrs["loaded_by"] == "torch.load(weights_only=False)" for n in loaded)


def test_opaque_constant_protocol_0_pickle_is_read_as_a_pickle():
    result = scan_bytes(f.opaque_constant(), "m.pt2")
    assert result.severity == Severity.CRITICAL
    assert any("os.system" in x.message for x in result.findings)


def test_benign_opaque_constant_is_not_flagged_for_being_pickled():
    result = scan_bytes(f.opaque_constant(b"\x80\x02K\x01."), "m.pt2")
    assert result.severity == Severity.INFO, [x.message for x in result.findings]


def test_aoti_shared_library_is_native_code():
    result = scan_bytes(f.aoti_library(), "m.pt2")
    assert "PT2004" in _rules(result) and result.severity == Severity.HIGH


def test_broken_json_and_missing_configs_are_malformed():
    root = f._root(f.real())
    result = scan_bytes(f.rewrite(f.real(), {f"{root}/models/model.json": b"{\"graph_module\": "}), "m.pt2")
    assert any(x.rule == "AIR002" and "not valid JSON" in x.message for x in result.findings)
    result = scan_bytes(f.rewrite(f.real(), {f"{root}/data/weights/model_weights_config.json": None}), "m.pt2")
    assert any(x.rule == "AIR002" and "weights_config" in x.message for x in result.findings)
    result = scan_bytes(f.rewrite(f.real(), {f"{root}/data/weights/weight_0": None}), "m.pt2")
    assert any(x.rule == "AIR002" and "not in the archive" in x.message for x in result.findings)
    result = scan_bytes(f.rewrite(f.real(), {f"{root}/archive_format": b"xyz"}), "m.pt2")
    assert any(x.rule == "AIR002" and "archive_format" in x.message for x in result.findings)


def test_deeply_nested_json_does_not_exhaust_the_stack():
    deep = b"[" * 200_000 + b"]" * 200_000
    result = scan_bytes(f.rewrite(f.real(), {f"{f._root(f.real())}/models/model.json": deep}), "m.pt2")
    assert result.severity >= Severity.HIGH


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "pt2"
    assert result.severity == want, [x.message for x in result.findings]
