"""PyTorch zip checkpoints and generic zips: real torch.save output and hand-built hostile archives."""

from __future__ import annotations

import argparse
import io
import zipfile

import pytest
import torch
from fixtures.torch_files import (
    EVIL_P0,
    EVIL_P2,
    Member,
    build_zip,
    own_crashes,
    rename_archive,
    rules,
    scan,
    state_dict_all_dtypes,
    tensors,
    torch_load,
    torch_save,
    zip_members,
)
from helpers import mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.core.findings import Severity
from airlock.core.limits import Limits
from airlock.core.scan import scan_bytes


def _main(members: list[Member]) -> Member:
    return next(m for m in members if m.name.endswith("/data.pkl"))


# Benign torch.save output


def test_every_dtype_is_described_and_weights_only():
    sd = state_dict_all_dtypes()
    result = scan(torch_save(sd))
    assert result.format == "torch_zip"
    assert result.severity == Severity.INFO
    assert rules(result) == {"TZ001"}
    found = tensors(result)
    assert set(found) == set(sd)
    for name, t in sd.items():
        node = found[name]
        assert node.attrs["dtype"] == name
        assert node.attrs["shape"] == tuple(t.shape)
        assert node.attrs["strides"] == t.stride()
        assert node.attrs["size"] == t.numel() * t.element_size()
        assert node.attrs["device"] == "cpu"
    # bytes at the node's offset are the tensor's bytes
    data = torch_save(sd)
    for name, t in sd.items():
        node = found[name]
        raw = data[node.offset : node.offset + node.attrs["size"]]
        assert raw == t.contiguous().view(-1).view(torch.uint8).numpy().tobytes(), name


def test_shared_and_strided_storages():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd = {"base": base, "t": base.t(), "view": base[1:, 2:], "row": base[2]}
    result = scan(torch_save(sd))
    found = tensors(result)
    assert found["t"].attrs["strides"] == (1, 4)
    assert found["view"].attrs["storage_offset"] == 6
    assert found["view"].attrs["strides"] == (4, 1)
    assert found["row"].attrs["storage_offset"] == 8
    assert len({found[k].attrs["storage"] for k in sd}) == 1
    assert result.severity <= Severity.INFO


def test_parameter_and_nested_key_paths():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    ckpt = {"model": model.state_dict(), "p": torch.nn.Parameter(torch.ones(2)), "epoch": 3}
    found = tensors(scan(torch_save(ckpt)))
    assert {"model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias", "p"} <= set(found)
    assert found["p"].attrs["parameter"] is True
    assert found["p"].attrs["requires_grad"] is True


def test_optimizer_state_and_namespace_are_clean():
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 4)).sum().backward()
    opt.step()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "args": argparse.Namespace(lr=0.1, name="run")}
    data = torch_save(ckpt)
    result = scan(data)
    assert result.severity == Severity.NONE, [f.message for f in result.findings]
    assert "TZ001" not in rules(result)  # argparse.Namespace is outside torch's own allowlist
    with pytest.raises(Exception, match="Namespace"):
        torch_load(data, weights_only=True)
    assert "TZ001" in rules(scan(torch_save({"optimizer": opt.state_dict()})))


