"""`airlock convert`: arguments, report text, exit codes (0 done, 1 failed or refused, 2 bad args)."""

import numpy as np
import pytest
import torch
from fixtures import convert_files as cf
from safetensors.torch import load_file

from airlock.core.cli import main
from airlock.core.cli_common import byte_size


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_prints_a_report(tmp_path, capsys):
    src = cf.save(cf.lightning({"w": torch.ones(3, 3), "b": torch.zeros(3)}), tmp_path / "last.ckpt")
    code, out, err = run(capsys, "convert", str(src), "-o", str(tmp_path / "m.safetensors"))
    assert code == 0, err
    assert "weights from: state_dict" in out
    assert "2 tensors" in out and "verification: passed" in out
    assert "optimizer_states: not under the selected dict" in out
    assert sorted(load_file(tmp_path / "m.safetensors")) == ["b", "w"]


def test_all_options_reach_convert(tmp_path, capsys):
    src = cf.save(cf.views_and_strides(), tmp_path / "v.pt")
    code, out, err = run(capsys, "convert", str(src), "--dedupe", "--no-verify", "--max-shard-size", "1KB",
                         "-o", str(tmp_path / "s.safetensors"))
    assert code == 0, err
    assert "aliases (1): lm_head.weight -> emb.weight" in out
    assert "not verified" in out
    assert (tmp_path / "s.safetensors.index.json").exists()
    code, out, err = run(capsys, "convert", str(src), "--key", "nope", "-o", str(tmp_path / "k.safetensors"))
    assert code == 1 and "no entry 'nope'" in err


def test_errors_are_one_line_with_exit_1(tmp_path, capsys):
    src = tmp_path / "a.npz"
    np.savez(src, x=np.ones(2, np.float32))
    assert run(capsys, "convert", str(src))[0] == 0
    code, out, err = run(capsys, "convert", str(src))
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "already exists" in err and "--overwrite" in err
    assert run(capsys, "convert", str(src), "--overwrite")[0] == 0
    code, _, err = run(capsys, "convert", str(tmp_path / "missing.pt"))
    assert code == 2 and "no such file" in err  # as `scan`: nothing to start on (new-user trial: was 1)


def test_critical_needs_allow_critical(tmp_path, capsys):
    evil = cf.evil_zip(cf.save({"w": torch.ones(2)}, tmp_path / "c.pt"), tmp_path / "evil.pt")
    code, _, err = run(capsys, "convert", str(evil))
    assert code == 1 and "refused" in err and "--allow-critical" in err
    code, out, _ = run(capsys, "convert", str(evil), "--allow-critical")
    assert code == 0 and "scan: critical" in out


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["convert", "x.pt", "--max-shard-size", "lots"])
    assert info.value.code == 2
    assert "not a size" in capsys.readouterr().err


@pytest.mark.parametrize("text, value", [("5GB", 5 * 10**9), ("500MB", 500 * 10**6), ("2GiB", 2 * 2**30),
                                         ("1.5GB", 1_500_000_000), ("4096", 4096), ("10kib", 10240)])
def test_sizes(text, value):
    assert byte_size(text) == value
