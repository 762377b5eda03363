"""Tensor statistics (airlock.core.tensor_stats) against torch's own, on real files."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from airlock.core import tensor_stats, tensors
from airlock.core.scan import scan_file
from airlock.core.tree import TENSOR, Node


def tensor_nodes(result):
    return {n.attrs.get("name", n.label): n for n in result.root.walk(expand_lazy=True) if n.kind == TENSOR}


def described(result, name):
    t = tensors.describe(tensor_nodes(result)[name])
    assert isinstance(t, tensors.TensorData), t
    return t


def test_stats_match_torch_for_every_simple_dtype(tmp_path):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(40, 50, generator=gen)
    base[0, :7] = 0
    made = {"f32": base, "f16": base.half(), "bf16": base.bfloat16(), "i8": (base * 20).to(torch.int8),
            "f8": base.to(torch.float8_e4m3fn), "f8b": base.to(torch.float8_e5m2), "u16": (base.abs() * 99).to(torch.uint16)}
    path = tmp_path / "t.safetensors"
    save_file(made, str(path))
    result = scan_file(path)
    try:
        for name, tensor in made.items():
            t = described(result, name)
            stats = tensor_stats.compute_stats(result.source.read, result.source.size, t)
            expected = tensor.double()
            assert stats["elements"] == stats["read"] == expected.numel()
            assert not stats["sampled"] and not stats["truncated"]
            assert stats["min"] == pytest.approx(expected.min().item())
            assert stats["max"] == pytest.approx(expected.max().item())
            assert stats["mean"] == pytest.approx(expected.mean().item(), rel=1e-9, abs=1e-12)
            assert stats["std"] == pytest.approx(expected.std(unbiased=False).item(), rel=1e-9)
            assert stats["zeros"] == int((expected == 0).sum())
            assert sum(stats["counts"]) == expected.numel()
    finally:
        result.close()


def test_nan_inf_counts_and_sampling_above_the_cap(tmp_path):
    values = np.linspace(-1, 1, 100_000, dtype=np.float32)
    values[10] = np.nan
    values[20] = np.inf
    values[30] = -np.inf
    path = tmp_path / "t.safetensors"
    save_file({"v": torch.from_numpy(values)}, str(path))
    result = scan_file(path)
    try:
        t = described(result, "v")
        full = tensor_stats.compute_stats(result.source.read, result.source.size, t)
        assert (full["nan"], full["posinf"], full["neginf"]) == (1, 1, 1)
        assert math.isfinite(full["mean"])
        sampled = tensor_stats.compute_stats(result.source.read, result.source.size, t, cap=6_400)
        assert sampled["sampled"] and sampled["read"] == 6_400
        assert sampled["min"] == pytest.approx(-1.0) and sampled["max"] == pytest.approx(1.0)  # runs span the ends
        assert "Sampled: 6,400 of 100,000" in tensor_stats.stats_summary(sampled, t)
    finally:
        result.close()


def test_a_truncated_file_gives_statistics_of_what_exists(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"v": torch.arange(1000, dtype=torch.float32)}, str(path))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-400])
    result = scan_file(cut)
    try:
        t = described(result, "v")
        stats = tensor_stats.compute_stats(result.source.read, result.source.size, t)
        assert stats["truncated"] and stats["read"] == 900 and stats["max"] == 899
        assert "ends before this tensor does" in tensor_stats.stats_summary(stats, t)
    finally:
        result.close()


def test_cancelling_stops_reading(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"v": torch.ones(100_000)}, str(path))
    result = scan_file(path)
    try:
        t = described(result, "v")
        assert tensor_stats.compute_stats(result.source.read, result.source.size, t, cancelled=lambda: True) is None
    finally:
        result.close()


def test_tensor_without_a_data_offset_or_dtype_is_refused_with_a_reason():
    assert "data_offset" in tensors.describe(Node(TENSOR, "w", attrs={"dtype": "F32", "shape": (2, 2)}))
    assert "dtype" in tensors.describe(Node(TENSOR, "w"))
    assert "not a known numeric type" in tensors.describe(
        Node(TENSOR, "w", attrs={"dtype": "|O", "shape": (2,), "data_offset": 0}))


def test_complex_values_have_no_histogram():
    t = tensors.TensorData("c", tensors.dtypes.BY_CODE["C64"], (4,), 0)
    assert "complex" in tensor_stats.unsupported(t)
