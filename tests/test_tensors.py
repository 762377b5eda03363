"""Tensor values decoded from real files (safetensors, torch.save, numpy, GGUFWriter) by
airlock.core.tensors, compared with what torch, numpy and gguf themselves read."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from airlock.core import dtypes, tensors
from airlock.core.errors import FormatError
from airlock.core.scan import scan_file
from airlock.core.tree import TENSOR

gguf = pytest.importorskip("gguf")

TORCH_TYPES = ["float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
               "float8_e5m2fnuz", "float8_e8m0fnu", "int64", "int32", "int16", "int8", "uint64", "uint32",
               "uint16", "uint8", "bool", "complex64"]


def tensor_nodes(result):
    return {n.attrs.get("name", n.label): n for n in result.root.walk(expand_lazy=True) if n.kind == TENSOR}


def described(result, name):
    t = tensors.describe(tensor_nodes(result)[name])
    assert isinstance(t, tensors.TensorData), t
    return t


def as_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2,
                   torch.float8_e5m2fnuz, torch.float8_e8m0fnu):
        return t.float().numpy()
    return t.numpy()


def streamed(result, t, **kwargs):
    parts = [c.values for c in tensors.chunks(result.source.read, t, **kwargs)]
    return np.concatenate(parts) if parts else np.zeros(0)


@pytest.fixture(scope="module")
def every_torch_dtype(tmp_path_factory):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(37, 11, generator=gen) * 3
    base[0, :5] = 0
    made = {}
    for name in TORCH_TYPES:
        dt = getattr(torch, name)
        if name == "bool":
            made[name] = base > 0
        elif name == "complex64":
            made[name] = torch.complex(base, -base)
        elif name.startswith("uint"):
            made[name] = (base.abs() * 1000).to(torch.int64).to(dt)
        else:
            made[name] = (base * 100).to(dt) if not dt.is_floating_point else base.to(dt)
    made["big_i64"] = torch.tensor([2**62 + 1, -(2**62) - 3, 7], dtype=torch.int64)  # not exact as float64
    path = tmp_path_factory.mktemp("st") / "all.safetensors"
    save_file(made, str(path))
    return path, made


def test_every_safetensors_dtype_matches_torch(every_torch_dtype):
    path, made = every_torch_dtype
    result = scan_file(path)
    try:
        for name, tensor in made.items():
            t = described(result, name)
            expected = as_numpy(tensor).ravel()
            got = streamed(result, t, chunk=7)  # chunks of 7 values: boundaries everywhere
            assert got.dtype == tensors.value_dtype(t), name
            np.testing.assert_array_equal(got, expected, err_msg=name)
            first = tensors.first(result.source.read, t, 5)
            np.testing.assert_array_equal(first, expected[:5], err_msg=name)
    finally:
        result.close()


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                                  "float8_e8m0fnu"])
def test_every_byte_of_every_8_bit_float(name):
    raw = bytes(range(256))
    expected = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(getattr(torch, name)).float().numpy()
    code = dtypes.BY_TORCH[name]
    got = tensors.decode(raw, tensors.TensorData("all", code, (256,), 0))
    np.testing.assert_array_equal(got, expected)


def test_torch_zip_views_and_storage_offsets(tmp_path):
    base = torch.randn(30, 20, generator=torch.Generator().manual_seed(1))
    saved = {"w": base, "w_tail": base[10:], "h": base.half(), "b": base.bfloat16()[3:7],
             "i": torch.arange(100, dtype=torch.int16).reshape(10, 10)}
    path = tmp_path / "ckpt.pt"
    torch.save(saved, path)
    result = scan_file(path)
    try:
        for name, tensor in saved.items():
            got = streamed(result, described(result, name), chunk=64)
            np.testing.assert_array_equal(got, as_numpy(tensor.contiguous()).ravel(), err_msg=name)
        transposed = tensors.describe(_node_for_view(tmp_path, base.t()))  # Fortran order: read as such
        assert not isinstance(transposed, str) and transposed.fortran and transposed.shape == (20, 30)
        assert "non-contiguous" in tensors.describe(_node_for_view(tmp_path, base[:, :5]))  # a slice: neither
    finally:
        result.close()


def _node_for_view(tmp_path, view):
    path = tmp_path / "t.pt"
    torch.save({"t": view}, path)
    result = scan_file(path)
    node = tensor_nodes(result)["t"]
    result.close()
    return node


def test_legacy_checkpoint_tensors(tmp_path):
    saved = {"w": torch.randn(6, 5), "d": torch.arange(9, dtype=torch.float64)}
    path = tmp_path / "legacy.pt"
    torch.save(saved, path, _use_new_zipfile_serialization=False)
    result = scan_file(path)
    try:
        for name, tensor in saved.items():
            np.testing.assert_array_equal(streamed(result, described(result, name)), tensor.numpy().ravel())
    finally:
        result.close()


@pytest.mark.parametrize(("array", "fortran"), [
    (np.arange(-60, 60, dtype=">i2").reshape(8, 15), False),
    (np.linspace(-3, 3, 90, dtype=">f4").reshape(3, 5, 6), False),
    (np.linspace(-3, 3, 90, dtype="<f8").reshape(9, 10), True),
    (np.arange(24, dtype="<u8").reshape(2, 3, 4) * (2**40), True),
    ((np.arange(20) % 3 == 0).reshape(4, 5), False),
    (np.arange(12, dtype="<c16").reshape(3, 4) * (1 + 2j), False),
])
def test_numpy_arrays_big_endian_and_fortran_order(tmp_path, array, fortran):
    path = tmp_path / "a.npy"
    np.save(path, np.asfortranarray(array) if fortran else array)
    result = scan_file(path)
    try:
        t = described(result, "array")
        assert t.fortran == fortran
        read = result.source.read
        stored = array.ravel(order="F" if fortran else "C")
        np.testing.assert_array_equal(streamed(result, t, chunk=13), stored)
        for index in [(0,), (-1,), (slice(1, 3),), (slice(None), 2), (1, slice(2, 4)), ()]:
            np.testing.assert_array_equal(tensors.select(read, t, index), array[index], err_msg=str(index))
        table = array.reshape(-1, array.shape[-1])  # the values table's view: the last dimension across
        assert t.grid() == table.shape
        for start, count in [(0, 2), (1, 3), (len(table) - 1, 5), (len(table), 2)]:
            np.testing.assert_array_equal(tensors.rows(read, t, start, count), table[start:start + count])
    finally:
        result.close()


def test_npz_members_stored_and_compressed(tmp_path):
    a = np.arange(50, dtype=np.float32).reshape(5, 10)
    np.savez(tmp_path / "s.npz", a=a)
    np.savez_compressed(tmp_path / "c.npz", a=a)
    stored = scan_file(tmp_path / "s.npz")
    packed = scan_file(tmp_path / "c.npz")
    try:
        node = next(iter(tensor_nodes(stored).values()))
        t = tensors.describe(node)
        assert isinstance(t, tensors.TensorData), t
        np.testing.assert_array_equal(tensors.select(stored.source.read, t, (slice(1, 3),)), a[1:3])
        why = tensors.describe(next(iter(tensor_nodes(packed).values())))
        assert isinstance(why, str) and "compressed" in why
    finally:
        stored.close()
        packed.close()


QUANTISED_BY_GGUF = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ1_0", "TQ2_0", "MXFP4"]
RANDOM_BLOCKS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "IQ2_XXS", "IQ3_S", "IQ1_M", "NVFP4"]


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    rng = np.random.default_rng(5)
    values = rng.standard_normal((4, 512)).astype(np.float32)
    path = tmp_path_factory.mktemp("gguf") / "q.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    raw = {}
    w.add_tensor("plain.f32", values)
    w.add_tensor("plain.f16", values.astype(np.float16))
    for name in QUANTISED_BY_GGUF:
        qtype = gguf.GGMLQuantizationType[name]
        raw[name] = gguf.quants.quantize(values, qtype)
        w.add_tensor(f"q.{name}", raw[name], raw_dtype=qtype)
    for name in RANDOM_BLOCKS:
        qtype = gguf.GGMLQuantizationType[name]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        data = rng.integers(0, 256, (4, 512 // block * size), dtype=np.uint8)
        raw[name] = data
        w.add_tensor(f"q.{name}", data, raw_dtype=qtype)
    bf16 = gguf.quants.quantize(values, gguf.GGMLQuantizationType.BF16)
    w.add_tensor("plain.bf16", bf16, raw_dtype=gguf.GGMLQuantizationType.BF16)
    raw["BF16"] = bf16
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, values, raw


def test_gguf_quantised_blocks_dequantised_on_the_fly(gguf_file):
    path, values, raw = gguf_file
    result = scan_file(path)
    try:
        np.testing.assert_array_equal(streamed(result, described(result, "plain.f32")), values.ravel())
        np.testing.assert_array_equal(streamed(result, described(result, "plain.f16"), chunk=100),
                                      values.astype(np.float16).ravel())
        for name, data in raw.items():
            qtype = gguf.GGMLQuantizationType[name]
            with np.errstate(all="ignore"):  # random scales include Inf and NaN
                expected = gguf.quants.dequantize(data, qtype).astype(np.float32).ravel()
            t = described(result, "plain.bf16" if name == "BF16" else f"q.{name}")
            assert t.dtype.code == name
            # a window starting and ending inside blocks, in chunks that cut blocks too
            got = streamed(result, t, start=17, stop=1500, chunk=100)
            np.testing.assert_array_equal(got, expected[17:1500], err_msg=name)
            rows = tensors.select(result.source.read, t, (slice(1, 3), slice(40, 300)))
            np.testing.assert_array_equal(rows, expected.reshape(4, 512)[1:3, 40:300], err_msg=name)
    finally:
        result.close()


def test_a_type_gguf_cannot_dequantise_says_so():
    why = tensors.unsupported(dtypes.BY_CODE["Q8_1"])
    assert why is not None and "Q8_1" in why
    assert tensors.unsupported(dtypes.BY_CODE["Q8_K"]) is None  # decoded by airlock.core.ggml_blocks
    assert tensors.unsupported(dtypes.BY_CODE["Q1_0"]) is None
    assert tensors.unsupported(dtypes.BY_CODE["F4"]) is not None
    assert tensors.unsupported(dtypes.BY_CODE["Q4_K"]) is None


def test_paired_chunks_compare_a_tensor_with_its_quantised_copy(gguf_file):
    path = gguf_file[0]
    result = scan_file(path)
    try:
        read = result.source.read
        a, b = described(result, "plain.f32"), described(result, "q.Q8_0")
        worst = 0.0
        for ca, cb in tensors.paired_chunks(read, a, read, b, chunk=96):
            assert (ca.start, ca.stop) == (cb.start, cb.stop)
            worst = max(worst, float(np.abs(ca.values - cb.values).max()))
        assert 0 < worst < 0.05  # Q8_0 keeps about two decimal digits of a unit normal
        with pytest.raises(ValueError, match="cannot be compared"):
            next(tensors.paired_chunks(read, a, read, tensors.TensorData("x", a.dtype, (3,), a.offset)))
    finally:
        result.close()


def test_reads_are_bounded_by_the_chunk(tmp_path):
    path = tmp_path / "big.safetensors"
    save_file({"v": torch.arange(100_000, dtype=torch.float32)}, str(path))
    result = scan_file(path)
    try:
        asked = []

        def read(offset, n):
            asked.append(n)
            return result.source.read(offset, n)

        t = described(result, "v")
        total = sum(len(c.values) for c in tensors.chunks(read, t, chunk=1000))
        assert total == 100_000 and max(asked) == 4000 and len(asked) == 100
        asked.clear()
        assert tensors.window(read, t, 99_990, 50).tolist() == list(range(99_990, 100_000))
        assert asked == [40]
        with pytest.raises(ValueError, match="over the cap"):
            tensors.window(read, t, 0, tensors.MAX_WINDOW + 1)
    finally:
        result.close()


def test_a_truncated_file_is_a_format_error_with_its_offset(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"v": torch.ones(1000)}, str(path))
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-400])
    result = scan_file(cut)
    try:
        t = described(result, "v")
        assert t.available(result.source.size) == 900
        with pytest.raises(FormatError) as info:
            list(tensors.chunks(result.source.read, t))
        assert info.value.offset == result.source.size
        assert len(streamed(result, t, stop=900)) == 900
    finally:
        result.close()


def test_sample_ranges_cover_the_ends():
    t = tensors.TensorData("v", dtypes.BY_CODE["Q4_K"], (4096, 256), 0)
    ranges = tensors.sample_ranges(t, 25_600, runs=10)
    assert len(ranges) == 10 and ranges[0][0] == 0 and ranges[-1][1] == t.numel
    assert all(lo % 256 == 0 and (hi - lo) == 2560 for lo, hi in ranges)
    assert tensors.sample_ranges(t, 10**9) == [(0, t.numel)]
    assert tensors.sample_ranges(t, 100, available=0) == []


def test_converter_specs_become_tensor_data(tmp_path):
    from airlock.core.tensor_spec import StorageRef, TensorSpec, contiguous_strides

    values = np.arange(12, dtype="<f4")
    path = tmp_path / "raw.bin"
    path.write_bytes(b"\0" * 16 + values.tobytes())
    spec = TensorSpec("F32", (2, 4), contiguous_strides((2, 4)), 4, StorageRef("0", "F32", 48, 16))
    t = tensors.from_spec("w", spec)
    assert isinstance(t, tensors.TensorData)
    with open(path, "rb") as fh:
        def read(offset, n):
            fh.seek(offset)
            return fh.read(n)

        np.testing.assert_array_equal(tensors.select(read, t, ()), values[4:].reshape(2, 4))
    view = TensorSpec("F32", (4, 2), (1, 4), 0, StorageRef("0", "F32", 48, 16))
    assert "non-contiguous" in tensors.from_spec("v", view)
