"""A plain scan of a large SafeTensors file reads its header only; --hash reads every byte.

Bytes read are counted by the kernel (`rchar` of /proc/self/io) in a child process that runs the
CLI: honest whatever Airlock's own code does. The file is sparse, so it costs no disk."""

import json
import struct
import subprocess
import sys

import pytest

SIZE = 256 * 1024 * 1024  # scaled down from the 4 GiB of the issue: the point is header vs whole
CHILD = """
import io, json, sys, contextlib
from airlock.core.cli import main
def rchar():
    with open("/proc/self/io") as fh:
        return int(next(l for l in fh if l.startswith("rchar")).split()[1])
out = io.StringIO()
before = rchar()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "read": rchar() - before, "doc": json.loads(out.getvalue())}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/io is Linux's")
def test_plain_scan_stays_header_only_and_hash_reads_everything(tmp_path):
    n = SIZE // 4
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + 4 * n)

    def run(*args):
        proc = subprocess.run([sys.executable, "-c", CHILD, "scan", "--format", "json", "--no-policy", *args,
                               str(path)], capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    plain = run()
    assert plain["code"] == 0 and plain["doc"]["files"][0]["format"] == "safetensors"
    assert "sha256" not in plain["doc"]["files"][0]
    assert plain["read"] < 8 * 1024 * 1024, plain["read"]
    hashed = run("--hash")
    entry = hashed["doc"]["files"][0]
    assert entry["size"] == path.stat().st_size and len(entry["sha256"]) == 64
    assert hashed["read"] >= path.stat().st_size
