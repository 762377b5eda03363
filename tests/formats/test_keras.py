"""Keras .h5 and .keras: config walk (Lambda, gadgets, modules, custom objects), HDF5 tree, links."""

import io
import json
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
from fixtures import keras_files as K
from helpers import assert_corpus_verdict

from airlock.core.findings import Severity
from airlock.core.formats import keras as keras_format
from airlock.core.formats.keras_config import readable_names
from airlock.core.isolate import ParserSession
from airlock.core.scan import scan_bytes, scan_file


@pytest.fixture(autouse=True, scope="module")
def _one_parser_child():
    """Files here share one parser child, as a CLI scan's files do (core/isolate.py's ParserSession):
    a child per file costs a fresh interpreter and h5py's import each time. The session replaces its
    child after any answer but a clean one, so a failing file still never meets the next."""
    with ParserSession() as session, session.scanning():
        yield


def _rules(result):
    return sorted({f.rule for f in result.findings})


def _nodes(result, kind):
    return [n for n in result.root.walk() if n.kind == kind]


@pytest.mark.parametrize("entry", K.corpus(), ids=lambda e: e[0])
def test_corpus_entry(entry):
    name, data, want = entry
    result = scan_bytes(data, name)
    assert result.format == "keras"
    assert_corpus_verdict(result, want)


EXPECTED = {
    "lambda_keras3": "KRS001", "lambda_in_time_distributed": "KRS001", "lambda_in_bidirectional_backward": "KRS001",
    "lambda_in_submodel": "KRS001", "lambda_in_functional": "KRS001", "lambda_as_activation": "KRS001",
    "os_system_function": "KRS002", "builtins_exec_layer": "KRS002", "subprocess_popen_layer": "KRS002",
    "keras_get_file": "KRS002", "keras_src_get_file": "KRS002", "enable_unsafe_deserialization": "KRS002",
    "dunder_walk": "KRS002", "unknown_module_function": "KRS003", "unknown_module_layer": "KRS003",
}


