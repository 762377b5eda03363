"""joblib: every array found where joblib.load finds it, old formats, compression, hostile variants."""

import io
import pickle
import pickletools
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
from fixtures import joblib_files as jf
from fixtures import numpy_files as nf

from airlock.core.findings import Severity
from airlock.core.formats import joblib as joblib_format
from airlock.core.scan import scan_bytes, scan_file
from airlock.core.source import Source
from airlock.core.tree import FILE, TENSOR

CORPUS = jf.corpus()
JOBLIB_DATA = Path(joblib.__file__).parent / "test" / "data"
SHIPPED = sorted(p for p in JOBLIB_DATA.glob("joblib_*") if p.is_file())


def scan(data, name="x.joblib"):
    result = scan_bytes(data, name)
    result.close()
    return result


def rules(result):
    return {f.rule for f in result.findings}


def arrays(result):
    return [n for n in result.root.walk(expand_lazy=True) if n.kind == TENSOR]


def joblib_node(result):
    return next(n for n in result.root.walk() if n.kind == FILE and n.attrs.get("format") == "joblib")


@pytest.mark.parametrize("name,data,expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus(name, data, expected):
    result = scan(data, name)
    assert "AIR001" not in rules(result), result.findings
    if expected >= Severity.HIGH:
        assert result.severity >= expected, [(f.rule, f.message) for f in result.findings]
    else:
        assert expected <= result.severity < Severity.HIGH, [(f.rule, f.message) for f in result.findings]


def test_joblib_ships_its_test_data():
    assert len(SHIPPED) >= 60  # 0.8.4 ... 0.11.0, every compression, companion files


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_joblibs_own_test_data_of_every_version(path):
    result = scan_file(path)
    try:
        assert not rules(result) & {"AIR001", "AIR002", "AIR003"}, result.findings
        assert result.severity <= Severity.MEDIUM, [(f.rule, f.message) for f in result.findings]
        if path.suffix != ".npy" and not path.name.endswith(".npy.z"):
            assert any(n.attrs.get("format") == "joblib" for n in result.root.walk())
    finally:
        result.close()


def test_old_dump_scans_its_companion_npy_files():
    path = JOBLIB_DATA / "joblib_0.9.2_pickle_py35_np19.pkl"
    result = scan_file(path)
    try:
        companions = [n for n in result.root.walk() if n.label.startswith("companion file")]
        assert len(companions) == 4
        inner = [n for n in result.root.walk() if n.kind == FILE and n.attrs.get("format") == "npy"]
        assert len(inner) == 4
        assert any(n.attrs.get("dtype") == "object" for n in arrays(result))  # the _03.npy object array
    finally:
        result.close()


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("seekable", [True, False])
def test_arrays_are_found_where_joblib_reads_them(protocol, seekable):
    value = jf.sample()
    data = jf.dump(value, protocol=protocol, seekable=seekable)
    result = scan(data)
    assert result.format == "joblib"
    assert result.severity < Severity.LOW, result.findings
    nodes = arrays(result)
    originals = [v for v in value.values() if isinstance(v, np.ndarray)]
    assert len(nodes) == len(originals)
    for node, arr in zip(nodes, originals):  # joblib writes them in dict order
        assert node.attrs["shape"] == arr.shape
        if arr.dtype.hasobject:
            assert node.attrs["object"] is True
            continue
        assert node.attrs["size"] == arr.nbytes
        order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
        assert data[node.offset:node.offset + node.attrs["size"]] == arr.tobytes(order=order)
    assert joblib.load(io.BytesIO(data))["n"] == 3  # the generated file is valid for joblib itself


@pytest.mark.parametrize("compression", jf.COMPRESSIONS)
def test_compressed_dumps(compression):
    data = jf.dump(jf.sample(), compress=(compression, 3))
    result = scan(data, f"model.{compression}.joblib")
    assert result.format == "compressed"
    assert result.severity < Severity.LOW, result.findings
    assert len([n for n in joblib_node(result).walk(expand_lazy=True) if n.kind == TENSOR]) == 6


def test_dtype_sizes_follow_numpy():
    value = {"u": np.array(["abc", "de"]), "s": np.array([b"xyz"]), "dt": np.array(["2024-01-01"], "M8[s]"),
             "v": np.zeros(2, dtype=[("a", "<i2"), ("b", "<f4", (3,))]), "c": np.ones(2, np.complex64)}
    data = jf.dump(value)
    result = scan(data)
    assert result.severity < Severity.LOW, result.findings
    assert [n.attrs["size"] for n in arrays(result)] == [v.nbytes for v in value.values()]


def test_object_array_nested_pickle_is_scanned():
    data = jf.dump({"a": np.arange(3), "o": np.array([nf.Evil()], dtype=object), "b": np.ones(2)})
    result = scan(data)
    assert result.severity == Severity.CRITICAL
    labels = [n.label for n in result.root.children()]
    assert any(label.startswith("object array #2 pickle") for label in labels)
    assert len(arrays(result)) == 3  # reading went on after the nested pickle


def test_hidden_payload_is_where_a_plain_unpickler_reads_it():
    data = jf.hidden_in_array_bytes()
    result = scan(data)
    hidden = [f for f in result.findings if f.rule == "JBL004"]
    assert hidden and max(f.severity for f in hidden) == Severity.CRITICAL
    # Cross-check with pickletools (it decodes, never runs): a plain reader meets os.system there.
    ops = []
    try:
        for op, arg, pos in pickletools.genops(data):
            ops.append((op.name, arg, pos))
    except ValueError:
        pass
    globals_at = {pos for name, arg, pos in ops if name == "GLOBAL" and arg == "os system"}
    assert globals_at & {f.offset for f in hidden}
    assert np.array_equal(joblib.load(io.BytesIO(data))[1], 1)  # joblib itself skips it as data


def test_regression_hidden_payload_in_a_stacked_pickle():
    # Found by tests/differential: a benign pickle first, the joblib stream second; a loader that
    # keeps calling pickle.load reaches the payload in the second stream's array bytes.
    data = pickle.dumps({"a": 1}, protocol=4) + jf.hidden_in_array_bytes()
    result = scan(data)
    assert result.severity == Severity.CRITICAL
    assert "JBL004" in rules(result)
    assert "AIR010" not in rules(result)  # never "data-only" next to hidden code


def test_frame_interleaving_is_real_for_joblib():
    data = jf.frame_interleaved()
    result = scan(data)
    assert "JBL003" in rules(result)
    assert np.array_equal(joblib.load(io.BytesIO(data)), np.array([1, 2], dtype=np.uint8))


def test_look_alike_wrapper_does_not_skip_bytes():
    # A class named NumpyArrayWrapper outside joblib: joblib.load does not skip anything after it.
    state = b"}(" + jf._u("shape") + b"K\x01\x85" + jf._u("dtype") + jf._u("x") + b"u"
    data = (b"\x80\x02cevil\nNumpyArrayWrapper\n)\x81" + state + b"b0"
            + nf.payload(0)[:-1] + b"0" + b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n0N.")
    result = scan(data)
    assert result.severity == Severity.CRITICAL


def test_truncated_array_is_malformed():
    data = jf.dump({"w": np.arange(1000.0)})
    result = scan(data[:2000])
    assert any(f.rule == "AIR002" and "truncated joblib array" in f.message for f in result.findings)


def test_zf_container_is_what_joblib_loads(tmp_path):
    inner = pickle.dumps({"w": [0, 1, 2, 3]}, protocol=2)
    path = tmp_path / "old.pkl.gz"
    path.write_bytes(jf.zf(inner))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert joblib.load(path) == {"w": [0, 1, 2, 3]}
    result = scan_file(path)
    try:
        assert result.format == "joblib"
        assert result.root.attrs["declared_length"] == len(inner)
        assert result.severity < Severity.LOW, result.findings
    finally:
        result.close()


def test_zf_content_does_not_honour_numpy_array_wrappers(tmp_path):
    # ZipNumpyUnpickler knows only NDArrayWrapper: array bytes after a NumpyArrayWrapper are opcodes.
    path = tmp_path / "old.pkl.gz"
    path.write_bytes(jf.zf(jf.dump({"w": np.arange(4)}, protocol=2)))
    with warnings.catch_warnings(), pytest.raises(KeyError):
        warnings.simplefilter("ignore", DeprecationWarning)
        joblib.load(path)
    result = scan_file(path)
    try:
        assert result.severity >= Severity.HIGH
        assert arrays(result) == []
    finally:
        result.close()


def test_zf_length_lie_is_malformed():
    inner = pickle.dumps([1, 2, 3], protocol=2)
    data = b"ZF" + hex(len(inner) + 10).encode().ljust(19) + __import__("zlib").compress(inner)
    assert "AIR002" in rules(scan(data))


def test_companion_files_next_to_the_dump(tmp_path):
    dump = tmp_path / "model.pkl"
    dump.write_bytes(jf.nd_wrapper_dump(["model.pkl_01.npy", "model.pkl_02.npy", "model.pkl_03.npy"]))
    (tmp_path / "model.pkl_01.npy").write_bytes(nf.npy(np.arange(3)))
    (tmp_path / "model.pkl_02.npy").write_bytes(nf.npy(np.array([nf.Evil()], dtype=object)))
    result = scan_file(dump)
    try:
        assert result.severity == Severity.CRITICAL
        critical = [f for f in result.findings if f.severity == Severity.CRITICAL]
        assert all(f.node.path().split(" / ")[1].startswith("companion file model.pkl_02.npy") for f in critical)
        assert "JBL002" in rules(result)  # _03 is missing
    finally:
        result.close()


def test_sniffing_claims_only_joblib_pickles():
    plain = pickle.dumps({"joblib.numpy_pickle": "just a string"}, protocol=4)
    assert joblib_format.sniff_source(Source.from_bytes(plain, "p")) == 0
    assert scan(plain, "x.pkl").format == "pickle"
    assert joblib_format.sniff_source(Source.from_bytes(jf.dump(np.arange(3)), "j")) > 90
    assert joblib_format.sniff(jf.zf(b"x"), 30) > 90
    assert joblib_format.sniff(b"ZFnot a hex length here", 23) == 0


def test_first_array_deep_in_the_stream_is_still_found():
    value = {"meta": ["x" * 1000] * 3000, "w": np.arange(5.0)}  # ~3 MB of pickle before the wrapper
    data = jf.dump(value)
    result = scan(data)
    assert result.format == "joblib"
    assert len(arrays(result)) == 1
