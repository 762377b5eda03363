"""TensorFlow checkpoints (airlock.core.formats.tf_checkpoint): the bundle index and its data shards, written
by tests/fixtures/tf_checkpoint_files.py (an SSTable and bundle writer of its own).

Cross-checked once against the real library (TensorFlow 2.21.0, tensorflow-cpu in a scratch venv, never a
project dependency): checkpoints written by `tf.train.Checkpoint(model=m, step=...).write(prefix)` and by
`tf.saved_model.save(m, ...)` of a small tf.Module (float32, float64, float16, bfloat16, int32, int64, bool and
string variables; 10 and 9 tensors) were scanned by this reader: it listed exactly the tensor names, dtypes and
shapes of `tf.train.list_variables` / `CheckpointReader.get_variable_to_dtype_map`, each numeric tensor's size
equals `len(get_tensor(name).tobytes())` and the shard bytes at its offset equal those bytes; both indexes are
clean but for TFC007 (the `_CHECKPOINTABLE_OBJECT_GRAPH` string tensor), both data shards are covered (TFC010,
fully inspected). And `tf.train.load_checkpoint(prefix).get_tensor(name)` read every tensor of this module's
`valid()` checkpoint with the values written (`test_tensorflow_agrees`, which runs where TensorFlow is
installed; it is not installed for the suite).
"""

import importlib.util
import json
import struct

import pytest
from fixtures import saved_model_files
from fixtures import tf_checkpoint_files as f

from airlock.core.cli import main
from airlock.core.findings import Severity
from airlock.core.formats import tf_table
from airlock.core.scan import scan_bytes, scan_file


def _rules(result):
    return sorted({x.rule for x in result.findings})


def _write(folder, prefix="variables", index=None, shard=None):
    valid_index, valid_shard = f.valid()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}.index").write_bytes(valid_index if index is None else index)
    (folder / f"{prefix}.data-00000-of-00001").write_bytes(valid_shard if shard is None else shard)
    return folder / f"{prefix}.index", folder / f"{prefix}.data-00000-of-00001"


def test_crc32c_matches_the_known_vectors():
    assert tf_table.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert tf_table.crc32c(b"\x00" * 32) == 0x8A9136AA  # RFC 3720 B.4
    assert tf_table.masked_crc(b"abc") == f.masked(b"abc")


def test_valid_index_lists_every_tensor_and_is_clean():
    index, shard = f.valid()
    result = scan_bytes(index, "renamed")  # content decides
    assert result.format == "tf_checkpoint"
    assert result.severity == Severity.NONE, [x.message for x in result.findings]
    assert result.inspected == "full"
    tensors = [n for n in result.root.walk(expand_lazy=True) if n.kind == "tensor"]
    assert [n.label for n in tensors] == sorted(name for name, _, _ in f.TENSORS)
    kernel = next(n for n in tensors if n.label == "layer_03/kernel")
    assert kernel.attrs["dtype"] == "float32" and kernel.attrs["shape"] == [2, 3]
    assert kernel.attrs["bytes"] == 24
    ends = [n.attrs["shard offset"] + n.attrs["bytes"] for n in tensors]
    assert max(ends) == len(shard) and tensors[0].attrs["shard offset"] == 0
    header = next(n for n in result.root.walk() if n.kind == "header")
    assert header.attrs["num_shards"] == 1 and header.attrs["endianness"] == "little"


@pytest.mark.parametrize(("build", "rule", "severity", "words"), [
    (f.unordered, "TFC001", Severity.HIGH, "sorts before"),
    (f.duplicate, "TFC001", Severity.HIGH, "repeats the key"),
    (f.no_header, "TFC002", Severity.HIGH, "no header entry"),
    (f.bad_shard, "TFC003", Severity.HIGH, "shard_id 3, expected 0 to 0"),
    (f.negative_size, "TFC003", Severity.HIGH, "size -8"),
    (f.wrong_size, "TFC003", Severity.HIGH, "needs 24 bytes, the entry says 25"),
    (f.overlapping, "TFC005", Severity.MEDIUM, "inside"),
    (f.big_endian, "TFC006", Severity.INFO, "big-endian"),
    (f.with_strings, "TFC007", Severity.INFO, "zz_object_graph"),
    (f.with_variant, "TFC008", Severity.LOW, "zz_iterator"),
    (f.snappy, "TFC009", Severity.MEDIUM, "Snappy"),
    (f.bad_crc, "AIR002", Severity.HIGH, "CRC32C"),
    (f.truncated, "AIR002", Severity.HIGH, "past the footer"),
])
def test_every_break_is_named(build, rule, severity, words):
    result = scan_bytes(build(), "variables.index")
    hits = [x for x in result.findings if x.rule == rule]
    assert hits and result.severity == severity, [x.message for x in result.findings]
    assert any(words in x.message for x in hits), [x.message for x in hits]
    assert all(x.offset is not None for x in hits)


