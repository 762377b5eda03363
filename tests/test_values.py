"""Tensor values for the values table and the .npy export: every dtype, read from files real writers
made, compared with what numpy, torch and gguf say the values are."""

import io
import os

import numpy as np
import pytest
import torch

from airlock.core import values as V
from airlock.core.convert.npy_export import header, write_npy
from airlock.core.errors import Cancelled, FormatError
from airlock.core.scan import scan_file
from airlock.core.tree import INITIALIZER, TENSOR

RNG = np.random.default_rng(7)


def _tensor_nodes(result):
    return {n.attrs.get("name", n.label): n for n in result.root.walk(expand_lazy=True)
            if n.kind in (TENSOR, INITIALIZER)}


def _open(path):
    result = scan_file(str(path))
    read = lambda offset, n: bytes(result.source.read(offset, n))  # noqa: E731 - the views' read
    return result, read


# SafeTensors: every dtype the format has a numpy or torch type for.
NUMPY_TYPES = ["float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16",
               "uint8", "bool"]
TORCH_TYPES = [torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2]


def _expected_numpy(dtype):
    if dtype == "bool":
        return RNG.integers(0, 2, (6, 5)).astype(bool)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return RNG.integers(max(info.min, -1000), min(info.max, 1000), (6, 5)).astype(dtype)
    return RNG.normal(0, 3, (6, 5)).astype(dtype)


@pytest.fixture(scope="module")
def every_dtype(tmp_path_factory):
    from safetensors.numpy import save as save_numpy
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("values")
    expected = {f"n_{d}": _expected_numpy(d) for d in NUMPY_TYPES}
    (folder / "numpy.safetensors").write_bytes(save_numpy(expected))
    torch_tensors = {f"t_{str(d).split('.')[1]}": torch.randn(6, 5).to(d) for d in TORCH_TYPES}
    save_file(torch_tensors, str(folder / "torch.safetensors"))
    expected.update({k: v.float().numpy() for k, v in torch_tensors.items()})
    return folder, expected


