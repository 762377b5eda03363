"""NeMo `.nemo` archives (CVE-2025-23304): recognised as NeMo, every member scanned, the Hydra config
judged; written with tarfile as NeMo's SaveRestoreConnector writes them (plain or gzip)."""


import pytest
from fixtures import archive_files as af
from helpers import assert_corpus_verdict

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes

NEMO_CASES = [c for c in af.corpus() if c[0].endswith(".nemo")]


def scan(data, name="model.nemo"):
    result = scan_bytes(data, name)
    result.close()
    return result


@pytest.mark.parametrize("name,data,want", NEMO_CASES, ids=[c[0] for c in NEMO_CASES])
def test_corpus(name, data, want):
    result = scan(data, name)
    assert result.format == "nemo"
    assert_corpus_verdict(result, want)


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_real_layout_is_nemo_not_the_torch_zip_inside(mode):
    result = scan(af.nemo(mode=mode), "renamed.bin")  # by content
    assert result.format == "nemo"
    assert result.inspected == "full"
    formats = {n.attrs.get("format") for n in result.root.walk()}
    assert {"yaml", "torch_zip", "sentencepiece"} <= formats
    targets = [n for n in result.root.walk() if n.kind == "call"]
    assert len(targets) == 4  # target + preprocessor, encoder, decoder _target_
    assert all("verdict" in n.attrs for n in targets)  # allowlisted, each with its reason


def test_cve_2025_23304_target_in_model_config():
    result = scan(af.nemo(af.NEMO_CONFIG.replace(b"target: nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE",
                                                 b"target: builtins.exec")))
    hit = [f for f in result.findings if f.rule == "HYD001"]
    assert hit and "(top level): target builtins.exec" in hit[0].message
    assert hit[0].member == "./model_config.yaml"


def test_hostile_members_each_found():
    result = scan(af.nemo(af.HOSTILE_NEMO_CONFIG, weights=af.SYSTEM_PICKLE))
    assert {"HYD001", "PKL006"} <= {f.rule for f in result.findings}
    assert result.severity == Severity.CRITICAL


def test_config_found_late_in_a_compressed_archive():
    """A gzip .nemo whose config comes after more than the sniffer reads is still NeMo."""
    import os

    members = {"./big.bin": os.urandom(1_500_000), "./model_config.yaml": af.HOSTILE_NEMO_CONFIG}
    result = scan(af.tar(members, "w:gz"), "late.nemo")
    assert result.format == "nemo"
    assert result.severity == Severity.CRITICAL
    assert not any(f.rule == "FC001" for f in result.findings)


def test_a_tar_named_nemo_without_config_is_named_but_invalid():
    result = scan(af.tar({"./weights.ckpt": af.torch_zip_bytes()}), "model.nemo")
    assert result.format == "tar"
    hit = [f for f in result.findings if f.rule == "FC001"]
    assert hit and "not valid NeMo" in hit[0].message and "model_config.yaml" in hit[0].message
    assert result.severity == Severity.HIGH


def test_truncated_nemo_is_high():
    data = af.nemo()
    result = scan(data[: len(data) // 2])
    assert result.severity >= Severity.HIGH
    assert any("truncated" in f.message or "malformed" in f.message for f in result.findings)
