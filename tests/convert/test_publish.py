"""The converter never loses data (issue 14): exclusive atomic publish, modes, signals, stale parts.

Real processes are paused at a chosen file with file leases (tests/leases.py): a conversion of a
two-shard checkpoint opens each shard while planning, then again while writing; the test lets the
planning opens through and holds the writer at its first shard, when its part file exists.
"""

import glob
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import leases
import pytest
import torch
from fixtures import convert_files as cf
from safetensors.torch import load_file

from airlock.core.convert import ConvertError, convert
from airlock.core.convert.publish import remove_stale_parts

needs_leases = pytest.mark.skipif(not leases.AVAILABLE, reason="pausing a conversion needs Linux file leases")
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX modes, umask and signals")


def two_shards(folder: Path, value: float) -> tuple[Path, list[str]]:
    folder.mkdir()
    index = cf.sharded(folder, [{"a": torch.full((4096,), value)}, {"b": torch.full((8,), value)}])
    return index, sorted(glob.glob(str(folder / "pytorch_model-*.bin")))


def start_convert(*argv):
    return subprocess.Popen([sys.executable, "-m", "airlock.core.cli", "convert", *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=leases.stop_signals_default)


def parts_of(proc, target: Path) -> list[str]:
    return glob.glob(str(target.parent / f".{target.name}.airlock-{proc.pid}-*.part"))


def park(g, proc, shards, target):
    """Hold `proc` in its writer's open of a shard: its part file exists, nothing is published."""
    leases.step_until(g, proc, shards, lambda: bool(parts_of(proc, target)))


# Modes


@posix_only
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_umask_mode(tmp_path, umask, mode):
    src = cf.save({"a": torch.ones(3), "b": torch.zeros(3)}, tmp_path / "m.pt")
    old = os.umask(umask)
    try:
        convert(src, tmp_path / "m.safetensors", max_shard_size=8)  # two shards and an index
    finally:
        os.umask(old)
    written = sorted(p for p in tmp_path.iterdir() if p.name != "m.pt")
    assert len(written) == 3
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {mode}


@posix_only
def test_overwrite_keeps_the_mode_of_the_replaced_file(tmp_path):
    src = cf.save({"w": torch.ones(3)}, tmp_path / "m.pt")
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"old")
    out.chmod(0o640)
    old = os.umask(0o022)
    try:
        convert(src, out, overwrite=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert torch.equal(load_file(out)["w"], torch.ones(3))


def test_a_long_output_name_still_gets_a_part_file(tmp_path):
    src = cf.save({"w": torch.ones(3)}, tmp_path / "m.pt")
    out = tmp_path / ("n" * 230 + ".safetensors")  # 242 bytes: the part's suffix must not overflow
    convert(src, out)
    assert torch.equal(load_file(out)["w"], torch.ones(3))


# Exclusive publish


def test_a_target_created_while_converting_is_never_replaced(tmp_path):
    src = cf.save({"w": torch.ones(1000)}, tmp_path / "m.pt")
    out = tmp_path / "m.safetensors"

    def someone_else_writes(fraction, message):
        if 0 < fraction < 1 and not out.exists():
            out.write_bytes(b"another program's file")

    with pytest.raises(ConvertError, match=r"already exists.*not replaced"):
        convert(src, out, progress=someone_else_writes)
    assert out.read_bytes() == b"another program's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.safetensors"]  # no part left


def test_shards_are_published_all_or_none(tmp_path):
    src = cf.save({"a": torch.ones(64), "b": torch.zeros(64)}, tmp_path / "m.pt")
    out = tmp_path / "m.safetensors"
    second = tmp_path / "m-00002-of-00002.safetensors"

    def second_shard_appears(fraction, message):
        if 0 < fraction < 1 and not second.exists():
            second.write_bytes(b"not ours")

    with pytest.raises(ConvertError, match="already exists"):
        convert(src, out, max_shard_size=300, progress=second_shard_appears)
    # The first shard had been linked in place, then removed again: nothing half-published.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-00002-of-00002.safetensors", "m.pt"]
    assert second.read_bytes() == b"not ours"


