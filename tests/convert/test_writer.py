"""The streaming writer and verification: atomic output, refusals, sharding, one corrupt byte."""

import json
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from airlock.core.convert import ConvertError, VerificationFailed, convert
from airlock.core.convert import writer as writer_module
from airlock.core.convert.verify import verify_file
from airlock.core.errors import Cancelled


@pytest.fixture
def npz(tmp_path):
    arrays = {f"layer{i}": np.full((64, 64), i, dtype=np.float32) for i in range(6)}
    arrays["small"] = np.arange(3, dtype=np.int8)
    arrays["half"] = np.arange(5, dtype=np.float16)
    src = tmp_path / "model.npz"
    np.savez(src, **arrays)
    return src, arrays


def test_corrupting_one_byte_fails_verification(npz, tmp_path):
    src, _ = npz
    report = convert(src, tmp_path / "out.safetensors")
    written = report.files[0]
    assert verify_file(written)  # intact: passes
    target = written.tensors[3]
    with open(written.path, "r+b") as fh:
        fh.seek(target.start + 100)
        byte = fh.read(1)
        fh.seek(target.start + 100)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(VerificationFailed, match=f"tensor '{target.name}'.*differs from the source"):
        verify_file(written)


def test_corrupt_header_fails_verification(npz, tmp_path):
    src, _ = npz
    written = convert(src, tmp_path / "out.safetensors").files[0]
    with open(written.path, "r+b") as fh:
        fh.seek(20)
        fh.write(b"X")
    with pytest.raises(VerificationFailed, match="header"):
        verify_file(written)


def test_a_writer_bug_is_caught_before_the_output_appears(npz, tmp_path, monkeypatch):
    """If the bytes that reach the disk differ from the bytes read, convert() fails and leaves nothing."""
    src, _ = npz
    real = writer_module._write_all
    calls = {"n": 0}

    def flip_in_third_write(out, data):
        calls["n"] += 1
        if calls["n"] == 3:
            data = bytearray(data)
            data[0] ^= 0xFF
        real(out, data)

    monkeypatch.setattr(writer_module, "_write_all", flip_in_third_write)
    out = tmp_path / "out.safetensors"
    with pytest.raises(VerificationFailed, match="differs from the source"):
        convert(src, out)
    assert os.listdir(tmp_path) == ["model.npz"]


def test_output_is_aligned_and_ordered_widest_first(npz, tmp_path):
    src, arrays = npz
    report = convert(src, tmp_path / "out.safetensors")
    with open(report.outputs[0], "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
    assert header_len % 8 == 0
    for t in report.files[0].tensors:
        itemsize = {"F32": 4, "F16": 2, "I8": 1}[t.dtype]
        assert t.start % itemsize == 0
    with safe_open(report.outputs[0], "numpy") as f:
        order = f.offset_keys()
    assert order == [f"layer{i}" for i in range(6)] + ["half", "small"]
    out = load_file(report.outputs[0])
    for k, v in arrays.items():
        np.testing.assert_array_equal(out[k], v)


def test_refuses_existing_output_and_never_overwrites_input(npz, tmp_path):
    src, _ = npz
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(ConvertError, match="already exists"):
        convert(src, out)
    assert out.read_bytes() == b"keep me"
    convert(src, out, overwrite=True)
    assert len(load_file(out)) == 8
    with pytest.raises(ConvertError, match="over the input"):
        convert(src, src, overwrite=True)
    link = tmp_path / "link.safetensors"
    link.symlink_to(src)
    with pytest.raises(ConvertError, match="over the input"):
        convert(src, link, overwrite=True)
    assert np.load(src)["small"].tolist() == [0, 1, 2]


def test_cancel_leaves_no_partial_output(npz, tmp_path):
    src, _ = npz
    seen = []
    with pytest.raises(Cancelled):
        convert(src, tmp_path / "out.safetensors", progress=lambda f, m: seen.append(f),
                cancelled=lambda: len(seen) > 2)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_progress_is_monotonic_and_reaches_one(npz, tmp_path):
    src, _ = npz
    seen = []
    convert(src, tmp_path / "out.safetensors", progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(m.startswith("verifying") for _, m in seen)


@pytest.mark.parametrize("verify", [True, False])
def test_sharding_writes_shards_and_an_index(npz, tmp_path, verify):
    src, arrays = npz
    report = convert(src, tmp_path / "model.safetensors", max_shard_size=40_000, verify=verify)
    names = [os.path.basename(p) for p in report.outputs]
    n = len(names)
    assert n == 3  # two 16 KiB layers per shard; the small tensors fit in the last
    assert names == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in arrays.values())
    merged = {}
    for name in names:
        part = load_file(tmp_path / name)
        assert all(index["weight_map"][k] == name for k in part)
        merged.update(part)
    assert sorted(merged) == sorted(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(merged[k], v)
    assert report.verified is (True if verify else None)


def test_no_verify_output_matches(npz, tmp_path):
    src, arrays = npz
    report = convert(src, tmp_path / "out.safetensors", verify=False)
    assert report.verified is None
    loaded = load_file(report.outputs[0])
    for k, v in arrays.items():
        np.testing.assert_array_equal(loaded[k], v)


def test_default_output_names(tmp_path):
    for name, expected in (("pytorch_model.npz", "model.safetensors"), ("weights.v2.npz", "weights.safetensors")):
        np.savez(tmp_path / name, x=np.ones(2, np.float32))
        report = convert(tmp_path / name)
        assert os.path.basename(report.outputs[0]) == expected
    folder = tmp_path / "outdir"
    folder.mkdir()
    report = convert(tmp_path / "weights.v2.npz", folder)
    assert report.outputs == [str(folder / "weights.safetensors")]


def test_missing_input_and_bad_shard_size(tmp_path):
    with pytest.raises(ConvertError, match="no such file"):
        convert(tmp_path / "nope.bin")
    np.savez(tmp_path / "a.npz", x=np.ones(2, np.float32))
    with pytest.raises(ConvertError, match="positive"):
        convert(tmp_path / "a.npz", max_shard_size=0)
