"""Converting hostile files executes nothing: proven with an audit hook in a child process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from fixtures import convert_files as cf

CHILD = Path(__file__).with_name("noexec_child.py")


def _warm_inputs(folder: Path) -> None:
    import gguf

    cf.save(cf.views_and_strides(), folder / "zip.pt")
    cf.save(cf.views_and_strides(), folder / "legacy.pt", legacy=True)
    cf.rebuild_zip(folder / "zip.pt", folder / "deflated.pt", deflate=True)
    cf.legacy_tar(folder / "old.tar")
    np.savez(folder / "a.npz", x=np.asfortranarray(np.ones((3, 4), np.float32)))
    np.savez_compressed(folder / "c.npz", x=np.ones(3, np.float32))
    np.save(folder / "one.npy", np.ones(3, np.int8))
    writer = gguf.GGUFWriter(str(folder / "q.gguf"), "llama")
    writer.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")  # loads jinja2
    writer.add_tensor("f", np.ones((2, 4), np.float32))
    q = gguf.quants.quantize(np.ones((2, 32), np.float32), gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("q", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_hostile_conversions_execute_nothing(tmp_path):
    for sub in ("warm", "warmout", "hostile", "out"):
        (tmp_path / sub).mkdir()
    _warm_inputs(tmp_path / "warm")
    hostile = tmp_path / "hostile"
    clean = cf.save({"w": torch.ones(3), "b": torch.zeros(2)}, tmp_path / "clean.pt")
    cf.evil_zip(clean, hostile / "evil.pt")
    cf.legacy_tar(hostile / "evil.tar", evil=True)
    cf.evil_npz(hostile / "evil.npz")
    cf.evil_gguf(hostile / "evil.gguf")
    (hostile / "evil.pkl").write_bytes(b"\x80\x02" + cf.EVIL_REDUCE + b".")
    (hostile / "evil_stacked.bin").write_bytes(b"\x80\x02K\x01." + b"\x80\x02" + cf.EVIL_REDUCE + b".")
    # Views built to exhaust memory (issue 14): a sparse view of a deflated storage is gathered;
    # a stride-0 view a million times the file's size and a shape that overflows are refused.
    cf.strided_checkpoint(hostile / "sparse_view.pt", (2, 2), (1 << 19, 1), 1 << 20, deflate=True)
    cf.strided_checkpoint(hostile / "expanded.pt", (1, 1 << 29), (0, 0), 1)
    cf.strided_checkpoint(hostile / "overflow.pt", (1 << 40, 1 << 40, 1 << 40), (0, 0, 0), 1)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(CHILD), str(tmp_path)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["events"] == []
    assert summary["canary"] and summary["canary"][0].startswith("compile")  # the hook was live
    results = summary["results"]
    for name in ("evil.pt", "evil.tar", "evil.npz", "evil.gguf"):
        assert results[f"{name} allow=False"].startswith("RefusedCritical: refused:"), results
        assert results[f"{name} allow=True"].startswith("converted"), results
    for name in ("evil.pkl", "evil_stacked.bin", "expanded.pt", "overflow.pt"):
        for allow in (False, True):
            outcome = results[f"{name} allow={allow}"]
            assert outcome.startswith(("ConvertError", "RefusedCritical")), outcome
    assert "--allow-expansion" in results["expanded.pt allow=True"]
    assert "does not fit in 64 bits" in results["overflow.pt allow=True"]
    assert not any("CRASH" in v for v in results.values())
    assert not os.path.exists("/tmp/airlock-convert-pwned")
    # Only the allowed conversions wrote anything, and no temp file was left behind.
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        [f"{n}.True.safetensors" for n in ("evil.pt", "evil.tar", "evil.npz", "evil.gguf")]
        + [f"sparse_view.pt.{allow}.safetensors" for allow in (False, True)])
