"""Formats Airlock does not read yet: named by content, reported "not inspected" (medium: fail closed),
never clean. NeMo archives, torch.export .pt2 zips, TFLite, SavedModel, onnxruntime .ort and TF checkpoints
have their own modules now: tests/formats/test_nemo.py, test_pt2.py, test_tflite.py, test_saved_model.py,
test_ort.py, test_tf_checkpoint.py."""


import pytest
from fixtures import onnx_files
from fixtures.model_folder_files import (
    SYSTEM_PICKLE,
    corpus,
    pt2,
    saved_model,
)

from airlock.core.findings import Severity
from airlock.core.formats import not_inspected as ni
from airlock.core.scan import scan_bytes

def test_onnx_is_not_mistaken_for_a_savedmodel_and_back():
    data = onnx_files.matmul().SerializeToString()
    assert ni.sniff_source(_source(data)) == 0
    assert scan_bytes(data, "saved_model.pb").format == "onnx"
    assert scan_bytes(saved_model(), "model.onnx").format == "saved_model"  # read by its own module now


def _source(data):
    from airlock.core.source import Source

    return Source.from_bytes(data, "x")


def test_pt2_members_are_scanned():  # .pt2 has its own module now (tests/formats/test_pt2.py)
    result = scan_bytes(pt2({"model/data/constants/c0.pt": SYSTEM_PICKLE}), "m.pt2")
    assert result.severity == Severity.CRITICAL
    assert any("os.system" in f.message for f in result.findings)


@pytest.mark.parametrize("data", [b"", b"\x08", b"\x08\x01\x12\xff\xff\xff\xff\x0f", b"PK\x03\x04junk",
                                  b"\x00" * 300 + b"ustar" + b"\x00" * 300])
def test_odd_input_never_raises(data):
    ni.sniff(data, len(data))
    ni.sniff_source(_source(data))
    scan_bytes(data, "x.bin").close()


@pytest.mark.parametrize("entry", corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    if want >= Severity.HIGH:
        assert result.severity >= want, result.findings
    else:
        assert result.severity == want, [f.message for f in result.findings]
