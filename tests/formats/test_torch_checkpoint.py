"""read_checkpoint, the converter's API: every TensorSpec is checked against torch.load of the same file."""

from __future__ import annotations

import json
import pickle
import zlib
from importlib import resources
from pathlib import Path

import pytest
import torch
from fixtures.torch_files import (
    EVIL_P0,
    Member,
    build_zip,
    legacy_tar,
    state_dict_all_dtypes,
    torch_save,
    torch_save_legacy,
    zip_members,
)

from airlock.core.convert.torch_input import read_checkpoint
from airlock.core.errors import FormatError
from airlock.core.findings import Severity
from airlock.core.pickle.values import Call
from airlock.core.tensor_spec import DEFLATED, TensorSpec, as_mapping


def materialize(spec: TensorSpec, data: bytes, dtype: torch.dtype) -> torch.Tensor:
    """The tensor a TensorSpec describes, rebuilt from the file's bytes alone."""
    ref = spec.storage
    raw = data[ref.file_offset : ref.file_offset + (ref.compressed_size or ref.nbytes)]
    if ref.compression == DEFLATED:
        raw = zlib.decompress(raw, -15)
    assert len(raw) == ref.nbytes
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype)
    return flat.as_strided(spec.shape, spec.strides, spec.storage_offset)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bytes(
        a.contiguous().view(-1).view(torch.uint8).numpy()) == bytes(b.contiguous().view(-1).view(torch.uint8).numpy())


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def check_against_torch(path: Path, *, weights_only: bool = True) -> None:
    ckpt = read_checkpoint(path)
    expected = torch.load(path, weights_only=weights_only)
    got = dict(as_mapping(ckpt.root))
    assert list(got) == list(expected)
    data = path.read_bytes()
    for key, t in expected.items():
        spec = got[key]
        assert isinstance(spec, TensorSpec), key
        assert spec.shape == tuple(t.shape) and spec.strides == t.stride()
        assert same(materialize(spec, data, t.dtype), t), key


def test_zip_every_dtype(tmp_path):
    path = write(tmp_path, "all.pt", torch_save(state_dict_all_dtypes()))
    ckpt = read_checkpoint(path)
    assert ckpt.format == "torch_zip"
    assert ckpt.severity == Severity.INFO
    assert [f.rule for f in ckpt.findings] == ["TZ001"]
    check_against_torch(path)
    codes = {k: v.dtype for k, v in as_mapping(ckpt.root)}
    assert codes["bfloat16"] == "BF16"
    assert codes["float8_e4m3fn"] == "F8_E4M3"
    assert codes["uint16"] == "U16"
    assert codes["bool"] == "BOOL"
    assert codes["complex64"] == "C64"


def test_zip_shared_strided_and_parameters(tmp_path):
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    sd = {"base": base, "t": base.t(), "slice": base[1:3, ::2], "p": torch.nn.Parameter(torch.ones(3))}
    check_against_torch(write(tmp_path, "views.pt", torch_save(sd)))
    ckpt = read_checkpoint(tmp_path / "views.pt")
    specs = dict(as_mapping(ckpt.root))
    assert specs["t"].storage == specs["base"].storage
    assert not specs["t"].is_contiguous


def test_zip_deflated_storages(tmp_path):
    members = zip_members(torch_save({"w": torch.arange(100, dtype=torch.float64)}))
    for m in members:
        m.method = 8
    path = write(tmp_path, "deflated.pt", build_zip(members))
    check_against_torch(path, weights_only=False)
    spec = dict(as_mapping(read_checkpoint(path).root))["w"]
    assert spec.storage.compression == DEFLATED
    assert spec.storage.compressed_size < spec.storage.nbytes


def test_legacy_every_typed_dtype(tmp_path):
    sd = {k: v for k, v in state_dict_all_dtypes().items()
          if not k.startswith(("float8", "uint16", "uint32", "uint64"))}
    sd["view"] = sd["float32"][1]
    path = write(tmp_path, "legacy.bin", torch_save_legacy(sd))
    assert read_checkpoint(path).format == "torch_legacy"
    check_against_torch(path)


def test_legacy_tar(tmp_path):
    path = write(tmp_path, "old.tar", legacy_tar([0.5, 1.5, 2.5, 3.5]))
    ckpt = read_checkpoint(path)
    assert ckpt.format == "torch_tar"
    check_against_torch(path, weights_only=False)


@pytest.mark.slow
def test_nested_checkpoint_keeps_dicts_symbolic(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    ckpt_obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 7}
    path = write(tmp_path, "train.ckpt", torch_save(ckpt_obj))
    ckpt = read_checkpoint(path)
    root = dict(as_mapping(ckpt.root))
    assert root["epoch"] == 7
    assert isinstance(root["model"], Call)  # OrderedDict stays a symbolic call with map_items
    weights = dict(as_mapping(root["model"]))
    assert same(materialize(weights["weight"], path.read_bytes(), torch.float32), model.weight.detach())
    state = dict(as_mapping(dict(as_mapping(root["optimizer"]))["state"]))
    momentum = dict(as_mapping(state[0]))["momentum_buffer"]
    assert isinstance(momentum, TensorSpec)


def test_tied_weights_share_one_spec(tmp_path):
    w = torch.ones(2, 2)
    path = write(tmp_path, "tied.pt", torch_save({"a": w, "b": w}))
    specs = dict(as_mapping(read_checkpoint(path).root))
    assert specs["a"] is specs["b"]


def test_module_pickle_reports_its_severity(tmp_path):
    path = write(tmp_path, "model.pt", torch_save(torch.nn.Linear(2, 2)))
    ckpt = read_checkpoint(path)
    assert ckpt.severity == Severity.MEDIUM
    assert isinstance(ckpt.root, Call)


def test_hostile_checkpoint_is_described_with_its_verdict(tmp_path):
    members = zip_members(torch_save({"w": torch.ones(2)}))
    path = write(tmp_path, "evil.pt", build_zip([*members, Member("archive/x.json", EVIL_P0)]))
    ckpt = read_checkpoint(path)
    assert ckpt.severity == Severity.CRITICAL
    assert any(f.rule == "PKL006" for f in ckpt.findings)


def test_non_torch_input_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="not a PyTorch checkpoint"):
        read_checkpoint(write(tmp_path, "plain.pkl", pickle.dumps({"a": 1}, protocol=2)))
    with pytest.raises(FormatError):
        read_checkpoint(write(tmp_path, "empty.pt", b""))
    members = [m for m in zip_members(torch_save({"w": torch.ones(4)})) if not m.name.endswith("/data/0")]
    with pytest.raises(FormatError, match="missing"):
        read_checkpoint(write(tmp_path, "broken.pt", build_zip(members)))


def test_weights_only_allowlist_matches_installed_torch():
    import torch._weights_only_unpickler as wo

    text = resources.files("airlock.resources").joinpath("policy", "torch_weights_only.json").read_text()
    data = json.loads(text)
    names = {e["name"] for e in data["entries"]}
    assert names == set(wo._get_allowed_globals())
    assert all(e["reason"] for e in data["entries"])
    assert set(data["blocked_modules"]) == set(wo._blocklisted_modules)