# get_file's arguments are judged too: its fname is a path outside the archive, its origin a URL.
ALSO = {"keras_get_file": ["KRS007", "KRS008"], "keras_src_get_file": ["KRS007"]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_hostile_config_gets_its_rule(name):
    result = scan_bytes(K.keras_zip(K.hostile_configs()[name]), f"{name}.keras")
    assert _rules(result) == sorted([EXPECTED[name], *ALSO.get(name, [])])
    want = Severity.HIGH if EXPECTED[name] == "KRS003" else Severity.CRITICAL
    assert result.severity == want


def test_lambda_shows_code_size_and_names_without_unmarshalling():
    result = scan_bytes(K.keras_zip(K.sequential([K.lambda_keras3("evil")])), "m.keras")
    (finding,) = result.findings
    code = K.lambda_code()
    assert f"{len(code):,} bytes of marshalled Python bytecode" in finding.message
    assert "system" in finding.message and "MARKER" in finding.message and "'evil'" in finding.message
    assert finding.node.kind == "layer" and finding.node.attrs["code_bytes"] == len(code)
    assert "config.layers[1]" in finding.message


def test_readable_names_come_from_marshal_string_records():
    names = readable_names(K.lambda_code())
    assert {"os", "system", "MARKER", "<lambda>"} <= set(names)


def test_keras2_lambda_in_h5_model_config_is_critical():
    data = K.h5_file(K.keras2_model([K.keras2_dense(), K.lambda_keras2()]))
    result = scan_bytes(data, "m.h5")
    assert _rules(result) == ["KRS001"] and result.severity == Severity.CRITICAL
    assert result.findings[0].message.startswith("model_config attribute at config.layers[2]")


def test_keras2_named_function_lambda_is_critical():
    layer = K.lambda_keras2()
    layer["config"].update(function="system", function_type="function", module="os")
    result = scan_bytes(K.h5_file(K.keras2_model([layer])), "m.h5")
    assert result.severity == Severity.CRITICAL and "os.system" in result.findings[0].message


def test_training_config_is_walked_too():
    training = {"loss": {"module": "os", "class_name": "function", "config": "system", "registered_name": None}}
    result = scan_bytes(K.h5_file(K.keras2_model([K.keras2_dense()]), training_config=training), "m.h5")
    assert _rules(result) == ["KRS002"]
    assert result.findings[0].message.startswith("training_config attribute")


def test_tf_op_lambda_is_judged_by_the_function_it_calls():
    benign = {"class_name": "TFOpLambda", "config": {"name": "tf.math.add", "function": "math.add"}}
    hostile = {"class_name": "TFOpLambda", "config": {"name": "w", "function": "io.write_file"}}
    assert scan_bytes(K.h5_file(K.keras2_model([benign])), "m.h5").findings == []
    result = scan_bytes(K.h5_file(K.keras2_model([hostile])), "m.h5")
    assert _rules(result) == ["KRS002"] and "tf.io.write_file" in result.findings[0].message


def test_custom_objects_are_medium():
    keras2 = {"class_name": "Custom>Attention", "config": {"name": "att"}}
    result = scan_bytes(K.h5_file(K.keras2_model([keras2])), "m.h5")
    assert _rules(result) == ["KRS004"] and result.severity == Severity.MEDIUM
    registered = K.k3("my_package.layers", "MyLayer", {"name": "mine"}, "my_package>MyLayer")
    result = scan_bytes(K.keras_zip(K.sequential([registered])), "m.keras")
    assert _rules(result) == ["KRS004"]
    # A registered name does not excuse a denylisted module.
    disguised = K.k3("os", "system", {"name": "x"}, "my_package>Thing")
    assert _rules(scan_bytes(K.keras_zip(K.sequential([disguised])), "m.keras")) == ["KRS002"]


def test_keras_own_objects_stay_clean():
    result = scan_bytes(K.keras_zip(K.sequential([K.dense(), K.dense("d2", activation=K.k3(
        "keras.activations", "function", "relu", "relu"))])), "m.keras")
    assert result.findings == []
    classes = {n.attrs["class_name"] for n in _nodes(result, "layer")}
    assert {"Sequential", "Dense", "GlorotUniform", "L2", "MaxNorm", "DTypePolicy", "Adam"} <= classes


def test_h5_tree_has_weights_as_tensors_at_their_file_offsets():
    data = K.h5_file(K.keras2_model([K.keras2_dense()]))
    result = scan_bytes(data, "m.h5")
    tensors = {n.label: n for n in _nodes(result, "tensor")}
    assert set(tensors) == {"kernel:0", "bias:0"}
    kernel = tensors["kernel:0"]
    assert kernel.attrs["dtype"] == "float32" and kernel.attrs["shape"] == (4, 2) and kernel.attrs["size"] == 32
    with h5py.File(io.BytesIO(data), "r") as f:
        ds = f["model_weights/dense/dense/kernel:0"]
        assert kernel.offset == ds.id.get_offset()
        assert data[kernel.offset:kernel.offset + 32] == ds[()].tobytes()
    assert result.root.attrs["keras_version"] == "2.15.0"


def test_keras_zip_weights_are_parsed_as_nested_hdf5():
    result = scan_bytes(K.keras_zip(K.sequential([K.dense()])), "m.keras")
    labels = {n.label for n in _nodes(result, "tensor")}
    assert labels == {"0", "1"}
    meta = {n.attrs.get("key"): n.attrs.get("value") for n in _nodes(result, "metadata")}
    assert meta["keras_version"] == "3.5.0"


def test_external_links_and_storage_in_hdf5_are_high(tmp_path):
    def add(f):
        f["escape"] = h5py.ExternalLink("/etc/passwd", "/data")
        f.create_dataset("ext", shape=(4,), dtype="u1", external=[("/etc/hostname", 0, 4)])
    path = tmp_path / "m.h5"
    path.write_bytes(K.h5_file(K.keras2_model([K.keras2_dense()]), extra=add))
    result = scan_file(path)
    messages = [f.message for f in result.findings if f.rule == "KRS005"]
    assert len(messages) == 2 and result.severity == Severity.HIGH
    assert any("/etc/passwd" in m for m in messages) and any("/etc/hostname" in m for m in messages)
    result.close()


def test_hdf5_behind_a_user_block_is_found():
    buf = io.BytesIO()
    with h5py.File(buf, "w", userblock_size=512) as f:
        f.attrs["model_config"] = json.dumps(K.keras2_model([K.lambda_keras2()]))
        f.create_dataset("w", data=np.zeros(3, dtype=np.float32))
    result = scan_bytes(buf.getvalue(), "m.h5")
    assert result.format == "keras" and _rules(result) == ["KRS001"]


def test_truncated_h5_is_malformed_not_a_traceback():
    data = K.h5_file(K.keras2_model([K.keras2_dense()]))
    for cut in (100, len(data) // 2, len(data) - 10):
        result = scan_bytes(data[:cut], "m.h5")
        assert result.severity >= Severity.HIGH
        assert {f.rule for f in result.findings} <= {"AIR002", "AIR001"}, result.findings


def test_config_in_a_keras_zip_that_is_not_json_is_malformed():
    result = scan_bytes(K.keras_zip(b"{broken"), "m.keras")
    assert _rules(result) == ["AIR002"] and "config.json is not JSON" in result.findings[0].message


def test_bad_crc_member_is_malformed():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:  # stored: the payload is visible in the file
        zf.writestr("metadata.json", "{}")
        zf.writestr("config.json", json.dumps(K.sequential([K.dense()])))
    raw = bytearray(out.getvalue())
    pos = raw.find(b'"class_name"')
    raw[pos + 1] ^= 0x20  # the bytes change, the recorded CRC does not
    result = scan_bytes(bytes(raw), "m.keras")
    assert _rules(result) == ["AIR002"] and "Bad CRC-32" in result.findings[0].message


def test_sniff():
    h5 = K.h5_file(None)
    assert keras_format.sniff(h5[:4096], len(h5)) == 90
    assert keras_format.sniff(b"PK\x03\x04", 4) == 0
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("config.json", "{}")
    assert scan_bytes(plain_zip.getvalue(), "x.zip").format != "keras"  # config.json alone is not Keras
    assert scan_bytes(K.keras_zip(K.sequential([])), "x.bin").format == "keras"


def test_scanning_keras_never_imports_h5py_in_the_scanning_process(tmp_path):
    path = tmp_path / "m.h5"
    path.write_bytes(K.h5_file(K.keras2_model([K.keras2_dense()])))
    code = ("import sys\nfrom airlock.core.scan import scan_file\n"
            f"r = scan_file({str(path)!r})\nassert r.format == 'keras', r.format\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('h5py', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


# Values that make the loader read something else (keras_values): blobs, paths, URLs.

from airlock.core.formats.keras_values import classify_path  # noqa: E402 - grouped with its tests
from airlock.core.limits import Limits  # noqa: E402


def test_torch_module_wrapper_blob_is_scanned_as_a_nested_torch_checkpoint():
    name = "torch_module_wrapper_payload"
    config, members, _ = K.value_configs()[name]
    result = scan_bytes(K.keras_zip(config, members), f"{name}.keras")
    assert result.severity == Severity.CRITICAL
    embedded = next(f for f in result.findings if f.rule == "KRS006")
    assert "torch.load(weights_only=False)" in embedded.message and "safe_mode=False" in embedded.message
    assert "config.layers[1].config.module" in embedded.message and "a zip" in embedded.message
    critical = next(f for f in result.findings if f.severity == Severity.CRITICAL)
    # The payload is found in the torch checkpoint decoded from the config, and says where it came from.
    assert "system" in critical.message
    assert critical.member.startswith("config.json#config.layers[1].config.module")
    path = critical.node.path()
    assert "TorchModuleWrapper torch_module_wrapper" in path and "base64 blob" in path
    nested = next(n for n in result.root.walk() if n.kind == "data" and n.label.startswith("base64 blob"))
    assert nested.children()[0].attrs["format"] == "torch_zip"


def test_benign_torch_module_wrapper_is_medium_not_clean():
    config, members, _ = K.value_configs()["torch_module_wrapper_linear"]
    result = scan_bytes(K.keras_zip(config, members), "m.keras")
    assert result.severity == Severity.MEDIUM
    assert {"KRS006", "PKL005"} <= set(_rules(result))


def test_decoded_blobs_are_charged_to_the_decompression_budget(tmp_path):
    config, members, _ = K.value_configs()["torch_module_wrapper_payload"]
    path = tmp_path / "m.keras"
    path.write_bytes(K.keras_zip(config, members))
    # Inflating the deflated members is charged to the same budget: leave room for the two JSON
    # members, not for the blob their config carries.
    with zipfile.ZipFile(path) as zf:
        budget = sum(zf.getinfo(name).file_size for name in ("metadata.json", "config.json")) + 100
    result = scan_file(path, limits=Limits(max_decompressed_bytes=budget))
    result.close()
    assert set(_rules(result)) == {"AIR003"}
    blob = next(f for f in result.findings if "base64 blob" in f.message)
    assert f"{budget:,}" in blob.message


def test_lambda_code_is_not_taken_for_a_blob():
    result = scan_bytes(K.keras_zip(K.sequential([K.lambda_keras3()])), "m.keras")
    assert _rules(result) == ["KRS001"]
    assert not any(n.label.startswith("base64 blob") for n in result.root.walk())


@pytest.mark.parametrize(("value", "members", "verdict"), [
    ("/etc/passwd", None, "outside"), ("C:\\\\vocab.txt", None, "outside"), ("~/v.txt", None, "outside"),
    ("file:///etc/passwd", None, "outside"), ("../v.txt", frozenset({"v.txt"}), "outside"),
    ("assets/../../v.txt", frozenset({"v.txt"}), "outside"), ("v.txt", None, "outside"),
    ("v.txt", frozenset({"config.json"}), "outside"), ("https://example.com/v.txt", None, "url"),
    ("hdfs://cluster/v.txt", None, "url"), ("./assets/v.txt", frozenset({"assets/v.txt"}), None),
    ("assets", frozenset({"assets/v.txt"}), None), ("assets\\v.txt", frozenset({"assets/v.txt"}), None),
])
def test_paths_are_judged_against_the_archive(value, members, verdict):
    got = classify_path(value, members)
    assert (got[0] if got else None) == verdict


def test_urls_are_medium_under_any_argument_name_and_plain_strings_are_not():
    layer = K.k3("keras.layers", "Dense", {"name": "d", "units": 2, "weights_url": "https://example.com/w.bin",
                                          "note": "see https://example.com for details", "path": "layer_0"})
    result = scan_bytes(K.keras_zip(K.sequential([layer])), "m.keras")
    assert _rules(result) == ["KRS008"] and result.severity == Severity.MEDIUM
    assert "weights_url" in result.findings[0].message


@pytest.mark.parametrize(("name", "data"), [("loader.py", b"import os\n"), ("run.sh", b"echo hi\n"),
                                            ("assets/helper.bin", b"\x7fELF\x02\x01\x01" + bytes(40)),
                                            ("tool.exe", b"MZ" + bytes(60))])
def test_code_and_executables_in_a_keras_archive_are_medium(name, data):
    result = scan_bytes(K.keras_zip(K.sequential([K.dense()]), {name: data}), "m.keras")
    found = [f for f in result.findings if f.rule == "KRS009"]
    assert len(found) == 1 and name in found[0].message and found[0].severity == Severity.MEDIUM