def test_full_module_pickle_is_medium():
    data = torch_save(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    result = scan(data)
    assert result.severity == Severity.MEDIUM
    assert "PKL005" in rules(result)
    assert {"0.weight", "0.bias"} <= set(tensors(result))


def test_any_archive_directory_name():
    sd = {"w": torch.ones(2, 2)}
    data = rename_archive(torch_save(sd), "my-model_v2")
    assert torch.equal(torch_load(data, weights_only=True)["w"], sd["w"])  # torch reads it too
    result = scan(data)
    assert result.format == "torch_zip"
    assert result.root.attrs["archive"] == "my-model_v2"
    assert "w" in tensors(result)


def test_deflated_members_are_read():
    members = zip_members(torch_save({"w": torch.arange(4.0)}))
    for m in members:
        m.method = 8
    data = build_zip(members)
    assert torch.equal(torch_load(data, weights_only=False)["w"], torch.arange(4.0))
    result = scan(data)
    assert result.severity <= Severity.INFO
    assert tensors(result)["w"].attrs["shape"] == (4,)


# Hostile archives


def test_hidden_protocol0_pickle_in_json_member():
    members = zip_members(torch_save({"w": torch.ones(1)}))
    data = build_zip([*members, Member("archive/extra/config.json", EVIL_P0)])
    result = scan(data)
    assert result.severity == Severity.CRITICAL
    assert any(f.rule == "PKL006" and f.member == "archive/extra/config.json" for f in result.findings)


def test_extra_pkl_member_and_deflated_evil_main():
    members = zip_members(torch_save({"w": torch.ones(1)}))
    extra = scan(build_zip([*members, Member("archive/other.pkl", EVIL_P2)]))
    assert extra.severity == Severity.CRITICAL
    main = _main(members)
    main.data, main.method = EVIL_P2, 8
    result = scan(build_zip(members))
    assert result.severity == Severity.CRITICAL
    assert "os.system" in " ".join(f.message for f in result.findings)


def test_wrong_crc_on_pickle_is_high_and_zero_crc_mode_is_info():
    members = zip_members(torch_save({"w": torch.ones(1)}))
    _main(members).crc = 0x12345678
    result = scan(build_zip(members))
    assert "ZIP004" in rules(result)
    assert result.severity == Severity.HIGH

    from torch.utils.serialization import config

    buf = io.BytesIO()
    config.save.compute_crc32 = False  # torch's own no-CRC mode
    try:
        torch.save({"w": torch.ones(3)}, buf)
    finally:
        config.save.compute_crc32 = True
    nocrc = scan(buf.getvalue())
    assert "ZIP005" in rules(nocrc)
    assert "ZIP004" not in rules(nocrc)
    assert nocrc.severity == Severity.INFO


def test_local_header_name_differs_from_central_directory():
    members = zip_members(torch_save({"w": torch.ones(1)}))
    _main(members).local_name = "archive/innocent.txt"
    data = build_zip(members)
    with pytest.raises(zipfile.BadZipFile):  # zipfile refuses what torch reads
        zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl")
    result = scan(data)
    assert "ZIP001" in rules(result)
    assert result.severity == Severity.HIGH


@pytest.mark.parametrize("flag", [0x1, 0x20])
def test_encryption_and_patch_flags_are_malformed(flag):
    members = zip_members(torch_save({"w": torch.ones(1)}))
    _main(members).flags = flag
    result = scan(build_zip(members))
    assert result.severity >= Severity.HIGH
    assert any(f.rule == "AIR002" and "malformed" in f.message for f in result.findings)


@pytest.mark.parametrize("name", ["../../etc/cron.d/x", "/abs/path", "archive/../../x", "C:/win"])
def test_escaping_member_names(name):
    members = zip_members(torch_save({"w": torch.ones(1)}))
    result = scan(build_zip([*members, Member(name, b"hello")]))
    assert "ZIP002" in rules(result)


def test_duplicate_member_names():
    members = zip_members(torch_save({"w": torch.ones(1)}))
    result = scan(build_zip([*members, Member(_main(members).name, EVIL_P2)]))
    assert "ZIP003" in rules(result)
    assert result.severity == Severity.CRITICAL


def test_pickle_prefix_polyglot_is_critical():
    members = zip_members(torch_save({"w": torch.ones(1)}))
    data = build_zip(members, prefix=EVIL_P2)
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None  # zip tools see a clean archive
    result = scan(data)
    assert result.format == "torch_zip"
    assert {"ZIP006", "AIR009", "PKL006"} <= rules(result)
    assert result.severity == Severity.CRITICAL


def test_prefix_without_calls_is_only_a_polyglot():
    members = zip_members(torch_save({"w": torch.ones(1)}))
    result = scan(build_zip(members, prefix=b"\x80\x02K\x07."))
    assert "AIR009" in rules(result)
    assert "ZIP006" not in rules(result)
    assert "TZ001" not in rules(result)  # torch.load would read the prefix, not the archive
    assert result.severity == Severity.LOW


def test_nested_zip_is_parsed_and_depth_is_limited():
    inner = build_zip([Member("payload.bin", EVIL_P2)])
    members = zip_members(torch_save({"w": torch.ones(1)}))
    result = scan(build_zip([*members, Member("archive/nested.zip", inner)]))
    assert result.severity == Severity.CRITICAL
    assert any(f.member and "payload.bin" in f.member for f in result.findings)

    deep = EVIL_P2
    for i in range(12):
        deep = build_zip([Member(f"level{i}.zip", deep)])
    nested = scan_bytes(deep, "deep.zip", limits=Limits(max_nesting_depth=4))
    assert "AIR003" in rules(nested)
    assert nested.severity >= Severity.HIGH


def test_missing_and_short_storages_are_malformed():
    members = zip_members(torch_save({"w": torch.ones(4)}))
    without = [m for m in members if not m.name.endswith("/data/0")]
    assert scan(build_zip(without)).severity == Severity.HIGH
    short = zip_members(torch_save({"w": torch.ones(4)}))
    next(m for m in short if m.name.endswith("/data/0")).data = b"\0" * 4
    result = scan(build_zip(short))
    assert result.severity == Severity.HIGH
    assert any("truncated" in f.message for f in result.findings)


def test_unreferenced_storage_member_is_sniffed():
    members = zip_members(torch_save({"w": torch.ones(1)}))
    result = scan(build_zip([*members, Member("archive/data/99", EVIL_P2)]))
    assert result.severity == Severity.CRITICAL


def test_no_main_pickle_in_first_members_folder():
    members = zip_members(torch_save({"w": torch.ones(1)}))
    data = build_zip([Member("other/readme.txt", b"hi"), *members])
    result = scan(data)
    assert any("data.pkl" in f.message and f.rule == "AIR002" for f in result.findings)


def test_generic_zip_members_are_parsed():
    benign = scan_bytes(build_zip([Member("notes.txt", b"hello"), Member("dir/", b"")]), "a.zip")
    assert benign.format == "zip"
    assert benign.severity <= Severity.INFO
    evil = scan_bytes(build_zip([Member("model.bin", EVIL_P2, method=8)]), "a.zip")
    assert evil.format == "zip"
    assert evil.severity == Severity.CRITICAL
    prefixed = scan_bytes(build_zip([Member("notes.txt", b"hello")], prefix=EVIL_P2), "a.zip")
    assert prefixed.format == "zip"
    assert {"ZIP006", "PKL006"} <= rules(prefixed)


@pytest.mark.parametrize("cut", [10, 100, -30, -10])
def test_truncated_archives_give_findings(cut):
    data = torch_save({"w": torch.ones(8)})
    result = scan_bytes(data[:cut], "model.pt")
    assert not own_crashes(result)
    if cut < 0:
        assert result.severity >= Severity.HIGH


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_archives_never_crash_the_parser(edits):
    result = scan_bytes(mutated(_SEED, edits), "model.pt")
    assert not own_crashes(result), [f.message for f in result.findings]
    result.close()


_SEED = torch_save({"w": torch.ones(2, 2), "b": torch.zeros(2, dtype=torch.bfloat16)})


def test_zip64_end_records_are_read():
    members = zip_members(torch_save({"w": torch.arange(3.0)}))
    data = build_zip(members, zip64=True)
    assert zipfile.ZipFile(io.BytesIO(data)).read(_main(members).name) == _main(members).data
    assert torch.equal(torch_load(data, weights_only=True)["w"], torch.arange(3.0))
    result = scan(data)
    assert result.root.attrs["zip64"] is True
    assert result.severity == Severity.INFO
    assert "w" in tensors(result)
    assert scan(build_zip([*members, Member("archive/x.json", EVIL_P0)], zip64=True)).severity == Severity.CRITICAL


def test_members_past_the_shown_ones_are_reported():
    from airlock.core.formats import zip as zipf

    members = [Member("evil.pkl", EVIL_P2)] + [Member(f"f{i}", b"") for i in range(zipf.MAX_MEMBER_NODES + 5)]
    result = scan_bytes(build_zip(members), "many.zip")
    assert result.severity == Severity.CRITICAL
    assert "AIR005" in rules(result)
