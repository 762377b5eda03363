""".npy and .npz: trees cross-checked with numpy, hostile variants flagged, malformed headers as findings."""

import io
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fixtures import numpy_files as nf

from airlock.core.findings import Severity
from airlock.core.formats import numpy_npz
from airlock.core.limits import Limits
from airlock.core.scan import scan_bytes, scan_file
from airlock.core.source import Source
from airlock.core.tree import PICKLE, TENSOR

CORPUS = nf.corpus()


def scan(data, name="x.npy", **kw):
    result = scan_bytes(data, name, **kw)
    result.close()
    return result


def rules(result):
    return {f.rule for f in result.findings}


def tensors(result):
    return [n for n in result.root.walk(expand_lazy=True) if n.kind == TENSOR]


@pytest.mark.parametrize("name,data,expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus(name, data, expected):
    result = scan(data, name)
    assert "AIR001" not in rules(result), result.findings  # no parser crash
    if expected >= Severity.HIGH:
        assert result.severity >= expected, [(f.rule, f.message) for f in result.findings]
    else:
        assert expected <= result.severity < Severity.HIGH, [(f.rule, f.message) for f in result.findings]


@pytest.mark.parametrize("name", sorted(nf.benign_arrays()))
def test_array_node_matches_numpy(name):
    arr = nf.benign_arrays()[name]
    data = nf.npy(arr)
    result = scan(data)
    assert result.format == "npy"
    assert result.findings == []
    (node,) = tensors(result)
    assert node.attrs["shape"] == arr.shape
    assert node.attrs["size"] == arr.nbytes
    assert node.attrs["dtype"] == str(arr.dtype)
    # The data sits at the node's offset: numpy writes C order, or Fortran order when flagged.
    assert node.offset == len(data) - arr.nbytes
    assert node.attrs["fortran_order"] == (arr.flags.f_contiguous and not arr.flags.c_contiguous)
    order = "F" if node.attrs["fortran_order"] else "C"
    assert data[node.offset:node.offset + node.length] == arr.tobytes(order=order)
    assert np.load(io.BytesIO(data)).shape == arr.shape  # the file is valid for numpy itself


def test_header_fields_are_shown():
    result = scan(nf.npy(np.zeros((2, 3), dtype="<i2")))
    labels = [n.label for n in result.root.walk()]
    assert "version 1.0" in labels
    assert "descr: '<i2'" in labels
    assert "shape: (2, 3)" in labels
    assert "fortran_order: False" in labels


def test_object_array_pickle_is_scanned_under_the_array():
    result = scan(nf.npy_raw("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", nf.payload()))
    (array,) = tensors(result)
    assert array.attrs["dtype"] == "object"
    assert [c.kind for c in array.children()] == [PICKLE]
    critical = [f for f in result.findings if f.severity == Severity.CRITICAL]
    assert critical and critical[0].offset > array.offset  # points into the pickle, past the header
    assert "NPY001" in rules(result)


def test_benign_object_array_is_data_only():
    result = scan(nf.npy(np.array(["a", 2, None], dtype=object)))
    assert result.severity == Severity.INFO
    assert tensors(result)[0].attrs.get("data_only") is True


@pytest.mark.parametrize("descr", ["'|O'", "'|O8'", "'O'", "'object'", "[('a', '<f8'), ('b', '|O')]",
                                   "[('p', [('q', [('r', '|O')])])]", "[('a', '|O', (2, 2))]", "('|O', (3,))"])
def test_every_object_spelling_is_scanned(descr):
    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}"
    result = scan(nf.npy_raw(header, nf.payload()))
    assert result.severity == Severity.CRITICAL, result.findings


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_versions(version):
    arr = np.arange(6, dtype="<u2")
    data = nf.npy_raw("{'descr': '<u2', 'fortran_order': False, 'shape': (6,), }", arr.tobytes(), version=version)
    result = scan(data)
    assert result.findings == []
    assert np.array_equal(np.load(io.BytesIO(data)), arr)


