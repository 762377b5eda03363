""".npz, .npy and GGUF inputs: converted from their headers, compared with numpy / gguf."""

import struct

import numpy as np
import pytest
from fixtures.protobuf_writer import field
from safetensors import safe_open
from safetensors.numpy import load_file

from airlock.core.convert import ConvertError, convert


def test_npz_stored_and_deflated_with_fortran_order(tmp_path):
    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.arange(5, dtype=np.int64) - 2,
              "f": np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4)),
              "flags": np.array([True, False, True]), "h": np.linspace(0, 1, 7).astype(np.float16),
              "u": np.arange(9, dtype=np.uint16), "c": (np.arange(4) + 1j).astype(np.complex64)}
    for saver in (np.savez, np.savez_compressed):
        src = tmp_path / f"{saver.__name__}.npz"
        saver(src, **arrays)
        report = convert(src)
        out = load_file(report.outputs[0])
        assert sorted(out) == sorted(arrays)
        for k, v in arrays.items():
            assert out[k].dtype == v.dtype and out[k].shape == v.shape
            np.testing.assert_array_equal(out[k], v)
        assert report.verified and report.tensors == len(arrays)


def test_npz_object_and_big_endian_members_are_skipped(tmp_path):
    src = tmp_path / "mixed.npz"
    np.savez(src, ok=np.ones(3, np.float32), obj=np.array([{"a": 1}], dtype=object),
             be=np.arange(3, dtype=">i4"))
    report = convert(src, allow_critical=True)
    assert list(load_file(report.outputs[0])) == ["ok"]
    skipped = dict(report.skipped)
    assert "object array" in skipped["obj.npy"]
    assert "big-endian" in skipped["be.npy"]


def test_single_npy(tmp_path):
    src = tmp_path / "weights.npy"
    arr = np.arange(20, dtype=np.int32).reshape(4, 5).T  # saved in Fortran order
    np.save(src, arr)
    out = load_file(convert(src).outputs[0])
    np.testing.assert_array_equal(out["weights"], arr)


def test_npz_member_truncated_is_skipped(tmp_path):
    import zipfile

    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 40
    src = tmp_path / "short.npz"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("short.npy", npy)
        z.writestr("fine.npy", _npy(np.ones(2, np.float32)))
    report = convert(src)
    assert "needs 4" in dict(report.skipped)["short.npy"]
    assert report.tensors == 1


def _npy(arr):
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _gguf(path, quantized=True):
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("llama.block_count", 2)
    writer.add_string("general.name", "tiny")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    data = {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "f16": np.linspace(-1, 1, 8, dtype=np.float16).reshape(2, 4),
        "i32": np.arange(6, dtype=np.int32),
    }
    for name, arr in data.items():
        writer.add_tensor(name, arr)
    rng = np.random.default_rng(0)
    q_src = rng.standard_normal((4, 64)).astype(np.float32)
    if quantized:
        q = gguf.quants.quantize(q_src, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor("q8", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return data, q_src


def test_gguf_plain_tensors_copied_with_dims_reversed(tmp_path):
    src = tmp_path / "tiny.gguf"
    data, _ = _gguf(src)
    report = convert(src, skip_quantized=True)
    out = load_file(report.outputs[0])
    assert sorted(out) == sorted(data)
    for k, v in data.items():
        assert out[k].shape == v.shape
        np.testing.assert_array_equal(out[k], v)
    skipped = dict(report.skipped)
    assert "quantized Q8_0" in skipped["q8"]
    assert "array of 3" in skipped["tokenizer.ggml.tokens"]
    assert report.metadata["general.name"] == "tiny" and report.metadata["llama.block_count"] == "2"


def test_gguf_dequantize_on_request(tmp_path):
    import gguf

    src = tmp_path / "tiny.gguf"
    _, q_src = _gguf(src)
    report = convert(src, dequantize=True)
    out = load_file(report.outputs[0])
    expected = gguf.quants.dequantize(gguf.quants.quantize(q_src, gguf.GGMLQuantizationType.Q8_0),
                                      gguf.GGMLQuantizationType.Q8_0)
    assert out["q8"].dtype == np.float32 and out["q8"].shape == (4, 64)
    np.testing.assert_array_equal(out["q8"], expected)
    np.testing.assert_allclose(out["q8"], q_src, atol=0.05)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:8] + struct.pack("<Q", 2**62) + b[16:], "more than the file holds"),
    (lambda b: b[:24] + struct.pack("<Q", 2**63) + b[32:], "9223372036854775808 bytes wanted at offset 32"),
    (lambda b: b[:200], "cannot fit in the file|wanted at offset"),
    (lambda b: b[:-16], "runs past the end of the file"),
])
def test_hostile_gguf_headers_give_clear_errors(tmp_path, mutate, message):
    src = tmp_path / "tiny.gguf"
    _gguf(src, quantized=False)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(mutate(bytearray(src.read_bytes())))
    with pytest.raises(ConvertError, match=message):
        convert(bad, tmp_path / "out.safetensors", allow_critical=True)
    assert not (tmp_path / "out.safetensors").exists()


def test_already_safetensors_is_refused(tmp_path):
    src = tmp_path / "a.npz"
    np.savez(src, x=np.ones(2, np.float32))
    out = convert(src).outputs[0]
    with pytest.raises(ConvertError, match="already a SafeTensors"):
        convert(out, tmp_path / "again.safetensors")
    with safe_open(out, "numpy") as f:
        assert f.metadata() == {"format": "pt"}


def _onnx_model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(4, dtype=np.int64)
    h = np.linspace(0, 1, 6).astype(np.float16).reshape(2, 3)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(h, "h"),
             helper.make_tensor("typed", TensorProto.FLOAT, [2], [1.0, 2.0]),
             helper.make_tensor("names", TensorProto.STRING, [1], [b"x"])]
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=inits)
    onnx.save(helper.make_model(graph), path)
    return {"w": w, "b": b, "h": h}


