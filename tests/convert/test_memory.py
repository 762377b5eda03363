"""Streaming: converting a checkpoint does not hold its tensors in memory."""

import json
import os
import subprocess
import sys

import pytest
import torch

CHILD = r"""
import json, sys
import numpy, safetensors, xxhash
from airlock.core import formats
from airlock.core.convert import convert
formats.load_all_modules()
def rss():
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM:"))
before = rss()
report = convert(sys.argv[1], sys.argv[2], verify=True)
print(json.dumps({"before": before, "after": rss(), "bytes": report.bytes}))

"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from Linux /proc")
def test_peak_memory_does_not_grow_with_the_checkpoint(tmp_path):
    # 12 contiguous tensors of 16 MiB (192 MiB) and one transposed 16 MiB tensor.
    state = {f"w{i}": torch.full((2048, 2048), float(i)) for i in range(12)}
    state["t"] = torch.randn(2048, 2048).t()
    torch.save(state, tmp_path / "big.pt")
    del state
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "big.pt"), str(tmp_path / "out.safetensors")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    numbers = json.loads(proc.stdout)
    assert numbers["bytes"] == 13 * 16 * 2**20
    # Allowed: the 1 MiB copy buffer, the pickle, and the transposed tensor's gather (its 16 MiB
    # storage span plus one 16 MiB block). Not allowed: anything that grows with the 208 MiB.
    assert numbers["after"] - numbers["before"] < 48 * 2**20, numbers
