"""Telling a SavedModel and a Core ML protobuf apart from ONNX, by content (airlock.core.formats.model_kinds),
and the model-folder corpus of formats that once were only "not inspected" (NeMo, .pt2, TFLite, SavedModel,
.ort, TF checkpoints: each read by its own module now, tested in its own test module)."""


import pytest
from fixtures import onnx_files
from fixtures.model_folder_files import (
    SYSTEM_PICKLE,
    corpus,
    pt2,
    saved_model,
)
from helpers import assert_corpus_verdict

from airlock.core.findings import Severity
from airlock.core.formats import model_kinds
from airlock.core.scan import scan_bytes


def test_onnx_is_not_mistaken_for_a_savedmodel_and_back():
    data = onnx_files.matmul().SerializeToString()
    assert model_kinds.detect(_source(data)) == (None, 0)
    assert model_kinds.detect(_source(saved_model()))[0] == model_kinds.SAVED_MODEL
    assert scan_bytes(data, "saved_model.pb").format == "onnx"
    assert scan_bytes(saved_model(), "model.onnx").format == "saved_model"  # read by its own module now


def _source(data):
    from airlock.core.source import Source

    return Source.from_bytes(data, "x")


def test_pt2_members_are_scanned():  # .pt2 has its own module now (tests/formats/test_pt2.py)
    result = scan_bytes(pt2({"model/data/constants/c0.pt": SYSTEM_PICKLE}), "m.pt2")
    assert result.severity == Severity.CRITICAL
    # The member is read as the whole call, not just a reference to os.system in a broken pickle.
    assert any(f.rule == "PKL006" and "os.system('echo AIRLOCK_MARKER')" in f.message for f in result.findings)
    assert not any("pickle malformed" in f.message for f in result.findings)


@pytest.mark.parametrize("data", [b"", b"\x08", b"\x08\x01\x12\xff\xff\xff\xff\x0f", b"PK\x03\x04junk",
                                  b"\x00" * 300 + b"ustar" + b"\x00" * 300])
def test_odd_input_never_raises(data):
    model_kinds.detect(_source(data))
    scan_bytes(data, "x.bin").close()


@pytest.mark.parametrize("entry", corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert_corpus_verdict(result, want)
