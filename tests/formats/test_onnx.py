"""ONNX: trees from onnx.helper models, custom domains, PyOps, external data on disk, truncation."""

import os
import subprocess
import sys

import pytest
from fixtures import onnx_files as F
from helpers import assert_corpus_verdict

from airlock.core.findings import Severity
from airlock.core.formats import onnx as onnx_format
from airlock.core.isolate import ParserSession
from airlock.core.scan import scan_bytes, scan_file


@pytest.fixture(autouse=True, scope="module")
def _one_parser_child():
    """Files here share one parser child, as a CLI scan's files do (core/isolate.py's ParserSession):
    a child per file costs a fresh interpreter and onnx's import each time. The session replaces its
    child after any answer but a clean one, so a failing file still never meets the next."""
    with ParserSession() as session, session.scanning():
        yield


def _scan(model, name="m.onnx"):
    return scan_bytes(model.SerializeToString() if hasattr(model, "SerializeToString") else model, name)


def _rules(result):
    return sorted({f.rule for f in result.findings})


def _find(node, label_start):
    for n in node.walk():
        if n.label.startswith(label_start):
            return n
    raise AssertionError(f"no node starting with {label_start!r}")


@pytest.mark.slow  # one isolated child per file; the fast lane keeps the per-rule checks below
@pytest.mark.parametrize("entry", F.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "onnx"
    assert_corpus_verdict(result, want)


@pytest.mark.parametrize("name", sorted(F.hostile()))
def test_hostile_models_name_the_exact_problem(name):
    result = _scan(F.hostile()[name], name)
    expected = "ONX001" if name == "pyop.onnx" else "ONX003"
    assert expected in _rules(result)
    if expected == "ONX003":
        assert result.severity == Severity.CRITICAL


def test_benign_tree_shows_opsets_io_nodes_and_initializers():
    result = _scan(F.matmul())
    root = result.root
    assert result.severity == Severity.NONE and result.findings == []
    assert root.attrs["ir_version"] > 0 and "airlock-tests" in root.attrs["producer"]
    assert _find(root, "opset imports").children()[0].label == "ai.onnx v17"
    assert _find(root, "inputs (1)").children()[0].attrs == {"type": "tensor_type", "dtype": "float32",
                                                             "shape": (1, 2)}
    op = _find(root, "MatMul")
    assert op.kind == "operator" and op.attrs["inputs"] == "x, w" and op.attrs["outputs"] == "y"
    w = _find(root, "initializers (1)").children()[0]
    assert (w.kind, w.label, w.attrs["dtype"], w.attrs["shape"], w.attrs["size"], w.attrs["location"]) == \
        ("initializer", "w", "float32", (2, 2), 16, "default")


def test_subgraphs_sit_under_their_operator_and_are_checked():
    result = _scan(F.if_model("Magic", "vendor.ops"))
    if_node = _find(result.root, "If")
    branches = [c.label for c in if_node.children() if c.kind == "group"]
    assert sorted(branches) == ["else_branch of If else", "then_branch of If then"]
    finding = next(f for f in result.findings if f.rule == "ONX002")
    assert finding.node.label.startswith("vendor.ops.Magic")
    assert finding.severity == Severity.MEDIUM


def test_local_function_domain_is_not_custom_but_its_unknown_ops_are():
    assert _scan(F.local_function_model()).findings == []
    result = _scan(F.function_with_custom_op())
    assert [f.rule for f in result.findings] == ["ONX002"]
    assert "vendor.ops.Secret" in result.findings[0].message
    assert _find(result.root, "function my.funcs.Wrap")


def test_pyop_is_high_with_the_node_name():
    result = _scan(F.pyop_model())
    (finding,) = result.findings
    assert finding.rule == "ONX001" and finding.severity == Severity.HIGH and "'py'" in finding.message


def test_metadata_props_are_shown():
    result = _scan(F.model([], metadata={"author": "me\x1b[31m"}))
    meta = _find(result.root, "metadata (1)").children()[0]
    assert meta.attrs["key"] == "author" and "\\x1b" in meta.attrs["value"]


def test_large_node_lists_are_paged():
    result = _scan(F.many_nodes(1500))
    nodes = _find(result.root, "nodes (1500)")
    assert nodes.is_lazy and nodes.child_count == 1500
    assert nodes.child_at(1499).label == "Relu" and nodes.child_at(1499).attrs["outputs"] == "y"
    assert sum(1 for _ in result.root.walk()) < 100


def test_real_external_data_opens_clean_and_shows_its_location(tmp_path):
    import onnx

    path = F.write_with_external_data(tmp_path)
    result = scan_file(path)
    try:
        assert result.findings == [] and result.format == "onnx"
        w = _find(result.root, "initializers (1)").children()[0]
        assert w.attrs["location"] == "external" and w.attrs["external.location"] == "model.onnx.data"
        assert w.attrs["size"] == 64 * 64 * 4
    finally:
        result.close()
    onnx.checker.check_model(str(path))  # the real checker agrees the file is sound


def test_missing_external_file_is_high(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(F.external_model("weights.bin").SerializeToString())
    result = scan_file(path)
    assert _rules(result) == ["ONX004"] and result.severity == Severity.HIGH
    assert "does not exist" in result.findings[0].message
    result.close()


def test_external_data_past_the_end_of_its_file_is_high(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)
    path = tmp_path / "m.onnx"
    path.write_bytes(F.external_model("weights.bin", offset=0, length=16).SerializeToString())
    result = scan_file(path)
    assert _rules(result) == ["ONX004"] and "runs past the end" in result.findings[0].message
    result.close()


def test_negative_offset_is_malformed(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    path = tmp_path / "m.onnx"
    path.write_bytes(F.external_model("weights.bin", offset=-5).SerializeToString())
    result = scan_file(path)
    assert _rules(result) == ["ONX004"] and "non-negative" in result.findings[0].message
    result.close()


def test_symlink_resolving_outside_the_folder_is_critical(tmp_path):
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"\0" * 16)
    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink(outside, folder / "weights.bin")
    path = folder / "m.onnx"
    path.write_bytes(F.external_model("weights.bin").SerializeToString())
    result = scan_file(path)
    assert _rules(result) == ["ONX003"] and result.severity == Severity.CRITICAL
    assert "resolves outside" in result.findings[0].message
    result.close()


def test_hugging_face_cache_symlinks_stay_clean(tmp_path):
    """snapshots/<rev>/model.onnx and its data both link into blobs/: not an escape."""
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "abc"
    blobs.mkdir()
    snap.mkdir(parents=True)
    src = F.write_with_external_data(tmp_path)
    (blobs / "1111").write_bytes(src.read_bytes())
    (blobs / "2222").write_bytes((tmp_path / "model.onnx.data").read_bytes())
    os.symlink("../../blobs/1111", snap / "model.onnx")
    os.symlink("../../blobs/2222", snap / "model.onnx.data")
    result = scan_file(snap / "model.onnx")
    assert result.findings == []
    result.close()


def test_truncated_at_every_length_is_high_and_never_raises():
    data = F.matmul().SerializeToString()
    for cut in range(1, len(data), 7):
        result = scan_bytes(data[:cut], "m.onnx")
        if result.format == "onnx":
            assert result.severity >= Severity.HIGH, (cut, result.findings)
            assert any("truncated" in f.message or "malformed" in f.message for f in result.findings)


def test_model_without_graph_is_malformed():
    import onnx

    m = onnx.ModelProto(ir_version=9)
    m.opset_import.add().version = 17
    result = scan_bytes(m.SerializeToString(), "m.onnx")
    assert result.format == "onnx" and _rules(result) == ["AIR002"]


def test_sniff_by_content():
    data = F.matmul().SerializeToString()
    assert onnx_format.sniff(data[:4096], len(data)) == 90
    saved_model = b"\x08\x01\x12\x10\x0a\x0e\x0a\x00\x22\x05serve" + b"\x00" * 3
    for other in (b"\x80\x04\x95", b"PK\x03\x04", b'{"a": 1}', b"\x89HDF\r\n\x1a\n", saved_model, b""):
        assert onnx_format.sniff(other, len(other)) == 0, other


def test_scanning_onnx_never_imports_onnx_in_the_scanning_process(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(F.matmul().SerializeToString())
    code = ("import sys\nfrom airlock.core.scan import scan_file\n"
            f"r = scan_file({str(path)!r})\nassert r.format == 'onnx', r.format\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'google')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
