"""The one dtype table (airlock.core.dtypes) against the real libraries' own tables."""

import json
import struct
import warnings

import gguf
import numpy as np
import onnx.helper
import pytest
import safetensors
import torch
from safetensors.torch import save_file

from airlock.core import dtypes
from airlock.core.findings import Severity
from airlock.core.scan import scan_file


def test_ggml_block_sizes_are_ggufs():
    ours = {d.ggml: (d.code, d.block, d.block_bytes) for d in dtypes.TABLE if d.ggml is not None}
    theirs = {int(t): (t.name, int(b), int(s)) for t, (b, s) in gguf.GGML_QUANT_SIZES.items()}
    assert ours == theirs


def test_torch_names_and_sizes_are_torchs():
    for d in dtypes.TABLE:
        if d.torch is None:
            continue
        tdt = getattr(torch, d.torch)
        assert isinstance(tdt, torch.dtype), d
        assert tdt.itemsize == d.itemsize, d
        assert tdt.is_floating_point == (d.kind == dtypes.FLOAT), d
        assert tdt.is_complex == (d.kind == dtypes.COMPLEX), d
    for name, d in dtypes.TORCH_STORAGES.items():
        if name != "UntypedStorage":  # bytes: its dtype comes from _rebuild_tensor_v3
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "TypedStorage is deprecated"
                assert getattr(torch, name)(0).dtype == getattr(torch, d.torch), name


def test_every_dtype_torch_can_save_in_safetensors_is_known():
    from safetensors.torch import _TYPES

    for code, tdt in _TYPES.items():
        d = dtypes.get(code)
        assert d is not None and d.safetensors and d.writable and d.torch == str(tdt).removeprefix("torch."), code


def _library_variants(tmp_path):
    """The safetensors library's own list of dtypes, from its error for an unknown one."""
    header = json.dumps({"a": {"dtype": "NOPE", "shape": [1], "data_offsets": [0, 1]}}).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
    with pytest.raises(safetensors.SafetensorError) as info:
        safetensors.safe_open(str(path), "np")
    listed = str(info.value).split("expected one of", 1)[1]
    return {part.strip(" `") for part in listed.split(" at line")[0].split(",")}


def test_safetensors_dtypes_are_exactly_the_librarys(tmp_path):
    assert set(dtypes.safetensors_bits()) == _library_variants(tmp_path)


def test_numpy_equivalents():
    for d in dtypes.TABLE:
        if d.numpy is not None:
            nd = np.dtype(d.numpy)
            assert nd.itemsize == d.itemsize, d
            assert nd.kind == {"float": "f", "int": "i", "uint": "u", "bool": "b", "complex": "c"}[d.kind], d


def test_onnx_codes_names_and_sizes():
    for code, d in dtypes.BY_ONNX.items():
        proto_name = onnx.helper.tensor_dtype_to_string(code).removeprefix("TensorProto.").lower()
        assert {"float": "float32", "double": "float64"}.get(proto_name, proto_name) == d.onnx_name, code
        np_type = onnx.helper.tensor_dtype_to_np_dtype(code)
        if d.bits % 8 == 0 and d.bits:
            assert np_type.itemsize == d.itemsize, d


@pytest.mark.parametrize(("text", "expected"), [
    ("F32", ("F32", False)), ("BF16", ("BF16", False)), ("torch.bfloat16", ("BF16", False)),
    ("<f4", ("F32", False)), (">i2", ("I16", True)), ("|b1", ("BOOL", False)), ("float16", ("F16", False)),
    ("Q4_K", ("Q4_K", False)), ("q8_0", ("Q8_0", False)), ("C64", ("C64", False)), (">c16", ("C128", True)),
    ("|u1", ("U8", False)), (">u1", ("U8", False)), ("float8e4m3fn", ("F8_E4M3", False)),
    ("float8_e5m2fnuz", ("F8_E5M2FNUZ", False)), ("HALF", ("F16", False)), ("int", ("I32", False)),
    ("|O", None), ("<U10", None), ("object", None), ("", None), ("float128", None),
])
def test_spellings(text, expected):
    parsed = dtypes.parse(text)
    assert (None if parsed is None else (parsed[0].code, parsed[1])) == expected


def test_sizes_of_blocks_and_sub_byte_types():
    assert dtypes.BY_CODE["Q4_K"].nbytes(512) == 2 * 144
    assert dtypes.BY_CODE["Q8_0"].nbytes(33) == 2 * 34  # a partial block still takes a block
    assert dtypes.BY_CODE["F4"].nbytes(3) == 2
    assert dtypes.BY_CODE["STRING"].nbytes(3) is None
    assert dtypes.BY_CODE["F4"].itemsize is None and not dtypes.BY_CODE["F4"].writable
    assert dtypes.BY_CODE["C128"].itemsize == 16 and not dtypes.BY_CODE["C128"].safetensors


def test_importing_dtypes_loads_neither_numpy_nor_gguf():
    import subprocess
    import sys

    code = "import sys, airlock.core.dtypes; print('numpy' in sys.modules, 'gguf' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("name", ["float8_e4m3fnuz", "float8_e5m2fnuz"])
def test_regression_fnuz_safetensors_written_by_torch_are_not_an_unknown_dtype(tmp_path, name):
    # The SafeTensors reader knew fewer dtypes than the converter writes and the library reads.
    path = tmp_path / "fnuz.safetensors"
    save_file({"w": torch.randn(4, 4).to(getattr(torch, name))}, str(path))
    result = scan_file(path)
    try:
        assert result.severity <= Severity.INFO, [(f.rule, f.message) for f in result.findings]
    finally:
        result.close()
