"""Strided views are gathered exactly, in memory that does not depend on their strides (issue 14)."""

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from fixtures import convert_files as cf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.core.cli import main
from airlock.core.convert import gather
from airlock.core.convert.model import CHUNK
from airlock.core.convert.stream import tensor_chunks
from airlock.core.tensor_spec import DEFLATED, STORED, StorageRef, TensorSpec

WORDS = {"U8": "u1", "I16": "<i2", "F32": "<f4", "F64": "<f8"}


@st.composite
def views(draw):
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
    strides = tuple(draw(st.lists(st.integers(0, 40), min_size=ndim, max_size=ndim)))
    return shape, strides, draw(st.integers(0, 9)), draw(st.sampled_from(sorted(WORDS))), draw(st.booleans())


def expected(words, shape, strides, offset):
    index = np.full(shape, offset, dtype=np.int64)
    for axis, stride in enumerate(strides):
        along = [1] * len(shape)
        along[axis] = shape[axis]
        index = index + (np.arange(shape[axis]) * stride).reshape(along)
    return words[index.reshape(-1)].tobytes()


@pytest.fixture
def tiny_buffers():
    """Windows of 48 bytes and blocks of 24: every split path runs on views of a few elements."""
    saved = gather.WINDOW, gather.OUT_BLOCK, gather.SMALL_READ
    gather.WINDOW, gather.OUT_BLOCK, gather.SMALL_READ = 48, 24, 8
    yield
    gather.WINDOW, gather.OUT_BLOCK, gather.SMALL_READ = saved


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(view=views())
def test_any_view_matches_numpy_indexing(tmp_path, tiny_buffers, view):
    shape, strides, offset, dtype, deflate = view
    word = np.dtype(WORDS[dtype])
    numel = offset + 1 + sum((d - 1) * s for d, s in zip(shape, strides)) + 3 if all(shape) else offset + 3
    storage = np.random.default_rng(numel).integers(0, 256, numel * word.itemsize, dtype=np.uint8).tobytes()
    data = storage
    if deflate:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = packer.compress(storage) + packer.flush()
    path = tmp_path / f"s{os.getpid()}"
    path.write_bytes(b"junk..." + data + b"trailing")
    ref = StorageRef("0", dtype, len(storage), 7, compression=DEFLATED if deflate else STORED,
                     compressed_size=len(data) if deflate else None)
    spec = TensorSpec(dtype, shape, strides, offset, ref)
    with open(path, "rb", buffering=0) as fh:
        got = b"".join(bytes(piece) for piece in tensor_chunks(fh, spec, memoryview(bytearray(CHUNK))))
    assert got == expected(np.frombuffer(storage, word), shape, strides, offset)


CHILD = r"""
import json, sys
import numpy, safetensors, xxhash
from airlock.core import formats
from airlock.core.convert import convert
formats.load_all_modules()
def peak():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM:"))
before = peak()
report = convert(sys.argv[1], sys.argv[2], max_expansion=None)
print(json.dumps({"grew": peak() - before, "bytes": report.bytes}))
"""


def convert_in_child(src, out):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out)], capture_output=True, text=True,
                          timeout=600, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def marks(index):
    """Zeros (they deflate 1000:1) except the first two elements of each 2^25-element row."""
    return np.where(index % (1 << 25) < 2, index.astype(np.float32) + 1, np.float32(0))


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from /proc")


@pytest.mark.slow
@needs_proc
def test_sparse_view_of_a_deflated_storage(tmp_path):
    """A 2×2 view with a 2^25 stride over a 256 MiB deflated storage (a file of ~250 KiB): the old
    gather read the 128 MiB span into memory to write 16 bytes."""
    shape, strides, numel = (2, 2), (1 << 25, 1), 1 << 26
    src = cf.strided_checkpoint(tmp_path / "sparse.pt", shape, strides, numel, deflate=True, values=marks)
    assert src.stat().st_size < 1 << 20
    numbers = convert_in_child(src, tmp_path / "out.safetensors")
    assert numbers["bytes"] == 16
    assert numbers["grew"] < 32 << 20, numbers
    from safetensors.numpy import load_file

    assert load_file(tmp_path / "out.safetensors")["w"].tobytes() == cf.expected_view(
        shape, strides, numel, values=marks).tobytes()


@needs_proc
def test_stride_zero_row_is_written_in_fixed_memory(tmp_path):
    """Shape (1, 2^24) with stride 0 over one element: 64 MiB out of a file of a few hundred bytes.
    Allowed explicitly here; written in blocks (the old gather built the 64 MiB row at once)."""
    src = cf.strided_checkpoint(tmp_path / "expand.pt", (1, 1 << 24), (0, 0), 1)
    assert src.stat().st_size < 1024
    numbers = convert_in_child(src, tmp_path / "out.safetensors")
    assert numbers["bytes"] == 64 << 20
    assert numbers["grew"] < 32 << 20, numbers
    with open(tmp_path / "out.safetensors", "rb") as fh:
        fh.seek(-(1 << 20), os.SEEK_END)
        assert set(np.frombuffer(fh.read(), "<f4")) == {np.float32(0.5)}


def test_expansion_is_refused_by_default(tmp_path, capsys):
    """The 700-byte checkpoint whose stride-0 view is 2 GiB: a clear refusal, exit 1, no file."""
    src = cf.strided_checkpoint(tmp_path / "bomb.pt", (1, 1 << 29), (0, 0), 1)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(src), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "refused: the output would hold 2,147,483,648 bytes" in err
    assert "--allow-expansion" in err and "--max-expansion" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.pt"]
    # A limit raised far enough lets a legitimately expanded tensor through.
    small = cf.strided_checkpoint(tmp_path / "small.pt", (4, 64), (0, 1), 64)
    assert main(["convert", str(small), "-o", str(tmp_path / "s.safetensors"), "--max-expansion", "0.1"]) == 1
    assert main(["convert", str(small), "-o", str(tmp_path / "s.safetensors")]) == 0


def test_a_shape_that_overflows_is_refused_before_anything_is_allocated(tmp_path, capsys):
    src = cf.strided_checkpoint(tmp_path / "huge.pt", (1 << 40, 1 << 40, 1 << 40), (0, 0, 0), 1)
    assert main(["convert", str(src), "-o", str(tmp_path / "o.safetensors"), "--allow-expansion"]) == 1
    err = capsys.readouterr().err
    assert "does not fit in 64 bits" in err and "internal error" not in err and "MemoryError" not in err


def test_transposed_views_larger_than_a_window(tmp_path):
    """A permuted view whose storage span exceeds the window is read run by run, and is exact."""
    import torch
    from safetensors.torch import load_file

    big = torch.arange(1536 * 1536, dtype=torch.float32).reshape(1536, 1536)  # 9 MiB storage
    src = cf.save({"t": big.t(), "cols": big[:, ::3], "p": big.reshape(96, 16, 1536).permute(2, 0, 1)},
                  tmp_path / "t.pt")
    saved = gather.WINDOW, gather.OUT_BLOCK
    gather.WINDOW, gather.OUT_BLOCK = 1 << 20, 1 << 19  # the views span 9 MiB: 9 windows at least
    try:
        from airlock.core.convert import convert

        convert(src, tmp_path / "t.safetensors")
    finally:
        gather.WINDOW, gather.OUT_BLOCK = saved
    got = load_file(tmp_path / "t.safetensors")
    assert torch.equal(got["t"], big.t().contiguous())
    assert torch.equal(got["cols"], big[:, ::3].contiguous())
    assert torch.equal(got["p"], big.reshape(96, 16, 1536).permute(2, 0, 1).contiguous())
