"""ExecuTorch .pte programs (airlock.core.formats.executorch), built from program.fbs with the flatbuffers
Builder (tests/fixtures/executorch_files.py)."""

import pytest
from fixtures import executorch_files as f

from airlock.core.findings import Severity
from airlock.core.formats import executorch
from airlock.core.scan import scan_bytes


def test_operators_delegates_and_segments_are_listed():
    blob = b"XN01" + bytes(60)
    data = f.build(delegates=(("XnnpackBackend", 1, 0),), segment_blobs=(blob,))
    result = scan_bytes(data, "renamed")
    assert result.format == "executorch" and result.severity == Severity.NONE
    nodes = list(result.root.walk(expand_lazy=True))
    assert {"aten::add.out", "aten::relu.out"} <= {n.label for n in nodes if n.kind == "operator"}
    delegate = next(n for n in nodes if n.label.startswith("delegate 0"))
    assert data[delegate.offset:delegate.offset + delegate.length] == blob  # the blob's bytes in the file


def test_inline_delegate_blob_is_located():
    blob = bytes(range(32))
    data = f.build(delegates=(("XnnpackBackend", 0, 0),), inline_blobs=(blob,))
    delegate = next(n for n in scan_bytes(data, "m.pte").root.walk() if n.label.startswith("delegate 0"))
    assert data[delegate.offset:delegate.offset + delegate.length] == blob


def test_custom_kernels_and_unknown_backends_are_medium():
    result = scan_bytes(f.build(("aten::add", "mylib::secret_sauce")), "m.pte")
    assert [x.rule for x in result.findings] == ["EXT001"] and "mylib::secret_sauce" in result.findings[0].message
    result = scan_bytes(f.build(delegates=(("EvilBackend", 0, 0),), inline_blobs=(b"\x00" * 32,)), "m.pte")
    assert [x.rule for x in result.findings] == ["EXT002"]


def test_a_pickle_in_a_delegate_blob_is_scanned():
    result = scan_bytes(f.build(delegates=(("EvilBackend", 1, 0),), segment_blobs=(f.SYSTEM_PICKLE,)), "m.pte")
    assert result.severity == Severity.CRITICAL
    assert any("os.system" in x.message for x in result.findings)


def test_truncation_never_reads_clean():
    data = f.build(("aten::add", "mylib::x"))
    for cut in range(8, len(data), 5):
        assert scan_bytes(data[:cut], "m.pte").severity >= Severity.MEDIUM, cut


def test_sniff():
    assert executorch.sniff(f.build()[:16], 16) == 95
    assert executorch.sniff(b"\x00\x00\x00\x00TFL3", 8) == 0


@pytest.mark.parametrize("entry", f.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "executorch"
    assert result.severity == want, [x.message for x in result.findings]
