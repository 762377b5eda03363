"""SafeTensors and sharded indexes: every THREATS class flagged, real files clean, headers only."""

import json
import os
import pickle
import struct

import numpy as np
import pytest
from fixtures.safetensors_files import benign_files, f32, hostile_files, st, system_pickle
from helpers import assert_flagged, rules
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_
from safetensors import safe_open
from safetensors.numpy import save, save_file

from airlock.core.context import ScanContext
from airlock.core.findings import Severity
from airlock.core.formats import safetensors as st_format
from airlock.core.scan import scan_bytes, scan_file, scan_source
from airlock.core.source import Source
from airlock.core.tree import TENSOR

HOSTILE = hostile_files()
BENIGN = benign_files()


def scan(data, name="model.safetensors"):
    result = scan_bytes(data, name)
    result.close()
    return result


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_flagged_by_its_rule(name):
    data, rule, severity = HOSTILE[name]
    assert_flagged(scan(data), rule, severity)


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_writer_output_is_clean(name):
    result = scan(BENIGN[name], name)
    assert result.format == "safetensors"
    # a chat template in the metadata that is not a catalogued one says how it drifts (info), no more
    assert all(f.rule == "TPL010" and f.severity == Severity.INFO for f in result.findings), \
        [f.message for f in result.findings]


def _tensor_nodes(root):
    return [n for n in root.walk(expand_lazy=True) if n.kind == TENSOR]


def test_tree_matches_what_safetensors_reads(tmp_path):
    path = tmp_path / "dtypes.safetensors"
    path.write_bytes(BENIGN["dtypes.safetensors"])
    result = scan_file(path)
    nodes = {n.attrs["name"]: n for n in _tensor_nodes(result.root)}
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(path.read_bytes()[8:8 + n])
    with safe_open(str(path), "np") as f:
        keys = f.keys()
        assert set(nodes) == set(keys)
        for key in keys:
            node = nodes[key]
            begin, end = header[key]["data_offsets"]
            assert node.attrs["dtype"] == header[key]["dtype"]
            assert node.attrs["shape"] == tuple(f.get_slice(key).get_shape())
            assert node.attrs["size"] == end - begin == f.get_tensor(key).nbytes
            assert node.offset == node.attrs["data_offset"] == 8 + n + begin  # absolute in the file
            assert path.read_bytes()[node.offset:node.offset + node.length] == f.get_tensor(key).tobytes()
    result.close()


def test_tensors_are_grouped_by_name_prefix():
    result = scan(BENIGN["dtypes.safetensors"])
    q = next(n for n in _tensor_nodes(result.root) if n.attrs["name"] == "model.layers.0.self_attn.q_proj.weight")
    assert q.path().split(" / ")[-6:] == ["model", "layers", "0", "self_attn", "q_proj", "weight"]
    layers = q.parent.parent.parent.parent
    assert [c.label for c in layers] == ["0", "1", "10"]  # natural order
    assert layers.attrs["tensors"] == 4
    metadata = next(c for c in result.root if c.label.startswith("metadata"))
    assert [c.label for c in metadata] == ["format = pt"]


def test_wide_levels_are_lazy_and_findings_still_attach():
    result = scan(BENIGN["many_tensors.safetensors"])
    layer = next(n for n in result.root.walk() if n.label == "layer")
    assert layer.is_lazy and layer.child_count == 600
    assert sum(1 for _ in result.root.walk()) < 20  # nothing built until expanded
    assert layer.child_at(599).attrs["name"] == "layer.599"
    # A broken tensor deep in a lazy level reports on the lazy group that holds it.
    data = save({f"layer.{i}": np.full(1, i, dtype=np.float32) for i in range(600)})
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["layer.7"]["shape"] = [2]
    broken = scan(st(header, data[8 + n:]))
    finding = next(f for f in broken.findings if f.rule == "ST004")
    assert finding.node.label == "layer" and finding.node.is_lazy


def test_hidden_pickle_is_sniffed_and_named():
    result = scan(HOSTILE["trailing_pickle"][0])
    trailing = next(f for f in result.findings if f.rule == "ST008")
    assert "pickle" in trailing.message and "system" in trailing.message
    assert any(f.severity == Severity.CRITICAL and "system" in f.message for f in result.findings)
    assert trailing.offset == len(HOSTILE["trailing_pickle"][0]) - len(system_pickle())
    hole = scan(HOSTILE["hole_hides_pickle"][0])
    assert any(f.rule == "ST007" and "pickle" in f.message for f in hole.findings)


def test_pickle_shaped_tensor_bytes_are_data():
    data = BENIGN["pickle_shaped_tensor.safetensors"]
    assert system_pickle() in data
    assert scan(data).findings == []


def test_header_length_whose_low_byte_reads_as_pickle_proto():
    # A header of 0x280 bytes starts the file with 0x80 0x02: PROTO 2 to a pickle sniffer.
    header = json.dumps(f32({"w": ([2], 0, 8)}))
    header += " " * (0x280 - len(header))
    data = struct.pack("<Q", 0x280) + header.encode() + bytes(8)
    assert data[:2] == b"\x80\x02"
    result = scan(data)
    assert result.format == "safetensors"
    assert result.findings == []


def test_header_length_is_checked_before_anything_is_read():
    class Counting(Source):
        """A source that records every read a parser makes (a subclass implements `_read` only)."""

        def __init__(self, data):
            super().__init__(name="x.safetensors", size=len(data))
            self.data, self.reads = data, []

        def _read(self, offset, n):
            self.reads.append((offset, n))
            return self.data[offset:offset + n]

    source = Counting(st(f32({"w": ([2], 0, 8)}), bytes(8), length=2**63))
    result = scan_source(source, "x.safetensors", ScanContext())
    assert "ST001" in rules(result)
    assert source.reads and all(n <= 4096 for _, n in source.reads)