def test_onnx_raw_data_initializers(tmp_path):
    src = tmp_path / "model.onnx"
    expected = _onnx_model(src)
    report = convert(src)
    out = load_file(report.outputs[0])
    assert sorted(out) == sorted(expected)
    for k, v in expected.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape
        np.testing.assert_array_equal(out[k], v)
    skipped = dict(report.skipped)
    assert "typed protobuf fields" in skipped["typed"]
    assert "data type 8" in skipped["names"]


def test_truncated_onnx_is_a_clear_error(tmp_path):
    src = tmp_path / "model.onnx"
    _onnx_model(src)
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(src.read_bytes()[:-40])
    with pytest.raises(ConvertError, match="ONNX"):
        convert(bad, allow_critical=True)


def test_onnx_graph_repeated_on_the_wire_is_merged_like_onnx_load_does(tmp_path):
    """Protobuf merges a message field that appears twice: onnx.load sees the initializers of both."""
    import onnx
    from onnx import helper, numpy_helper

    first = np.arange(6, dtype=np.float32).reshape(2, 3)
    second = np.arange(4, dtype=np.int32)
    graph_a = helper.make_graph([], "g", [], [], initializer=[numpy_helper.from_array(first, "first")])
    graph_b = helper.make_graph([], "g", [], [], initializer=[numpy_helper.from_array(second, "second")])
    model = helper.make_model(graph_a)
    extra = graph_b.SerializeToString()
    data = model.SerializeToString() + field(7, extra)
    src = tmp_path / "merged.onnx"
    src.write_bytes(data)
    assert [t.name for t in onnx.load(str(src)).graph.initializer] == ["first", "second"]
    out = load_file(convert(src).outputs[0])
    np.testing.assert_array_equal(out["first"], first)
    np.testing.assert_array_equal(out["second"], second)


def test_onnx_without_initializers_says_where_its_weights_are_not_read(tmp_path):
    """silero-vad's model keeps its weights in Constant operators inside If branches: no initializer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    const = helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(np.ones(3, np.float32)))
    add = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph([const, add], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    src = tmp_path / "constants.onnx"
    onnx.save(helper.make_model(graph), str(src))
    with pytest.raises(ConvertError, match=r"no initializers.*Constant operators"):
        convert(src)


def test_gguf_dequantizes_block_by_block(tmp_path, monkeypatch):
    """Memory is bounded by dequantizing a few blocks at a time (here 3 of 32 elements): the F32
    output is the same as dequantizing the whole tensor at once, across rows and dimensions."""
    import gguf

    from airlock.core.convert import gguf_input

    q8 = gguf.GGMLQuantizationType.Q8_0
    src_values = np.random.default_rng(1).standard_normal((3, 5, 64)).astype(np.float32)
    q = gguf.quants.quantize(src_values, q8)
    writer = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "llama")
    writer.add_tensor("q", q, raw_shape=q.shape, raw_dtype=q8)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    monkeypatch.setattr(gguf_input, "DEQUANTIZE_OUT", 3 * 32 * 4)
    report = convert(tmp_path / "q.gguf", tmp_path / "q.safetensors", dequantize=True)
    out = load_file(report.outputs[0])["q"]
    assert out.shape == (3, 5, 64)
    np.testing.assert_array_equal(out, gguf.quants.dequantize(q, q8))


def test_the_converter_picks_its_reader_by_the_engines_sniffing(tmp_path):
    # convert/inputs.py has no sniffer of its own: dispatch.sniff decides, by content, whatever the name.
    from safetensors.numpy import save_file

    from airlock.core import dispatch
    from airlock.core.convert.inputs import detect
    from airlock.core.source import Source

    npy, npz, st = tmp_path / "weights.bin", tmp_path / "arrays.pt", tmp_path / "model.pt"
    with open(npy, "wb") as fh:  # a file object: numpy would add .npy/.npz to a path
        np.save(fh, np.ones(3, np.float32))
    with open(npz, "wb") as fh:
        np.savez(fh, a=np.ones(2, np.int8))
    save_file({"a": np.ones(2, np.float32)}, str(st))
    assert (detect(str(npy)), detect(str(npz))) == ("npy", "npz")
    for path in (npy, npz):
        with Source.open(path) as source:
            assert detect(str(path)) == dispatch.sniff(source)[0].NAME
    with pytest.raises(ConvertError, match="already a SafeTensors file"):
        detect(str(st))


def test_a_bad_npy_header_is_refused_with_the_engines_reason(tmp_path):
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}"
    src = tmp_path / "odd.npy"
    src.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 8)
    with pytest.raises(ConvertError, match="numpy expects exactly descr, fortran_order, shape"):
        convert(src)


def test_quantized_gguf_is_refused_without_a_choice(tmp_path):
    """A SafeTensors file holding only a GGUF's norms must never look like a finished conversion."""
    src = tmp_path / "tiny.gguf"
    _gguf(src)
    with pytest.raises(ConvertError, match=r"1 of \d+ tensors are quantized \(1 Q8_0\).*--dequantize.*"
                                           r"--skip-quantized"):
        convert(src)
    assert not list(tmp_path.glob("*.safetensors"))


def test_quantized_gguf_without_its_quantized_tensors_on_request(tmp_path):
    src = tmp_path / "tiny.gguf"
    data, _ = _gguf(src)
    report = convert(src, skip_quantized=True)
    out = load_file(report.outputs[0])
    assert sorted(out) == sorted(data) and "q8" not in out
    assert "--skip-quantized" in dict(report.skipped)["q8"]