@pytest.mark.parametrize("data,needle", [
    (b"\x93NUMPY\x04\x00" + b"\x10\x00" + b" " * 16, "unsupported .npy version 4.0"),
    (b"\x93NUMPY\x01", "truncated"),
    (b"\x93NUMPY\x02\x00\x10\x00\x00", "header length is cut off"),
    (nf.npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", header_len=5000), "announces 5,000"),
    (nf.npy_raw(b"{'descr': '\xff', 'fortran_order': False, 'shape': (), }", version=(3, 0)), "not utf-8"),
    (nf.npy_raw("[1, 2]"), "not a dict"),
    (nf.npy_raw("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }"), "not a bool"),
    (nf.npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': [1], }"), "not a tuple of ints"),
    (nf.npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"), "negative dimension"),
    (nf.npy_raw("{'descr': 'nonsense', 'fortran_order': False, 'shape': (1,), }"), "not a dtype numpy accepts"),
    (nf.npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"), "truncated .npy data"),
    (nf.npy_raw("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"), "no pickle after the header"),
])
def test_malformed_headers_are_high_findings_with_offsets(data, needle):
    result = scan(data)
    high = [f for f in result.findings if f.severity >= Severity.HIGH]
    assert high, result.findings
    assert any(needle in f.message for f in high), [f.message for f in high]
    assert all(f.offset is not None for f in high)


def test_header_over_the_limit_is_a_limit_finding():
    data = nf.npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }")
    result = scan(data, limits=Limits(max_header_bytes=32))
    assert "AIR003" in rules(result)


def test_numpy_header_size_limit_is_noted():
    names = [(f"field_{i:05d}", "<u1") for i in range(1200)]
    data = nf.npy(np.zeros(1, dtype=names))
    result = scan(data)
    assert "NPY002" in rules(result)
    assert result.severity == Severity.LOW


def test_plain_trailing_bytes_are_low():
    result = scan(nf.npy(np.arange(3, dtype=np.int8)) + b"\x00garbage")
    assert rules(result) == {"AIR008"}
    assert result.severity == Severity.LOW


def test_file_on_disk_is_mapped_not_read_whole(tmp_path):
    path = tmp_path / "big.npy"
    arr = np.zeros((1024, 1024), dtype=np.float64)
    np.save(path, arr)
    result = scan_file(path)
    try:
        assert result.findings == []
        assert tensors(result)[0].attrs["size"] == arr.nbytes
    finally:
        result.close()


# .npz


def test_npz_members_are_parsed_and_offsets_point_into_members():
    arrays = {"a": np.arange(5, dtype=np.int32), "b": np.ones((2, 2))}
    data = nf.savez(**arrays)
    result = scan(data, "x.npz")
    assert result.format == "npz"
    assert result.findings == []
    nodes = {n.member: n for n in tensors(result)}
    assert set(nodes) == {"a.npy", "b.npy"}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for key, arr in arrays.items():
            node = nodes[f"{key}.npy"]
            member = zf.read(f"{key}.npy")
            assert member[node.offset:node.offset + node.length] == arr.tobytes()


def test_npz_compressed_members():
    data = nf.savez(True, a=np.arange(100.0), s=np.array(["x"]))
    result = scan(data, "x.npz")
    assert result.findings == []
    files = [n for n in result.root.children()]
    assert all(n.attrs["compression"] == "deflated" for n in files)
    assert len(tensors(result)) == 2


def test_npz_non_npy_member_is_sniffed():
    data = nf.npz({"a.npy": nf.npy(np.arange(3)), "notes.txt": nf.payload(0)})
    result = scan(data, "x.npz")
    assert result.format == "npz"
    assert result.severity == Severity.CRITICAL  # a pickle member is scanned wherever it sits


def test_npz_duplicate_names():
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("a.npy", nf.npy(np.zeros(2)))
            zf.writestr("a.npy", nf.npy(np.ones(3)))
    result = scan(buf.getvalue(), "x.npz")
    assert "NPY010" in rules(result)
    assert np.load(io.BytesIO(buf.getvalue()))["a"].shape == (3,)  # numpy reads the last one


def test_npz_bad_crc_is_malformed():
    data = bytearray(nf.npz({"a.npy": nf.npy(np.arange(50.0))}, zipfile.ZIP_DEFLATED))
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 16:cd + 20] = b"\x00\x00\x00\x01"  # central directory CRC
    local = data.find(b"PK\x03\x04")
    data[local + 14:local + 18] = b"\x00\x00\x00\x01"
    result = scan(bytes(data), "x.npz")
    assert any(f.rule == "AIR002" and "CRC" in f.message for f in result.findings), result.findings


def test_npz_member_bomb_is_capped():
    data = nf.npz({"a.npy": nf.npy(np.zeros(100_000))}, zipfile.ZIP_DEFLATED)
    result = scan(data, "x.npz", limits=Limits(max_decompressed_bytes=10_000))
    assert "AIR003" in rules(result)


@pytest.mark.parametrize("members,score", [
    ({"a.npy": b"x", "b.npy": b"y"}, 80),
    ({"a.npy": b"x", "readme.txt": b"y"}, 40),
    ({"archive/data.pkl": b"x"}, 0),
])
def test_npz_sniff(members, score):
    assert numpy_npz.sniff_source(Source.from_bytes(nf.npz(members), "z")) == score


def test_npz_needs_the_zip_at_offset_zero():
    # numpy.load only treats a file as npz when it starts with a zip signature.
    data = nf.payload() + nf.savez(a=np.arange(3))
    assert numpy_npz.sniff_source(Source.from_bytes(data, "z")) == 0


def test_scanning_a_pickle_imports_no_numpy():
    code = (
        "import sys, pickle\n"
        "from airlock.core.formats import numpy_npy, numpy_npz, joblib\n"
        "from airlock.core.source import Source\n"
        "data = pickle.dumps({'a': [1, 2]}, protocol=4)\n"
        "src = Source.from_bytes(data, 'p')\n"
        "assert numpy_npy.sniff(data, len(data)) == 0 and numpy_npz.sniff_source(src) == 0\n"
        "assert joblib.sniff_source(src) == 0\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_regression_corrupt_deflate_stream_is_malformed_not_a_crash():
    # Found by tests/robustness: zipfile raises zlib.error (not BadZipFile) on a damaged deflate stream.
    data = bytearray(nf.npz({"o.npy": nf.npy(np.arange(40.0))}, zipfile.ZIP_DEFLATED))
    start = data.find(b"o.npy") + len(b"o.npy")
    data[start:start + 4] = b"\xff\xff\xff\xff"
    result = scan(bytes(data), "x.npz")
    assert "AIR001" not in rules(result)
    assert any(f.rule == "AIR002" and "o.npy" in f.message for f in result.findings), result.findings


NUMPY_TEST_DATA = Path(np.__file__).parent / "lib" / "tests" / "data"


@pytest.mark.skipif(not NUMPY_TEST_DATA.is_dir(), reason="this numpy was installed without its test data")
def test_numpy_own_object_array_files_stay_below_medium():
    """numpy ships object arrays pickled by Python 2, numpy 0.x and Python 3 for its own tests: real,
    benign files. Regression: numpy.core._internal._reconstruct (the pre-1.0 ndarray rebuilder, still
    kept by numpy for those pickles) was rated medium as an unknown class."""
    files = sorted(p for p in NUMPY_TEST_DATA.iterdir() if p.suffix in (".npy", ".npz"))
    assert len(files) >= 5
    for path in files:
        result = scan_file(path)
        try:
            assert result.format in ("npy", "npz"), path.name
            assert result.severity < Severity.MEDIUM, (path.name, [(f.rule, f.message) for f in result.findings])
        finally:
            result.close()
