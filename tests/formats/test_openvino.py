"""OpenVINO IR network XML (airlock.core.formats.openvino), tests/fixtures/openvino_files.py."""

import pytest
from fixtures import openvino_files as f

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes, scan_file


def test_layers_are_listed_with_their_weights():
    result = scan_bytes(f.network(), "renamed")
    assert result.format == "openvino" and result.severity == Severity.NONE
    layers = {n.label: n.attrs for n in result.root.walk(expand_lazy=True) if n.kind == "layer"}
    assert layers["w (Const)"]["bin_offset"] == 0 and layers["w (Const)"]["size"] == 48
    assert layers["y (MatMul)"]["opset"] == "opset1"


def test_extension_layers_are_medium():
    result = scan_bytes(f.network(f.CUSTOM_LAYER), "model.xml")
    assert [x.rule for x in result.findings] == ["OVN001"]
    assert "MyFancyOp" in result.findings[0].message


def test_doctype_is_refused_before_parsing():
    result = scan_bytes(f.network(doctype=f.ENTITIES), "model.xml")
    assert any(x.rule == "AIR002" and "DOCTYPE" in x.message for x in result.findings)


def test_weights_outside_the_bin_next_to_the_xml(tmp_path):
    (tmp_path / "model.xml").write_bytes(f.network(const_size=4096))
    (tmp_path / "model.bin").write_bytes(b"\x00" * 48)
    result = scan_file(str(tmp_path / "model.xml"))
    assert any(x.rule == "AIR002" and "weights file, which has 48" in x.message for x in result.findings)
    (tmp_path / "model.xml").write_bytes(f.network())
    assert scan_file(str(tmp_path / "model.xml")).severity == Severity.NONE


def test_broken_xml_is_malformed():
    assert scan_bytes(f.network()[:200], "model.xml").severity == Severity.HIGH


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "openvino"
    assert result.severity == want, [x.message for x in result.findings]
