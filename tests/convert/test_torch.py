"""Round trips on real torch.save outputs: the SafeTensors output loaded with
`safetensors.torch.load_file` equals `torch.load(weights_only=True)` of the input, key by key."""

import json
import os

import pytest
import torch
from fixtures import convert_files as cf
from safetensors import safe_open
from safetensors.torch import load_file

from airlock.core.convert import ConvertError, RefusedCritical, convert


def assert_same(out: dict, expected: dict):
    assert list(sorted(out)) == list(sorted(expected))
    for key, want in expected.items():
        got = out[key]
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        # Compare raw bits: NaN-safe and exact for every dtype, fp8 included.
        assert torch.equal(got.contiguous().reshape(-1).view(torch.uint8), want.contiguous().reshape(-1).view(torch.uint8)), key


def flatten(d: dict, prefix="") -> dict:
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            flat[f"{prefix}{k}"] = v
    return flat


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_every_dtype_round_trips(tmp_path, legacy):
    tensors = cf.all_dtype_tensors()
    if legacy:
        # torch.load cannot read fp8 or uint16/32/64 back from the legacy format (an UntypedStorage
        # has no dtype there); the reader refuses them the same way, with a clear message.
        unreadable = {"f8_e4m3", "f8_e5m2", "u16", "u32", "u64"}
        src = cf.save({k: tensors[k] for k in unreadable}, tmp_path / "fp8.pt", legacy=True)
        with pytest.raises(ConvertError, match="untyped storages"):
            convert(src)
        tensors = {k: v for k, v in tensors.items() if k not in unreadable}
    src = cf.save(tensors, tmp_path / "all.pt", legacy=legacy)
    report = convert(src)
    assert report.verified and report.severity in ("none", "info", "low")
    assert_same(load_file(report.outputs[0]), torch.load(src, weights_only=True))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_views_tied_weights_and_non_contiguous(tmp_path, legacy):
    state = cf.views_and_strides()
    src = cf.save(state, tmp_path / "views.pt", legacy=legacy)
    report = convert(src)
    expected = torch.load(src, weights_only=True)
    assert not expected["t.transposed"].is_contiguous()  # the input really is strided
    assert_same(load_file(report.outputs[0]), expected)
    assert report.aliases == {}


def test_dedupe_writes_tied_weights_once(tmp_path):
    src = cf.save(cf.views_and_strides(), tmp_path / "views.pt")
    report = convert(src, dedupe=True)
    assert report.aliases == {"lm_head.weight": "emb.weight"}
    out = load_file(report.outputs[0])
    assert "lm_head.weight" not in out
    with safe_open(report.outputs[0], "pt") as f:
        assert json.loads(f.metadata()["airlock.aliases"]) == {"lm_head.weight": "emb.weight"}
    expected = torch.load(src, weights_only=True)
    out["lm_head.weight"] = out["emb.weight"]
    assert_same(out, expected)


