"""Verdict wording and colours (airlock.core.verdict): one per state, the same for every view."""

import struct

from fixtures import archive_files as af
from fixtures.gguf_files import system_pickle

from airlock.core import inspection, verdict
from airlock.core.findings import Finding, Severity
from airlock.core.scan import scan_bytes


def verdict_of(data, name):
    result = scan_bytes(data, name)
    try:
        return verdict.of_findings(result.findings, result.format, result.inspected)
    finally:
        result.close()


def test_a_hostile_pickle_reads_critical_and_says_it_runs_code():
    v = verdict_of(system_pickle(), "model.pkl")
    assert v.state == verdict.BY_SEVERITY and v.severity == Severity.CRITICAL
    assert v.word == "CRITICAL" and v.colour == verdict.BADGE[Severity.CRITICAL]
    assert v.text.startswith("CRITICAL — loading this file runs code: ") and "os.system" in v.text
    assert not v.badge


def test_a_critical_finding_that_runs_no_code_is_not_worded_as_code():
    """Regression (new-user trial): ONNX external data at ../../../../etc/passwd read "runs code"."""
    outside = verdict.sentence([Finding("ONX003", Severity.CRITICAL, "external data ../../etc/passwd")], "onnx")
    assert outside.startswith("CRITICAL — loading this file reaches files outside the model: ")
    changed = verdict.sentence([Finding("PRV001", Severity.CRITICAL, "content does not match")], "pickle")
    assert changed.startswith("CRITICAL — not the file that was recorded: ")


def test_unknown_content_is_not_fully_inspected_never_clean():
    v = verdict_of(bytes(range(256)) * 8, "weights.bin")
    assert v.state == verdict.NOT_FULLY_INSPECTED and v.inspected == inspection.NONE
    assert v.severity == Severity.MEDIUM and v.badge.startswith("NOT INSPECTED: unrecognised binary content")
    assert v.reasons and v.colour != verdict.BADGE[Severity.NONE]


def test_a_file_with_no_findings_but_not_fully_read_is_never_green():
    incomplete = Finding("AIR005", Severity.NONE, "not inspected")  # a finding re-rated to nothing by a policy
    v = verdict.of_findings([incomplete], "unknown", inspection.PARTIAL)
    assert v.severity == Severity.INFO and v.word != "NO RISK FOUND" and v.badge


def test_claimed_format_that_fails_is_high_and_worded_as_such():
    v = verdict_of(struct.pack("<Q", 1 << 62), "model.safetensors")
    assert v.severity == Severity.HIGH and v.text.startswith("HIGH RISK — cannot be proven safe: ")


def test_clean_file_and_the_count_of_the_rest():
    clean = verdict_of(af.torch_zip_bytes(), "model.pt")
    assert clean.state == verdict.BY_SEVERITY and clean.severity <= Severity.INFO
    many = [Finding("X1", Severity.HIGH, "first"), Finding("X2", Severity.MEDIUM, "second"),
            Finding("X3", Severity.CRITICAL, "worst\u202e"), Finding("X4", Severity.LOW, "low")]
    text = verdict.sentence(many, "pickle")
    assert text.startswith("CRITICAL — loading this file runs code: worst") and text.endswith("(+2 more)")
    assert "\u202e" not in text  # escaped: a bidi override in a message cannot reorder the verdict
    assert [f.rule for f in verdict.sorted_findings(many)] == ["X3", "X1", "X2", "X4"]
    assert verdict.sentence([], "gguf") == "NO RISK FOUND — nothing in this gguf file was judged risky"


def test_could_not_open_is_its_own_state():
    v = verdict.could_not_open("Permission denied\x1b[31m")
    assert v.state == verdict.FAILED and v.word == verdict.COULD_NOT_OPEN and v.severity == Severity.HIGH
    assert "\x1b" not in v.text and "Permission denied" in v.text and v.inspected == inspection.NONE


def test_every_severity_has_a_word_and_colours():
    for sev in Severity:
        assert verdict.WORD[sev] and verdict.BADGE[sev].startswith("#") and verdict.TEXT_LIGHT[sev].startswith("#")


def test_a_clean_torch_checkpoint_reads_like_a_clean_safetensors_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    from airlock.core.scan import scan_file

    torch.save({"w": torch.ones(3)}, tmp_path / "model.pt")  # the real writers
    save_file({"w": torch.ones(3)}, str(tmp_path / "model.safetensors"))
    verdicts = []
    for name in ("model.pt", "model.safetensors"):
        result = scan_file(tmp_path / name)
        verdicts.append(verdict.of_findings(result.findings, result.format, result.inspected))
        result.close()
    torch_v, st_v = verdicts
    assert torch_v.text.startswith("NO RISK FOUND — ") and "1 note: torch weights-only" in torch_v.text
    assert (torch_v.state, torch_v.severity, torch_v.word, torch_v.colour) == \
        (st_v.state, st_v.severity, st_v.word, st_v.colour) == \
        (verdict.BY_SEVERITY, Severity.NONE, "NO RISK FOUND", verdict.BADGE[Severity.NONE])


def test_a_zero_byte_file_is_never_green():
    v = verdict_of(b"", "model.safetensors")
    assert v.severity != Severity.NONE and v.colour != verdict.BADGE[Severity.NONE]
    assert "NO RISK FOUND" not in v.text and "empty" in v.text


def test_a_file_that_cannot_be_read_could_not_be_opened(tmp_path):
    from airlock.core.scan import scan_file

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")  # opening it fails with ELOOP, even as root
    result = scan_file(tmp_path / "a")
    v = verdict.of_findings(result.findings, result.format, result.inspected)
    assert v.state == verdict.FAILED and v.word == verdict.COULD_NOT_OPEN and v.severity == Severity.HIGH
    assert "symbolic links" in v.text and "HIGH RISK" not in v.text