def test_a_compressed_block_is_not_called_fully_inspected():
    assert scan_bytes(f.snappy(), "variables.index").inspected != "full"


def test_data_past_the_end_of_the_shard_beside_the_index(tmp_path):
    _, shard = f.valid()
    index_path, _ = _write(tmp_path, shard=shard[:-10])
    result = scan_file(index_path)
    hits = [x for x in result.findings if x.rule == "TFC004"]
    assert hits and result.severity == Severity.HIGH
    # the last two tensors (layer_05/scale at 456..472, layer_05/steps at 472..480) cross the cut at 470
    assert [x.message.split("'")[1] for x in hits] == ["layer_05/scale", "layer_05/steps"]
    assert all(f"whose file is {len(shard) - 10:,} bytes" in x.message for x in hits)
    # the shard itself is no longer covered by its index: fail closed
    shard_result = scan_file(tmp_path / "variables.data-00000-of-00001")
    assert shard_result.severity == Severity.MEDIUM
    assert "outside this file" in shard_result.findings[0].message


def test_a_shard_is_covered_by_its_valid_index(tmp_path):
    _, shard_path = _write(tmp_path, prefix="ckpt-1")
    result = scan_file(shard_path)
    assert result.format == "tf_checkpoint"
    assert result.severity == Severity.INFO, [x.message for x in result.findings]
    assert result.inspected == "full"
    assert _rules(result) == ["TFC010"]
    assert f"ckpt-1.index ({len(f.TENSORS)} tensors, bytes 0..{shard_path.stat().st_size:,}" in \
        result.findings[0].message
    tensors = [n for n in result.root.walk(expand_lazy=True) if n.kind == "tensor"]
    kernel = next(n for n in tensors if n.label == "layer_00/kernel")
    assert kernel.attrs["data_offset"] == kernel.offset and kernel.length == 24
    # the node spans the tensor's bytes in the shard: the values view reads them
    from airlock.core.tensors import describe

    data = describe(kernel)
    assert not isinstance(data, str) and data.shape == (2, 3) and data.offset == kernel.offset
    raw = shard_path.read_bytes()[kernel.offset:kernel.offset + 24]
    seed = sorted(name for name, _, _ in f.TENSORS).index("layer_00/kernel")
    assert struct.unpack("<6f", raw) == tuple(seed + i / 4 for i in range(6))


@pytest.mark.parametrize("index", [None, b"not an index", "bad_crc", "unordered"])
def test_a_shard_without_a_valid_index_stays_not_inspected(tmp_path, index):
    _, shard_path = _write(tmp_path)
    if index is None:
        (tmp_path / "variables.index").unlink()
    else:
        (tmp_path / "variables.index").write_bytes(index if isinstance(index, bytes) else getattr(f, index)())
    result = scan_file(shard_path)
    assert result.severity == Severity.MEDIUM and result.inspected != "full"
    assert "AIR005" in _rules(result)


def test_a_pickle_named_like_a_shard_is_read_as_a_pickle(tmp_path):
    (corpus_entry,) = [e for e in f.corpus() if e[0] == "pickle.data-00000-of-00001"]
    _, shard_path = _write(tmp_path, shard=corpus_entry[1])
    result = scan_file(shard_path)
    assert result.format == "pickle" and result.severity == Severity.CRITICAL


def fingerprint():
    """fingerprint.pb as TF 2.12+ writes it: FingerprintDef, five uint64 hashes, VersionDef, a uuid string."""
    sm = saved_model_files
    hashes = b"".join(sm.vfield(n, 0xF000_0000_0000_0000 + n * 12345) for n in range(1, 6))
    return hashes + sm.field(6, sm.vfield(1, 2)) + sm.field(7, "57597237733304381785")


def test_savedmodel_folder_scans_clean_end_to_end(tmp_path, capsys):
    (tmp_path / "saved_model.pb").write_bytes(saved_model_files.saved_model())
    (tmp_path / "fingerprint.pb").write_bytes(fingerprint())
    _write(tmp_path / "variables")
    assert main(["scan", "--format", "json", "--fail-on", "medium", str(tmp_path)]) == 0
    files = {x["path"].rsplit("/", 1)[-1]: x for x in json.loads(capsys.readouterr().out)["files"]}
    assert set(files) == {"saved_model.pb", "fingerprint.pb", "variables.index", "variables.data-00000-of-00001"}
    assert files["fingerprint.pb"]["format"] == "saved_model"
    for name, entry in files.items():
        assert entry["inspected"] == "full", (name, entry)
        assert entry["severity"] in ("none", "info"), (name, entry["findings"])
    assert files["variables.index"]["format"] == "tf_checkpoint"
    assert files["variables.data-00000-of-00001"]["format"] == "tf_checkpoint"


