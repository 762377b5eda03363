"""Formats Airlock does not read yet: named by content, reported "not inspected" (medium: fail closed),
never clean. NeMo archives, torch.export .pt2 zips, TFLite and SavedModel have their own modules now:
tests/formats/test_nemo.py, test_pt2.py, test_tflite.py, test_saved_model.py."""


import pytest
from fixtures import onnx_files
from fixtures.model_folder_files import (
    SYSTEM_PICKLE,
    corpus,
    ort,
    pt2,
    saved_model,
    tf_index,
)
from helpers import assert_corpus_verdict

from airlock.core.findings import Severity
from airlock.core.formats import not_inspected as ni
from airlock.core.scan import scan_bytes

CASES = {
    "model.ort": (ort, ni.ORT),
    "variables.index": (tf_index, ni.TF_INDEX),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_detected_by_content_and_reported_not_inspected(name):
    build, kind = CASES[name]
    for shown in (name, "renamed"):  # the name does not decide
        result = scan_bytes(build(), shown)
        assert result.format == "not-inspected", (shown, result.format)
        assert result.root.attrs["detected"] == kind
        assert result.severity == Severity.MEDIUM  # never clean: not inspected is medium
        assert result.inspected == "none"  # only recognised: nothing read
        notes = [f for f in result.findings if f.rule == "AIR005"]
        assert notes and notes[-1].message.startswith(kind)


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
    # The member is read as the whole call, not just a reference to os.system in a broken pickle.
    assert any(f.rule == "PKL006" and "os.system('echo AIRLOCK_MARKER')" in f.message for f in result.findings)
    assert not any("pickle malformed" in f.message for f in result.findings)


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
    assert_corpus_verdict(result, want)
