"""Mutated inputs: conversion either succeeds (and verifies) or fails with one ConvertError line.
Never another exception, never a partial output."""

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import convert_files as cf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.core.convert import ConvertError, convert


def _seeds():
    seeds = {}
    with tempfile.TemporaryDirectory() as name:
        d = Path(name)
        state = {"w": torch.arange(24, dtype=torch.float32).reshape(4, 6), "t": torch.arange(6.0).reshape(2, 3).t()}
        seeds["zip.pt"] = cf.save(state, d / "z.pt").read_bytes()
        seeds["legacy.pt"] = cf.save(state, d / "l.pt", legacy=True).read_bytes()
        seeds["tar.pt"] = cf.legacy_tar(d / "t.tar")[0].read_bytes()
        for name, saver in (("plain.npz", np.savez), ("deflated.npz", np.savez_compressed)):
            buf = io.BytesIO()
            saver(buf, a=np.arange(10, dtype=np.float32), f=np.asfortranarray(np.ones((2, 3), np.int16)))
            seeds[name] = buf.getvalue()
        import gguf

        writer = gguf.GGUFWriter(str(d / "g.gguf"), "llama")
        writer.add_string("general.name", "x")
        writer.add_tensor("w", np.ones((2, 4), np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        seeds["g.gguf"] = (d / "g.gguf").read_bytes()
    return seeds


SEEDS = _seeds()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_mutations_fail_cleanly(tmp_path, seed, data):
    raw = bytearray(SEEDS[seed])
    kind = data.draw(st.sampled_from(["flip", "truncate", "overwrite"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        raw[pos] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        del raw[pos:]
    else:
        value = data.draw(st.sampled_from([b"\xff" * 8, b"\x00" * 8, b"\x7f\xff\xff\xff\xff\xff\xff\xff"]))
        raw[pos:pos + len(value)] = value
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per example: tmp_path is shared
    src = work / f"in_{seed}"
    src.write_bytes(bytes(raw))
    out = work / "out.safetensors"
    try:
        report = convert(src, out, allow_critical=True, overwrite=True)
    except ConvertError as exc:
        assert "\n" not in str(exc)
        assert not out.exists()
    else:
        assert report.verified and out.exists()
    assert [n for n in os.listdir(work) if n.endswith(".part")] == []
