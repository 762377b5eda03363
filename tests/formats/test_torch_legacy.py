"""PyTorch legacy checkpoints (magic number + pickles + raw storages) and legacy tar files."""

from __future__ import annotations

import struct

import pytest
import torch
from fixtures.torch_files import (
    EVIL_P2,
    legacy_tar,
    own_crashes,
    rules,
    scan,
    state_dict_all_dtypes,
    tensors,
    torch_load,
    torch_save,
    torch_save_legacy,
)
from helpers import mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.core.findings import Severity
from airlock.core.formats import torch_legacy
from airlock.core.scan import scan_bytes, scan_file

# torch.save writes fp8 and uint16/32/64 as untyped storages, which its own legacy loader cannot read.
UNTYPED = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "uint16",
           "uint32", "uint64")


def _legacy_dtypes() -> dict[str, torch.Tensor]:
    return {k: v for k, v in state_dict_all_dtypes().items() if k not in UNTYPED}


def test_untyped_storages_in_legacy_files_are_reported_not_tiered():
    data = torch_save_legacy({"f8": torch.zeros(3, dtype=torch.float8_e4m3fn)})
    with pytest.raises(AttributeError):
        torch_load(data, weights_only=False)
    result = scan(data)
    assert result.severity == Severity.LOW
    assert "TZ001" not in rules(result)
    assert tensors(result)["f8"].attrs["shape"] == (3,)


def test_sniffed_by_magic_number_not_as_plain_pickle():
    data = torch_save_legacy({"w": torch.ones(2)})
    assert torch_legacy.sniff(data[:4096], len(data)) > 90
    result = scan(data, "model.bin")
    assert result.format == "torch_legacy"
    assert result.root.attrs["container"] == "legacy"


def test_every_dtype_and_the_storage_table():
    sd = _legacy_dtypes()
    data = torch_save_legacy(sd)
    result = scan(data)
    assert result.severity == Severity.INFO
    assert rules(result) == {"TZ001"}
    found = tensors(result)
    assert set(found) == set(sd)
    for name, t in sd.items():
        node = found[name]
        assert node.attrs["shape"] == tuple(t.shape)
        assert node.attrs["dtype"] == name
        raw = data[node.offset : node.offset + node.attrs["size"]]
        assert raw == t.contiguous().view(-1).view(torch.uint8).numpy().tobytes(), name
    assert [n.label for n in result.root.children()] == ["pickles (5)", f"tensors ({len(sd)})",
                                                         f"storages ({len(sd)})"]
    pickles = result.root.child_at(0)
    assert pickles.attrs["role"] == "internals" and result.root.child_at(1).attrs["role"] == "contents"
    labels = [n.label for n in pickles.children()]
    assert labels == ["magic number (protocol 2)", "protocol version (protocol 2)", "sys_info (protocol 2)",
                      "main pickle (protocol 2)", "storage keys (protocol 2)"]


def test_shared_storage_views_and_parameters():
    base = torch.arange(10, dtype=torch.float16)
    sd = {"a": base, "b": base[3:7], "p": torch.nn.Parameter(torch.ones(3))}
    found = tensors(scan(torch_save_legacy(sd)))
    assert found["b"].attrs["storage_offset"] == 3
    assert found["b"].attrs["storage"] == found["a"].attrs["storage"]
    assert found["p"].attrs["parameter"] is True


def test_module_pickle_is_medium_and_has_no_tier():
    result = scan(torch_save_legacy(torch.nn.Linear(2, 2)))
    assert result.severity == Severity.MEDIUM
    assert "TZ001" not in rules(result)
    assert {"weight", "bias"} <= set(tensors(result))


def test_hidden_pickle_after_the_storages_is_critical():
    data = torch_save_legacy({"w": torch.ones(2)})
    assert torch.equal(torch_load(data + EVIL_P2, weights_only=True)["w"], torch.ones(2))  # torch ignores it
    result = scan(data + EVIL_P2)
    assert result.severity == Severity.CRITICAL
    assert {"TL001", "PKL006"} <= rules(result)
    assert "TZ001" not in rules(result)


def test_other_trailing_bytes_are_low():
    result = scan(torch_save_legacy({"w": torch.ones(2)}) + b"\x00\x01garbage" * 4)
    assert result.severity == Severity.LOW
    assert "TL001" in rules(result)


def test_dangerous_call_in_sys_info_or_main_pickle():
    data = torch_save_legacy({"w": torch.ones(2)})
    # replace the sys_info pickle (the third) with a hostile one
    runs = torch_legacy.Machine(data).run_stream(0, len(data))
    evil = data[: runs[2].start] + EVIL_P2 + data[runs[2].end :]
    result = scan(evil)
    assert result.severity == Severity.CRITICAL


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_legacy_files_are_high(keep):
    data = torch_save_legacy({"w": torch.ones(64), "b": torch.zeros(64, dtype=torch.int64)})
    result = scan(data[: int(len(data) * keep)])
    assert result.severity == Severity.HIGH
    assert not own_crashes(result)


def test_storage_count_mismatch_is_malformed():
    data = bytearray(torch_save_legacy({"w": torch.ones(4)}))
    runs = torch_legacy.Machine(bytes(data)).run_stream(0, len(data))
    count_at = runs[4].end
    assert struct.unpack("<q", data[count_at : count_at + 8])[0] == 4
    data[count_at : count_at + 8] = struct.pack("<q", 2)
    result = scan(bytes(data))
    assert result.severity == Severity.HIGH


# Legacy tar


def test_legacy_tar_reads_like_torch(tmp_path):
    path = tmp_path / "old.tar"
    path.write_bytes(legacy_tar([1.0, 2.5, -3.0]))
    loaded = torch.load(path, weights_only=False)  # our own benign fixture; torch reads tar from files only
    assert torch.equal(loaded["w"], torch.tensor([1.0, 2.5, -3.0]))
    with pytest.raises(RuntimeError, match=r"legacy \.tar format"):
        torch.load(path, weights_only=True)
    result = scan_file(path)
    assert result.format == "torch_legacy"
    assert result.root.attrs["container"] == "tar"
    assert result.severity == Severity.NONE
    assert "TZ001" not in rules(result)  # weights_only refuses tar files
    node = tensors(result)["w"]
    assert node.attrs["shape"] == (3,)
    data = path.read_bytes()
    assert data[node.offset : node.offset + 12] == struct.pack("<3f", 1.0, 2.5, -3.0)
    result.close()


def test_legacy_tar_hostile_members():
    assert scan(legacy_tar([1.0], main=EVIL_P2), "old.tar").severity == Severity.CRITICAL
    result = scan(legacy_tar([1.0], main=b"\x80\x02}X\x01\x00\x00\x00wP99\ns."), "old.tar")
    assert result.severity == Severity.HIGH  # a tensor key that the tensors member does not have
    assert not own_crashes(result)


def test_zip_and_legacy_are_told_apart():
    assert scan(torch_save({"w": torch.ones(1)})).format == "torch_zip"
    assert scan(torch_save_legacy({"w": torch.ones(1)})).format == "torch_legacy"


_SEED = torch_save_legacy({"w": torch.ones(2, 2), "b": torch.zeros(2, dtype=torch.bfloat16)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_legacy_files_never_crash_the_parser(edits):
    result = scan_bytes(mutated(_SEED, edits), "model.pt")
    assert not own_crashes(result), [f.message for f in result.findings]