def test_module_state_dict_with_parameters_and_buffers(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    src = tmp_path / "pytorch_model.bin"
    torch.save(model.state_dict(), src)
    report = convert(src)
    assert os.path.basename(report.outputs[0]) == "model.safetensors"
    assert_same(load_file(report.outputs[0]), torch.load(src, weights_only=True))


class _Block(torch.nn.Module):
    """A module whose class the converter cannot import (defined in the test): nothing of it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)
        self.norm = torch.nn.BatchNorm1d(3)
        self.shared = self.proj  # one submodule under two names: state_dict() lists it under the first
        self.head = torch.nn.Linear(3, 2, bias=False)  # bias None: absent from state_dict()
        self.register_buffer("scale", torch.arange(3.0))
        self.register_buffer("cache", torch.zeros(5), persistent=False)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["module", "in-a-dict"])
def test_a_pickled_module_converts_to_its_state_dict(tmp_path, legacy, wrapped):
    model = _Block()
    src = tmp_path / "model.pt"
    torch.save({"model": model, "epoch": 3} if wrapped else model, src,
               _use_new_zipfile_serialization=not legacy)
    report = convert(src)
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("shared.")}
    assert_same(load_file(report.outputs[0]), expected)
    assert "cache" not in load_file(report.outputs[0])
    assert report.selected == ("model" if wrapped else "")


def test_lightning_checkpoint_picks_the_state_dict(tmp_path):
    state = {"model.layer.weight": torch.randn(3, 3), "model.layer.bias": torch.randn(3)}
    src = cf.save(cf.lightning(state), tmp_path / "last.ckpt")  # 2 weights, 3 Adam tensors per param
    report = convert(src)
    assert report.selected == "state_dict"
    loaded = torch.load(src, weights_only=True)
    assert_same(load_file(report.outputs[0]), loaded["state_dict"])
    skipped = dict(report.skipped)
    assert "optimizer_states" in skipped and "epoch" in skipped
    # --key picks the optimizer state of parameter 0 instead.
    other = convert(src, tmp_path / "opt.safetensors", key="optimizer_states.0.state.0")
    assert_same(load_file(other.outputs[0]), loaded["optimizer_states"][0]["state"][0])


def test_nested_dicts_are_joined_and_scalars_kept(tmp_path):
    ckpt = {"model": {"encoder": {"w": torch.ones(2), "b": torch.zeros(2)}, "head": torch.eye(2),
                      "decoder": {"w": torch.full((2,), 3.0)}, "dim": 2, "act": "gelu", "scale": 0.5},
            "optimizer": {"lr": 0.1}}
    src = cf.save(ckpt, tmp_path / "nested.pth")
    report = convert(src, key="model")
    loaded = torch.load(src, weights_only=True)
    assert_same(load_file(report.outputs[0]), flatten(loaded["model"]))
    with safe_open(report.outputs[0], "pt") as f:
        meta = f.metadata()
    assert meta == {"dim": "2", "act": "gelu", "scale": "0.5", "format": "pt"}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_storages_saved_on_cuda(tmp_path, legacy):
    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.arange(3, dtype=torch.int64)}
    src = cf.save(state, tmp_path / "cpu.pt", legacy=legacy)
    expected = torch.load(src, weights_only=True)
    if legacy:
        cuda = tmp_path / "cuda.pt"
        cuda.write_bytes(src.read_bytes())
        cf.relocate_legacy(cuda, "cuda:0")
    else:
        cuda = cf.rebuild_zip(src, tmp_path / "cuda.pt", location="cuda:0")
    assert b"cuda:0" in cuda.read_bytes()
    report = convert(cuda)
    assert_same(load_file(report.outputs[0]), expected)


def test_deflated_zip_members(tmp_path):
    src = cf.save(cf.views_and_strides(), tmp_path / "plain.pt")
    expected = torch.load(src, weights_only=True)
    deflated = cf.rebuild_zip(src, tmp_path / "deflated.pt", deflate=True)
    report = convert(deflated)
    assert_same(load_file(report.outputs[0]), expected)


def test_sharded_checkpoint_gives_shards_and_index(tmp_path):
    shards = [{f"layer{i}.weight": torch.randn(32, 32) for i in range(j * 3, j * 3 + 3)} for j in range(2)]
    index = cf.sharded(tmp_path, shards)
    report = convert(tmp_path, max_shard_size=3 * 32 * 32 * 4)
    assert [os.path.basename(p) for p in report.outputs] == ["model-00001-of-00002.safetensors",
                                                             "model-00002-of-00002.safetensors"]
    assert report.index_path == str(tmp_path / "model.safetensors.index.json")
    weight_map = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    merged = {}
    for path in report.outputs:
        part = load_file(path)
        assert all(weight_map[k] == os.path.basename(path) for k in part)
        merged.update(part)
    expected = {}
    for name in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        expected.update(torch.load(tmp_path / name, weights_only=True))
    assert_same(merged, expected)


def test_legacy_tar_against_a_hand_built_expected_dict(tmp_path):
    src, expected = cf.legacy_tar(tmp_path / "old.tar")
    report = convert(src)
    out = load_file(report.outputs[0])
    assert sorted(out) == sorted(expected)
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    for key, (dtype, shape, values) in expected.items():
        assert out[key].dtype == dtypes[dtype] and tuple(out[key].shape) == shape
        assert out[key].flatten().tolist() == values


def test_critical_input_is_refused_unless_allowed(tmp_path):
    clean = cf.save({"w": torch.ones(3), "b": torch.zeros(2)}, tmp_path / "clean.pt")
    evil = cf.evil_zip(clean, tmp_path / "evil.pt")
    with pytest.raises(RefusedCritical, match=r"refused: .*(posix|os)\.system"):
        convert(evil)
    assert not (tmp_path / "evil.safetensors").exists()
    report = convert(evil, allow_critical=True)
    assert report.severity == "critical"
    assert sorted(load_file(report.outputs[0])) == ["b", "w"]
    assert "__evil__" in dict(report.skipped)
    assert not os.path.exists("/tmp/airlock-convert-pwned")


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ConvertError, match=r"junk\.bin"):
        convert(junk)


def test_index_naming_a_shard_outside_its_folder_is_refused(tmp_path):
    (tmp_path / "inner").mkdir()
    cf.save({"w": torch.ones(2)}, tmp_path / "outside.bin")
    index = tmp_path / "inner" / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "../outside.bin"}}))
    with pytest.raises(ConvertError, match="outside its folder"):
        convert(index)
    index.write_text(json.dumps({"weight_map": {"w": "missing.bin"}}))
    with pytest.raises(ConvertError, match="missing"):
        convert(index)
    index.write_text("{not json")
    with pytest.raises(ConvertError, match="not valid JSON"):
        convert(index)


class _Python2Pickler:
    """A pickle module for torch.save that writes an OrderedDict the way Python 2 did: the class
    called with a list of [key, value] pairs (old checkpoints, e.g. lpips's shipped weights)."""

    import pickle as _pickle

    dump = staticmethod(_pickle.dump)

    class Pickler(_pickle.Pickler):
        def reducer_override(self, obj):
            from collections import OrderedDict

            if type(obj) is OrderedDict:
                return OrderedDict, ([[k, v] for k, v in obj.items()],)
            return NotImplemented


def test_python2_ordered_dict_of_pairs(tmp_path):
    """Regression: a legacy checkpoint whose state dict is OrderedDict([[key, tensor], …]) gave
    "no tensors found" (and no tensor nodes in the tree); torch.load reads it."""
    from collections import OrderedDict

    from airlock.core.scan import scan_file

    state = OrderedDict([("lin0.weight", torch.arange(6, dtype=torch.float32).reshape(1, 6, 1, 1)),
                         ("lin1.weight", torch.ones(3, dtype=torch.float16))])
    src = tmp_path / "py2.pth"
    torch.save(state, src, pickle_module=_Python2Pickler, _use_new_zipfile_serialization=False)
    assert b"ccollections\nOrderedDict\n" in src.read_bytes() or b"collections\nOrderedDict" in src.read_bytes()
    expected = torch.load(src, weights_only=True)
    assert_same(load_file(convert(src).outputs[0]), expected)
    result = scan_file(src)
    try:
        labels = [node.label for node in result.root.walk(expand_lazy=True) if node.kind == "tensor"]
    finally:
        result.close()
    assert any(label.startswith("lin0.weight") for label in labels), labels


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # deprecated, still written
def test_a_quantized_torch_tensor_is_named_as_such_when_left_out(tmp_path):
    quantized = torch.quantize_per_tensor(torch.linspace(-1, 1, 16), 0.1, 0, torch.qint8)
    src = tmp_path / "q.pt"
    torch.save({"q": quantized, "w": torch.ones(2)}, src)
    report = convert(src)
    assert sorted(load_file(report.outputs[0])) == ["w"]
    assert dict(report.skipped)["q"] == "a quantized torch tensor: SafeTensors has no quantized dtypes"
