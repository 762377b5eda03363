"""Sharded checkpoints verified without a key: every shard present, every tensor where the index says."""

import json
import os

import numpy as np
import torch
from safetensors.numpy import save_file

from airlock.core.cli import main
from airlock.core.provenance import shards


def _safetensors_model(folder):
    folder.mkdir()
    save_file({"a.weight": np.zeros(4, np.float32), "a.bias": np.zeros(2, np.float32)},
              str(folder / "model-00001-of-00002.safetensors"))
    save_file({"b.weight": np.ones(3, np.float32)}, str(folder / "model-00002-of-00002.safetensors"))
    index = {"metadata": {"total_size": 36}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "a.bias": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder / "model.safetensors.index.json", index


def test_consistent_index_is_clean(tmp_path):
    index_path, _ = _safetensors_model(tmp_path / "m")
    assert shards.check(str(index_path)) == []


def test_missing_shard_wrong_shard_and_unlisted_tensor(tmp_path, capsys):
    index_path, index = _safetensors_model(tmp_path / "m")
    index["weight_map"]["a.bias"] = "model-00002-of-00002.safetensors"  # it sits in shard 1
    index["weight_map"]["c.weight"] = "model-00003-of-00003.safetensors"  # no such shard
    del index["weight_map"]["b.weight"]  # in shard 2, unlisted
    index_path.write_text(json.dumps(index))
    problems = {(rule.id, message.split(":")[0]) for rule, message in shards.check(str(index_path))}
    assert {rule for rule, _ in problems} == {"ST104", "ST103"}
    code = main(["verify", "--format", "json", "--no-policy", str(tmp_path / "m")])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    messages = [f["message"] for e in doc["files"] for f in e["findings"] if f["rule"].startswith("ST")]
    assert any("model-00003-of-00003.safetensors" in m and "missing" in m for m in messages)
    assert any("'a.bias (index: model-00002-of-00002.safetensors" in m for m in messages)
    assert any("not in the index" in m and "b.weight" in m for m in messages)


def test_pytorch_bin_index_reads_shards_without_unpickling(tmp_path):
    folder = tmp_path / "pt"
    folder.mkdir()
    torch.save({"x.weight": torch.zeros(2)}, folder / "pytorch_model-00001-of-00002.bin")
    torch.save({"y.weight": torch.ones(2), "z.weight": torch.ones(1)}, folder / "pytorch_model-00002-of-00002.bin")
    index = {"weight_map": {"x.weight": "pytorch_model-00001-of-00002.bin",
                            "y.weight": "pytorch_model-00002-of-00002.bin",
                            "z.weight": "pytorch_model-00001-of-00002.bin"}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    problems = shards.check(str(folder / "pytorch_model.bin.index.json"))
    assert [(r.id, "z.weight" in m) for r, m in problems] == [("ST103", True)]


def test_shard_name_with_a_path_is_reported(tmp_path):
    index_path, index = _safetensors_model(tmp_path / "m")
    index["weight_map"]["a.weight"] = os.path.join("..", "elsewhere.safetensors")
    index_path.write_text(json.dumps(index))
    assert "ST105" in {r.id for r, _ in shards.check(str(index_path))}


def test_a_tensor_in_two_shards_is_named(tmp_path):
    """Every tensor in exactly one shard: a second copy in another shard (which one a loader keeps depends
    on the order it reads them) is reported with both shards."""
    index_path, _ = _safetensors_model(tmp_path / "m")
    save_file({"b.weight": np.ones(3, np.float32), "a.weight": np.full(4, 7, np.float32)},
              str(tmp_path / "m" / "model-00002-of-00002.safetensors"))
    problems = [(rule.id, message) for rule, message in shards.check(str(index_path))]
    assert len(problems) == 1 and problems[0][0] == "ST103", problems
    assert "more than one shard" in problems[0][1] and "'a.weight (in model-00001-of-00002.safetensors, " \
        "model-00002-of-00002.safetensors)'" in problems[0][1]