@needs_leases
def test_two_converters_racing_to_one_target(tmp_path):
    """Both are held after their existence check, then released together: exactly one publishes,
    the other refuses, and the file on disk is the winner's."""
    index_a, shards_a = two_shards(tmp_path / "a", 1.0)
    index_b, shards_b = two_shards(tmp_path / "b", 2.0)
    target = tmp_path / "model.safetensors"
    with leases.gate() as ga, leases.gate() as gb:
        ga.hold(shards_a)
        gb.hold(shards_b)
        a = start_convert(index_a, "-o", target)
        b = start_convert(index_b, "-o", target)
        with leases.killed_on_error(a, b):
            try:
                park(ga, a, shards_a, target)
                park(gb, b, shards_b, target)
                assert not target.exists()  # both are past their existence check, neither published
            finally:
                ga.release_all()
                gb.release_all()
        results = {name: (p.wait(timeout=300), *p.communicate()) for name, p in (("a", a), ("b", b))}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 1], results
    winner = next(name for name, (code, _, _) in results.items() if code == 0)
    loser = "b" if winner == "a" else "a"
    assert b"wrote" in results[winner][1] and b"wrote" not in results[loser][1]
    assert b"already exists" in results[loser][2] and b"not replaced" in results[loser][2]
    value = 1.0 if winner == "a" else 2.0
    assert torch.equal(load_file(target)["a"], torch.full((4096,), value))
    assert glob.glob(str(tmp_path / ".*.part")) == []


# Signals


@needs_leases
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_mid_conversion_leaves_nothing(tmp_path, sig):
    index, shards = two_shards(tmp_path / "in", 1.0)
    target = tmp_path / "model.safetensors"
    with leases.gate() as g:
        g.hold(shards)
        proc = start_convert(index, "-o", target)
        with leases.killed_on_error(proc):
            park(g, proc, shards, target)
            assert parts_of(proc, target)
            os.kill(proc.pid, sig)
            out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert b"Traceback" not in err and b"no output written" in err
    assert out == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no output, no part


@needs_leases
def test_a_killed_conversion_is_cleaned_up_by_the_next_one(tmp_path):
    """SIGKILL cannot be handled: the part stays, and the next conversion into the folder removes it."""
    index, shards = two_shards(tmp_path / "in", 1.0)
    target = tmp_path / "model.safetensors"
    with leases.gate() as g:
        g.hold(shards)
        proc = start_convert(index, "-o", target)
        with leases.killed_on_error(proc):
            park(g, proc, shards, target)
            (part,) = parts_of(proc, target)
        proc.kill()
        proc.communicate(timeout=120)
    assert os.path.exists(part)
    report = convert(index, target)
    assert not os.path.exists(part)
    assert any("removed 1 temporary file" in note for note in report.notes)
    assert torch.equal(load_file(target)["b"], torch.full((8,), 1.0))


def test_only_stale_parts_of_our_own_naming_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        "stale": f".m.safetensors.airlock-{dead.pid}-0123abcd.part",
        "live pid": f".m.safetensors.airlock-{os.getpid()}-0123abcd.part",  # this process is running
        "locked": f".x.safetensors.airlock-{dead.pid}-4567cdef.part",  # held by a writer elsewhere
        "not ours": f".m.safetensors.{dead.pid}.part",
        "no dot": f"m.safetensors.airlock-{dead.pid}-0123abcd.part",
        "bad tag": f".m.safetensors.airlock-{dead.pid}-XYZ.part",
        "user file": "m.safetensors",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    locker = None
    if os.name == "posix":
        import fcntl

        locker = os.open(tmp_path / names["locked"], os.O_RDONLY)
        fcntl.flock(locker, fcntl.LOCK_EX)
    try:
        removed = remove_stale_parts(str(tmp_path))
    finally:
        if locker is not None:
            os.close(locker)
    assert removed == [names["stale"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for k, n in names.items() if k != "stale")