def test_odd_input_never_raises():
    index, _ = f.valid()
    for cut in (0, 10, 47, 48, 60, len(index) - 49, len(index) - 1):
        result = scan_bytes(index[:cut] + index[-48:] if cut else index[-48:], "variables.index")
        assert result.severity >= Severity.MEDIUM or result.inspected == "full"
    for at in range(0, len(index), 7):  # flipped bytes anywhere: a finding, never a crash
        broken = bytearray(index)
        broken[at] ^= 0x5A
        result = scan_bytes(bytes(broken), "variables.index")
        assert "AIR001" not in _rules(result), [x.message for x in result.findings]


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="the cross-check with TensorFlow is opt-in: it runs where tensorflow-cpu is "
                    "installed")
def test_tensorflow_agrees(tmp_path):
    import tensorflow as tf

    index_path, _ = _write(tmp_path)
    prefix = str(index_path)[:-len(".index")]
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    assert sorted(shapes) == sorted(name for name, _, _ in f.TENSORS)
    for seed, (name, dtype, shape) in enumerate(sorted(f.TENSORS)):
        assert tuple(shapes[name]) == shape
        assert reader.get_tensor(name).tobytes() == f.values(dtype, shape, seed)


@pytest.mark.parametrize("data", [b"\x0a\x03abc", b"PK\x03\x04", b"\x08\x01" * 3000])
def test_a_fingerprint_name_over_other_content_is_not_claimed(data):
    result = scan_bytes(data, "fingerprint.pb")
    assert result.format != "saved_model" and result.severity >= Severity.MEDIUM


NOEXEC_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import noexec_child
from airlock.core.scan import scan_file

paths, log = json.loads(sys.argv[2]), sys.argv[3]
noexec_child.import_everything()
for path in paths[:2]:  # warm up on the valid pair, as the proof warms up on one file per format
    scan_file(path).close()
guard = noexec_child.install(log, "scan")
out = []
for path in paths:
    result = scan_file(path)
    nodes = sum(1 for _ in result.root.walk(expand_lazy=True))
    out.append([path.rsplit("/", 2)[-2], result.format, result.severity.label, nodes])
    result.close()
guard.phase = "canary"  # the hook must catch this one, or the silence above proves nothing
try:
    exec("canary = 1", {})
except PermissionError:
    pass
print(json.dumps(out))
"""


def test_a_shard_read_with_its_sibling_index_runs_nothing(tmp_path):
    """The no-execution proof scans each corpus file alone; a data shard is judged by the index beside it,
    so checkpoint folders (valid, a broken index, a short shard, a pickle named like a shard) are scanned
    here under the proof's audit hook (tests/noexec_child.py), which blocks and records any exec, compile,
    unpickling, import, spawn, socket or write."""
    import subprocess
    import sys
    from pathlib import Path

    index, shard = f.valid()
    (pickle_entry,) = [e for e in f.corpus() if e[0] == "pickle.data-00000-of-00001"]
    folders = {"valid": (index, shard), "unordered": (f.unordered(), shard), "short": (index, shard[:100]),
               "pickle": (index, pickle_entry[1]), "bad_crc": (f.bad_crc(), shard)}
    paths = []
    for name, (idx, data) in folders.items():
        index_path, shard_path = _write(tmp_path / name, "ckpt-1", idx, data)
        paths += [str(index_path), str(shard_path)]
    log = tmp_path / "audit.jsonl"
    tests = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", NOEXEC_SCRIPT, str(tests), json.dumps(paths), str(log)],
                          capture_output=True, cwd=tmp_path, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert [r["phase"] for r in records] == ["canary"], records[:10]  # nothing while scanning
    results = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    shards = {folder: (fmt, severity) for folder, fmt, severity, _ in results[1::2]}
    assert shards == {"valid": ("tf_checkpoint", "info"), "unordered": ("tf_checkpoint", "medium"),
                      "short": ("tf_checkpoint", "medium"), "pickle": ("pickle", "critical"),
                      "bad_crc": ("tf_checkpoint", "medium")}


def test_a_fifo_named_like_the_index_is_not_opened(tmp_path):
    import os

    _, shard_path = _write(tmp_path)
    (tmp_path / "variables.index").unlink()
    os.mkfifo(tmp_path / "variables.index")  # opening it for reading would block the scan
    result = scan_file(shard_path)
    assert result.severity == Severity.MEDIUM and "AIR005" in _rules(result)


def test_checksums_past_the_cap_are_noted_not_verified(monkeypatch):
    monkeypatch.setattr(tf_table, "CRC_CAP", 64)  # scaled down (the real cap is 4 MiB): under one block
    result = scan_bytes(f.bad_crc(), "variables.index")
    assert "AIR002" not in _rules(result)
    assert "were not verified" in result.root.attrs["checksums"]
    monkeypatch.setattr(tf_table, "CRC_CAP", 4 << 20)
    assert "AIR002" in _rules(scan_bytes(f.bad_crc(), "variables.index"))
