"""Formats Airlock does not read yet: named by content, reported "not inspected", never clean;
containers among them (.pt2 zips, .nemo tars) still have their members scanned."""

import io
import struct
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import onnx_files

from airlock.core.findings import Severity
from airlock.core.formats import not_inspected as ni
from airlock.core.scan import scan_bytes

SYSTEM_PICKLE = b"\x80\x02cos\nsystem\nX\x14\x00\x00\x00echo AIRLOCK_MARKER\x85R."


def _varint(n):
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _field(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def saved_model():
    """SavedModel: schema version 1, one MetaGraphDef (meta_info_def with tag "serve", a graph_def)."""
    meta_info = _field(4, b"serve")
    graph = _field(1, _field(1, b"x") + _field(2, b"Placeholder"))
    return b"\x08\x01" + _field(2, _field(1, meta_info) + _field(2, graph))


def coreml():
    description = _field(1, _field(1, b"input"))
    return b"\x08\x04" + _field(2, description) + _field(500, b"\x0a\x00")  # neuralNetwork = 500


def tflite():
    return struct.pack("<I", 28) + b"TFL3" + b"\x00" * 120


def openvino():
    return b'<?xml version="1.0"?>\n<net name="model" version="11">\n<layers>\n</layers>\n</net>\n'


def pt2(extra=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model/archive_format", "pt2")
        zf.writestr("model/archive_version", "0")
        zf.writestr("model/models/model.json", '{"graph_module": {}}')
        zf.writestr("model/data/weights/weight_0", b"\0" * 64)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def nemo(members=None):
    members = members or {"./model_config.yaml": b"name: tiny\n", "./model_weights.ckpt": b"\x80\x02}q\x00."}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(_dir("./"))
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _dir(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def tf_index():
    return b"\x00" * 40 + (0xDB4775248B80FB57).to_bytes(8, "little")


CASES = {
    "saved_model.pb": (saved_model, ni.SAVED_MODEL),
    "model.mlmodel": (coreml, ni.COREML),
    "model.tflite": (tflite, ni.TFLITE),
    "model.ort": (lambda: struct.pack("<I", 20) + b"ORTM" + b"\x00" * 64, ni.ORT),
    "model.xml": (openvino, ni.OPENVINO),
    "model.pt2": (pt2, ni.PT2),
    "model.nemo": (nemo, ni.NEMO),
    "variables.index": (tf_index, ni.TF_INDEX),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_detected_by_content_and_reported_not_inspected(name):
    build, kind = CASES[name]
    for shown in (name, "renamed"):  # the name does not decide
        result = scan_bytes(build(), shown)
        assert result.format == "not-inspected", (shown, result.format)
        assert result.root.attrs["detected"] == kind
        assert result.severity == Severity.INFO  # never clean
        notes = [f for f in result.findings if f.rule == "AIR005"]
        assert notes and notes[-1].message.startswith(kind)


def test_onnx_is_not_mistaken_for_a_savedmodel_and_back():
    data = onnx_files.matmul().SerializeToString()
    assert ni.sniff_source(_source(data)) == 0
    assert scan_bytes(data, "saved_model.pb").format == "onnx"
    assert scan_bytes(saved_model(), "model.onnx").format == "not-inspected"


def _source(data):
    from airlock.core.source import Source

    return Source.from_bytes(data, "x")


def test_pt2_members_are_scanned():
    result = scan_bytes(pt2({"model/data/constants/c0.pt": SYSTEM_PICKLE}), "m.pt2")
    assert result.severity == Severity.CRITICAL
    assert any("os.system" in f.message for f in result.findings)


def test_nemo_members_are_scanned_and_escaping_names_flagged():
    result = scan_bytes(nemo({"./model_config.yaml": b"a: 1\n", "./model_weights.ckpt": SYSTEM_PICKLE}), "m.nemo")
    assert result.severity == Severity.CRITICAL
    members = [n.label for n in result.root.children()]
    assert members == [".", "./model_config.yaml", "./model_weights.ckpt"]
    result = scan_bytes(nemo({"./model_config.yaml": b"a: 1\n", "../../.bashrc": b"echo hi\n"}), "m.nemo")
    assert "ZIP002" in {f.rule for f in result.findings} and result.severity == Severity.HIGH


def test_gzipped_nemo_is_found_inside_the_compression():
    import gzip

    result = scan_bytes(gzip.compress(nemo()), "m.nemo.gz")
    assert any(n.attrs.get("detected") == ni.NEMO for n in result.root.walk())
    assert result.severity == Severity.INFO


def test_truncated_nemo_is_malformed():
    data = nemo({"./model_config.yaml": b"a: 1\n", "./model_weights.ckpt": b"x" * 5000})
    result = scan_bytes(data[:2048], "m.nemo")
    assert result.format == "not-inspected" and result.severity >= Severity.HIGH
    assert any("truncated" in f.message or "malformed" in f.message for f in result.findings)


@pytest.mark.parametrize("data", [b"", b"\x08", b"\x08\x01\x12\xff\xff\xff\xff\x0f", b"PK\x03\x04junk",
                                  b"\x00" * 300 + b"ustar" + b"\x00" * 300])
def test_odd_input_never_raises(data):
    ni.sniff(data, len(data))
    ni.sniff_source(_source(data))
    scan_bytes(data, "x.bin").close()