def test_ten_gigabyte_file_reads_only_its_header(tmp_path):
    size = 10 * 1024**3
    header = json.dumps({"__metadata__": {"format": "pt"}, "huge": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}})
    # The second tensor spans the rest of the (sparse) file.
    n = len(header) + 200
    data_len = size - 8 - n
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "huge": {"dtype": "U8", "shape": [data_len], "data_offsets": [0, data_len]}})
    header += " " * (n - len(header))
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", n) + header.encode())
        fh.truncate(size)
    assert os.path.getsize(path) == size
    assert os.stat(path).st_blocks * 512 < 1024**2  # really sparse: nothing to read but the header
    result = scan_file(path)
    assert result.format == "safetensors"
    assert result.findings == []
    (node,) = _tensor_nodes(result.root)
    assert node.attrs["size"] == data_len and node.attrs["shape"] == (data_len,)
    result.close()


def test_truncated_download_is_one_truncated_finding(tmp_path):
    data = BENIGN["dtypes.safetensors"]
    result = scan(data[: len(data) - 10])
    high = [f for f in result.findings if f.severity >= Severity.HIGH]
    assert [f.rule for f in high] == ["ST005"]
    assert "truncated" in high[0].message
    assert len(_tensor_nodes(result.root)) == 8  # the whole tree is still there


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st_.data())
def test_mutated_files_never_crash_the_parser(data):
    seed = BENIGN["dtypes.safetensors"]
    blob = bytearray(seed)
    for _ in range(data.draw(st_.integers(1, 8))):
        i = data.draw(st_.integers(0, len(blob) - 1))
        blob[i] = data.draw(st_.integers(0, 255))
    cut = data.draw(st_.integers(8, len(blob)))
    result = scan(bytes(blob[:cut]))
    assert "AIR001" not in rules(result)


def test_sniff_wants_content_not_the_name():
    assert st_format.sniff(BENIGN["dtypes.safetensors"][:4096], len(BENIGN["dtypes.safetensors"])) > 90
    assert st_format.sniff(b"PK\x03\x04" + bytes(100), 104) == 0
    assert st_format.sniff(pickle.dumps({"a": 1}), 20) == 0


# Sharded models


def _shard_folder(tmp_path):
    save_file({"model.a.weight": np.ones(3, np.float32), "model.b.weight": np.ones(2, np.float32)},
              str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"lm_head.weight": np.ones(4, np.float32)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"metadata": {"total_size": 36}, "weight_map": {
        "model.a.weight": "model-00001-of-00002.safetensors",
        "model.b.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors"}}
    return tmp_path / "model.safetensors.index.json", index


def _scan_index(path, index):
    path.write_text(json.dumps(index, indent=2))
    result = scan_file(path)
    result.close()
    return result


def test_consistent_index_shows_every_shard(tmp_path):
    path, index = _shard_folder(tmp_path)
    result = _scan_index(path, index)
    assert result.format == "safetensors-index"
    assert result.findings == []
    shards = next(c for c in result.root if c.label.startswith("shards"))
    assert [c.label for c in shards] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert {n.attrs["name"] for n in _tensor_nodes(shards)} == set(index["weight_map"])


def test_index_disagreements_are_reported(tmp_path):
    path, index = _shard_folder(tmp_path)
    index["weight_map"]["lm_head.weight"] = "model-00001-of-00002.safetensors"  # wrong shard
    index["weight_map"]["model.ghost"] = "model-00002-of-00002.safetensors"  # in no shard
    index["weight_map"]["extra"] = "model-00003-of-00002.safetensors"  # missing file
    index["weight_map"]["evil"] = "../../outside.safetensors"  # a path
    result = _scan_index(path, index)
    found = {f.rule: f.message for f in result.findings}
    assert set(found) == {"ST102", "ST103", "ST104", "ST105"}
    assert "model.ghost" in found["ST102"]
    assert "lm_head.weight" in found["ST103"] and "model-00002-of-00002.safetensors" in found["ST103"]
    assert "model-00003-of-00002.safetensors" in found["ST104"]
    assert result.severity == Severity.HIGH


def test_unindexed_tensor_in_a_shard(tmp_path):
    path, index = _shard_folder(tmp_path)
    del index["weight_map"]["model.b.weight"]
    result = _scan_index(path, index)
    assert [(f.rule, "model.b.weight" in f.message) for f in result.findings] == [("ST103", True)]


def test_hostile_shard_findings_surface_in_the_index(tmp_path):
    path, index = _shard_folder(tmp_path)
    shard = tmp_path / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes() + system_pickle())
    result = _scan_index(path, index)
    assert result.severity == Severity.CRITICAL
    assert any(f.rule == "ST008" and f.member == "model-00002-of-00002.safetensors" for f in result.findings)


def test_index_from_bytes_says_shards_were_not_checked():
    index = {"weight_map": {"a": "model-00001-of-00001.safetensors"}}
    result = scan(json.dumps(index).encode(), "model.safetensors.index.json")
    assert result.format == "safetensors-index"
    assert [f.rule for f in result.findings] == ["AIR005"]


def test_index_with_duplicate_keys_and_bad_values(tmp_path):
    path = tmp_path / "model.safetensors.index.json"
    path.write_text('{"weight_map": {"a": "x.safetensors", "a": "y.safetensors", "b": 3}}')
    result = scan_file(path)
    assert {f.rule for f in result.findings} >= {"ST101", "ST104"}
    result.close()