def test_every_safetensors_dtype_pages_samples_and_slices_like_numpy(every_dtype):
    folder, expected = every_dtype
    seen = set()
    for name in ("numpy.safetensors", "torch.safetensors"):
        result, read = _open(folder / name)
        for key, node in _tensor_nodes(result).items():
            want = expected[key]
            t = V.describe(node, read)
            assert not isinstance(t, str), (key, t)
            page = V.first_page(read, t, file_size=result.size)
            assert page.values.shape == (6, 5) and page.row_labels[1] == "[1]" and page.column_labels[-1] == "4"
            np.testing.assert_array_equal(page.values, want, err_msg=key)
            sample = V.sample_page(read, t, 7)
            flat = want.ravel()
            np.testing.assert_array_equal(sample.values.ravel(), flat[[i * 29 // 6 for i in range(7)]])
            assert sample.row_labels[-1] == "29  [5, 4]"
            cut = V.slice_page(read, t, "2:4, 1:3")
            np.testing.assert_array_equal(cut.values, want[2:4, 1:3])
            assert cut.row_labels == ["[0]", "[1]"] and cut.note == "indices are relative to the slice"
            seen.add(t.dtype.code)
        result.close()
    assert seen == {"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL", "BF16",
                    "F8_E4M3", "F8_E5M2"}


@pytest.fixture(scope="module")
def quantised(tmp_path_factory):
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFWriter, quants

    path = tmp_path_factory.mktemp("gguf") / "q.gguf"
    writer = GGUFWriter(str(path), "llama")
    source = RNG.normal(0, 1, (8, 256)).astype(np.float32)
    expected = {}
    for q in (Q.Q8_0, Q.Q4_0, Q.Q5_1, Q.MXFP4, Q.F16, Q.BF16):
        blocks = quants.quantize(source, q)
        writer.add_tensor(f"w.{q.name}", blocks, raw_shape=blocks.shape, raw_dtype=q)
        # numpy has float16 (kept as is); BF16 and the block types come out as float32
        kind = np.float16 if q == Q.F16 else np.float32
        expected[f"w.{q.name}"] = quants.dequantize(blocks, q).reshape(8, 256).astype(kind)
    writer.add_tensor("bias", np.arange(256, dtype=np.float32))
    expected["bias"] = np.arange(256, dtype=np.float32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, expected


def test_quantised_gguf_blocks_are_dequantised_on_the_fly(quantised):
    path, expected = quantised
    result, read = _open(path)
    codes = set()
    for name, node in _tensor_nodes(result).items():
        want = expected[name]
        t = V.describe(node, read)
        assert not isinstance(t, str), (name, t)
        codes.add(t.dtype.code)
        page = V.first_page(read, t, file_size=result.size)
        if want.ndim == 1:  # a vector: 16 values a row
            assert page.values.shape == (16, 16) and page.row_labels[1] == "[16]" and page.column_labels[1] == "+1"
            np.testing.assert_array_equal(page.values.ravel(), want)
        else:
            np.testing.assert_allclose(page.values, want, rtol=0, atol=0, err_msg=name)
            np.testing.assert_array_equal(V.slice_page(read, t, "[7, 250:]").values.ravel()[:6], want[7, 250:])
    assert {"Q8_0", "Q4_0", "Q5_1", "MXFP4", "F16", "BF16", "F32"} <= codes
    result.close()


def test_the_first_page_of_a_wide_table_is_paged_by_rows(tmp_path):
    from safetensors.numpy import save_file

    big = np.arange(300 * 200, dtype=np.int32).reshape(300, 200)
    save_file({"big": big}, str(tmp_path / "big.safetensors"))
    result, read = _open(tmp_path / "big.safetensors")
    t = V.describe(_tensor_nodes(result)["big"], read)
    per_page = V.rows_per_page(t)
    assert per_page == 100  # 20,000 values a page
    third = V.first_page(read, t, 200)
    assert (third.start_row, third.total_rows, third.rows) == (200, 300, 100)
    np.testing.assert_array_equal(third.values, big[200:300])
    assert third.row_labels[0] == "[200]"
    result.close()


def test_a_truncated_file_shows_what_it_holds_and_says_so(tmp_path):
    from safetensors.numpy import save_file

    save_file({"x": np.arange(64, dtype=np.float32).reshape(4, 16)}, str(tmp_path / "t.safetensors"))
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])  # the last 25 values are gone (trailing: a finding)
    result, read = _open(tmp_path / "cut.safetensors")
    node = next(n for n in result.root.walk(expand_lazy=True) if n.kind == TENSOR)
    t = V.describe(node, read)
    page = V.first_page(read, t, file_size=result.size)
    assert page.note == "the file ends before this tensor does: 39 of its 64 values are in the file"
    assert page.valid == 39
    np.testing.assert_array_equal(page.values.ravel()[:39], np.arange(39))
    with pytest.raises(FormatError, match="ends before the tensor does"):
        write_npy(read, t, str(tmp_path / "out.npy"))
    assert not (tmp_path / "out.npy").exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    result.close()


def test_onnx_initializers_raw_and_packed_floats(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    raw = numpy_helper.from_array(RNG.normal(0, 1, (3, 4)).astype(np.float32), "raw")
    packed = helper.make_tensor("packed", TensorProto.FLOAT, [2, 3], [1.5, -2.0, 3.25, 0.0, 7.0, -1.0])
    ints = helper.make_tensor("ints", TensorProto.INT64, [3], [1, 2, 3])
    double = helper.make_tensor("double", TensorProto.DOUBLE, [2], [0.1, 0.2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [raw, packed, ints, double])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    result, read = _open(tmp_path / "m.onnx")
    nodes = _tensor_nodes(result)
    for name, want in (("raw", numpy_helper.to_array(raw)), ("packed", numpy_helper.to_array(packed)),
                       ("double", np.array([0.1, 0.2]))):
        t = V.describe(nodes[name], read)
        assert not isinstance(t, str), (name, t)
        got = V.slice_page(read, t, ":" if want.ndim == 1 else ":, :").values.ravel()[:want.size]
        np.testing.assert_array_equal(got, want.ravel())
    assert V.describe(nodes["ints"], read).startswith("the values are stored as protobuf varints")
    result.close()


def test_slices_are_parsed_never_evaluated():
    shape = (4, 5, 6)
    assert V.parse_index("0, :, 2:5", shape) == [0, slice(None), slice(2, 5)]
    assert V.parse_index("[ -1 , 1: ]", shape) == [-1, slice(1, None)]
    assert V.parse_index("3,", shape) == [3]
    for bad, message in (("__import__('os')", "is not an integer"), ("0, 0, 0, 0", "4 indices for a tensor"),
                         ("9", "out of range"), ("::2", "step"), ("", "type an index"), ("1;2", "not an integer")):
        with pytest.raises(ValueError, match=message):
            V.parse_index(bad, shape)


def test_big_slices_are_refused_with_their_size(every_dtype):
    folder, _ = every_dtype
    result, read = _open(folder / "numpy.safetensors")
    t = V.describe(_tensor_nodes(result)["n_float32"], read)
    big = V.TensorData(t.name, t.dtype, (2000, 2000), t.offset)
    with pytest.raises(ValueError, match="4,000,000 values"):
        V.slice_page(read, big, ":, :")
    result.close()


def test_values_are_formatted_for_people():
    assert V.format_value(np.float32(0.1)) == "0.1"
    assert V.format_value(np.float64(1e-12)) == "1e-12"
    assert V.format_value(np.float16("nan")) == "NaN"
    assert V.format_value(np.float32("-inf")) == "-Inf"
    assert V.format_value(np.int64(-(2**62))) == str(-(2**62))
    assert V.format_value(np.uint8(255)) == "255"
    assert V.format_value(np.bool_(True)) == "true"
    assert V.format_value(np.complex64(1 - 2j)) == "1-2j"


# .npy export


@pytest.mark.parametrize("shape,dtype,fortran", [((3, 4), "<f4", False), ((5,), "|u1", False), ((), "<f8", False),
                                                 ((2, 3, 4), "|b1", True), ((70000,), "<i8", False)])
def test_npy_header_is_numpys_own(shape, dtype, fortran):
    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, dtype=dtype, order="F" if fortran else "C"))
    mine = header(dtype, shape, fortran)
    assert buf.getvalue()[:len(mine)] == mine and len(mine) % 64 == 0


def test_export_every_dtype_to_npy_reads_back_without_pickle(every_dtype, quantised, tmp_path):
    folder, expected = every_dtype
    path, dequantised = quantised
    for source, want_all in ((folder / "numpy.safetensors", expected), (folder / "torch.safetensors", expected),
                             (path, dequantised)):
        result, read = _open(source)
        for name, node in _tensor_nodes(result).items():
            t = V.describe(node, read)
            out = tmp_path / f"{name}.npy"
            written = write_npy(read, t, str(out), source_path=str(source))
            assert written == out.stat().st_size
            back = np.load(out, allow_pickle=False)
            want = want_all[name]
            assert back.shape == want.shape and back.dtype == want.dtype, name
            np.testing.assert_array_equal(back, want, err_msg=name)
        result.close()


def test_export_refuses_to_overwrite_and_can_be_cancelled(every_dtype, tmp_path):
    folder, _ = every_dtype
    source = folder / "numpy.safetensors"
    result, read = _open(source)
    t = V.describe(_tensor_nodes(result)["n_float32"], read)
    with pytest.raises(ValueError, match="overwrite the file being inspected"):
        write_npy(read, t, str(source), source_path=str(source), overwrite=True)
    (tmp_path / "x.npy").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        write_npy(read, t, str(tmp_path / "x.npy"))
    with pytest.raises(Cancelled):
        write_npy(read, t, str(tmp_path / "y.npy"), cancelled=lambda: True)
    assert (tmp_path / "x.npy").read_bytes() == b"keep" and not (tmp_path / "y.npy").exists()
    assert sorted(os.listdir(tmp_path)) == ["x.npy"]  # no temporary left behind
    result.close()


def test_fortran_ordered_npy_is_exported_as_stored(tmp_path):
    array = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    np.save(tmp_path / "f.npy", array)
    result, read = _open(tmp_path / "f.npy")
    node = next(n for n in result.root.walk(expand_lazy=True) if n.kind == TENSOR)
    t = V.describe(node, read)
    assert not isinstance(t, str) and t.fortran
    np.testing.assert_array_equal(V.first_page(read, t).values, array)
    write_npy(read, t, str(tmp_path / "out.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy", allow_pickle=False), array)
    result.close()


def _check_cells(read, t, page, whole):
    """Every non-blank cell: its flat index holds the value shown, and its byte span decodes to it."""
    from airlock.core.tensors import decode

    flat_whole = whole.ravel()
    seen = 0
    for row in range(page.rows):
        for col in range(len(page.column_labels)):
            flat = V.cell_flat_index(page, row, col)
            if flat is None:
                continue
            seen += 1
            assert page.values[row, col] == flat_whole[flat], (row, col, flat)
            assert whole[V.value_index(t, flat)] == flat_whole[flat]
            offset, length = V.value_span(t, flat)
            unit = decode(read(offset, length), t)
            stored = np.ravel_multi_index(np.unravel_index(flat, t.shape), t.shape, order="F") if t.fortran else flat
            assert unit[stored % t.unit_elems] == flat_whole[flat]
    return seen


def test_each_cell_leads_to_its_index_and_bytes(tmp_path, quantised):
    from safetensors.numpy import save_file

    array = RNG.normal(0, 1, (5, 7, 3)).astype(np.float32)
    vector = np.arange(40, dtype=np.int16)
    save_file({"cube": array, "vector": vector}, str(tmp_path / "m.safetensors"))
    np.save(tmp_path / "f.npy", np.asfortranarray(array[0]))
    result, read = _open(tmp_path / "m.safetensors")
    nodes = _tensor_nodes(result)
    cube, vec = V.describe(nodes["cube"], read), V.describe(nodes["vector"], read)
    assert _check_cells(read, cube, V.first_page(read, cube, 4), array) == (35 - 4) * 3
    assert _check_cells(read, cube, V.sample_page(read, cube, 9), array) == 9
    cut = V.slice_page(read, cube, "1:3, -1, 1:")
    assert _check_cells(read, cube, cut, array) == 4 and V.cell_flat_index(cut, 0, 0) == 1 * 21 + 6 * 3 + 1
    assert _check_cells(read, cube, V.slice_page(read, cube, "4, 2, 0"), array) == 1
    assert _check_cells(read, vec, V.first_page(read, vec), vector) == 40
    page = V.first_page(read, vec, 2)  # the last row: 8 values, then blank cells
    assert V.cell_flat_index(page, 0, 7) == 39 and V.cell_flat_index(page, 0, 8) is None
    assert V.value_span(vec, 39) == (vec.offset + 78, 2)
    result.close()
    fortran, read_f = _open(tmp_path / "f.npy")
    t = V.describe(next(iter(_tensor_nodes(fortran).values())), read_f)
    assert t.fortran and _check_cells(read_f, t, V.first_page(read_f, t), array[0]) == 21
    assert _check_cells(read_f, t, V.sample_page(read_f, t, 21), array[0]) == 21  # every value, in C order
    assert V.value_span(t, 1) == (t.offset + 7 * 4, 4)  # [0, 1] is stored after the whole first column
    fortran.close()
    path, expected = quantised
    gguf_result, read_q = _open(path)
    q8 = V.describe(_tensor_nodes(gguf_result)["w.Q8_0"], read_q)
    assert _check_cells(read_q, q8, V.first_page(read_q, q8), expected["w.Q8_0"]) == 8 * 256
    assert V.value_span(q8, 33) == (q8.offset + 34, 34)  # the second 32-value block of 34 bytes
    gguf_result.close()


def test_block_types_gguf_py_cannot_dequantise_are_decoded_from_ggmls_layout(tmp_path):
    """Q1_0 (sign bits and an fp16 scale) and Q8_K (a float32 scale and int8 quants), written as raw
    blocks; the expected values are worked out here value by value from ggml's block layout."""
    import struct

    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFWriter

    rng = np.random.default_rng(3)
    q1 = bytearray()
    want_q1 = []
    for scale in (0.5, -1.25, 3.0, 0.0078125):  # 4 blocks of 128 values: a 4 × 128 tensor
        bits = rng.integers(0, 256, 16, dtype=np.uint8)
        q1 += struct.pack("<e", scale) + bits.tobytes()
        want_q1 += [scale if (int(bits[j // 8]) >> (j % 8)) & 1 else -scale for j in range(128)]
    q8k = bytearray()
    want_q8k = []
    for scale in (0.01, -2.0):  # 2 blocks of 256 values: a 2 × 256 tensor
        quants = rng.integers(-128, 128, 256, dtype=np.int8)
        q8k += struct.pack("<f", scale) + quants.tobytes() + bytes(32)
        want_q8k += [np.float32(scale) * np.float32(q) for q in quants]
    path = tmp_path / "blocks.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_tensor("w.q1", np.frombuffer(bytes(q1), np.uint8).reshape(4, 18), raw_shape=(4, 18),
                      raw_dtype=Q.Q1_0)
    writer.add_tensor("w.q8k", np.frombuffer(bytes(q8k), np.uint8).reshape(2, 292), raw_shape=(2, 292),
                      raw_dtype=Q.Q8_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result, read = _open(path)
    nodes = _tensor_nodes(result)
    for name, shape, want in (("w.q1", (4, 128), want_q1), ("w.q8k", (2, 256), want_q8k)):
        t = V.describe(nodes[name], read)
        assert not isinstance(t, str), (name, t)
        assert t.shape == shape
        np.testing.assert_array_equal(V.first_page(read, t).values.ravel(), np.array(want, np.float32))
        np.testing.assert_array_equal(V.slice_page(read, t, "1, 100:103").values.ravel()[:3],
                                      np.array(want[shape[1] + 100:shape[1] + 103], np.float32))
    result.close()


def test_q8_1_says_why_it_is_not_decoded():
    from airlock.core import dtypes
    from airlock.core.tensors import unsupported

    q8_1, _ = dtypes.parse("Q8_1")
    assert "intermediate type for dot products" in unsupported(q8_1)


def test_a_transposed_torch_view_shows_its_values_as_torch_does(tmp_path):
    """A `.t()` view saved by torch.save is stored in Fortran order: the table, the sample, a slice
    and each cell's bytes follow the view's own indices."""
    matrix = torch.arange(35, dtype=torch.float32).reshape(5, 7)
    torch.save({"wt": matrix.t()}, tmp_path / "t.pt")
    result, read = _open(tmp_path / "t.pt")
    t = V.describe(_tensor_nodes(result)["wt"], read)
    assert not isinstance(t, str) and t.fortran and t.shape == (7, 5)
    want = matrix.t().numpy()
    assert _check_cells(read, t, V.first_page(read, t), want) == 35
    assert _check_cells(read, t, V.sample_page(read, t, 35), want) == 35
    np.testing.assert_array_equal(V.slice_page(read, t, "2:4, 1:3").values, want[2:4, 1:3])
    result.close()
