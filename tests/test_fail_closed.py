"""The fail-closed policy (issue 13, principle 1): what was not fully inspected never reads as clean.

Names that claim a model format on content that fails it are high; unknown binary content is medium
"not inspected"; known-inert content (text, images, tokenizer data) is info; an empty model file is never
"no findings"; a name only adds checks. Every report says, per file, whether it was fully inspected.
"""

import io
import json
import struct
from pathlib import Path

import pytest
from fixtures import archive_files as af
from fixtures.protobuf_writer import field

from airlock.core import inspection
from airlock.core.cli import main
from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes, scan_file

RANDOM = bytes((i * 7919 + 13) % 251 for i in range(4096))  # binary, no format's magic


def scan(data, name):
    result = scan_bytes(data, name)
    result.close()
    return result


def rules(result):
    return {f.rule for f in result.findings}


@pytest.mark.parametrize("name,data,why", [
    ("model.safetensors", struct.pack("<Q", 1 << 62) + b"{}", "header length"),
    ("model.gguf", b"GGUF" + struct.pack("<I", 99) + RANDOM[:64], "version"),
    ("model.pt", RANDOM, "pickle"),
    ("model.pth", RANDOM, "pickle"),
    ("model.ckpt", RANDOM, "pickle"),
    ("model.pkl", RANDOM, "pickle"),
    ("model.npy", b"\x93NUMPY\x01\x00" + RANDOM[:40], ""),
    ("model.onnx", RANDOM, ""),
    ("model.keras", b"just some text, not a Keras archive\n", "text"),
    ("model.nemo", RANDOM, ""),
    ("model.joblib", RANDOM, ""),
    ("model.npz", RANDOM, ""),
])
def test_a_name_that_claims_a_format_the_content_fails_is_high(name, data, why):
    result = scan(data, name)
    claims = [f for f in result.findings if f.rule == "FC001"]
    if claims:  # the content is not recognised as the claimed format: the claimed parser says why
        message = claims[0].message
        assert message.startswith(f"named {Path(name).suffix}, but not valid ")
    else:  # recognised (GGUF, .npy magic) and malformed: the format's own high finding says it
        message = next(f.message for f in result.findings if f.rule == "AIR002")
    assert why.lower() in message.lower(), [(f.rule, f.message) for f in result.findings]
    assert result.severity >= Severity.HIGH


def test_the_why_comes_from_the_claimed_parser_with_its_offset():
    result = scan(struct.pack("<Q", 1 << 62) + b"{}", "model.safetensors")
    claim = next(f for f in result.findings if f.rule == "FC001")
    assert "SafeTensors" in claim.message and "4,611,686,018,427,387,904" in claim.message
    assert claim.offset == 0


@pytest.mark.parametrize("name", ["pytorch_model.bin", "weights.h5", "blob.dat", "noext"])
def test_ambiguous_names_do_not_raise_the_verdict(name):
    result = scan(RANDOM, name)
    assert "FC001" not in rules(result)
    assert result.severity == Severity.MEDIUM  # unknown binary content: not inspected, never clean
    assert result.inspected == "none"


def test_unknown_binary_content_is_medium_not_inspected():
    result = scan(RANDOM, "thing")
    note = next(f for f in result.findings if f.rule == "AIR005")
    assert note.severity == Severity.MEDIUM and "not inspected" in note.message


@pytest.mark.parametrize("data", [b'{"a": 1}\n' + RANDOM, b'{"a": 1' + RANDOM])
def test_binary_after_a_json_looking_start_is_medium_not_inspected(data):
    # New-user trial: '{"a": 1}' followed by binary was info "starts like JSON but does not parse", so
    # `--fail-on medium` passed content nothing had read; JSON-looking text that does not parse stays info.
    result = scan(data, "weights.bin")
    assert result.severity == Severity.MEDIUM and "AIR005" in rules(result)
    assert result.inspected != "full"
    text = scan(b'{"a": 1}\n{"b": 2}\n', "records.jsonl")
    assert text.severity == Severity.INFO


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors", "model.gguf", "weights.npy"])
def test_an_empty_model_file_is_never_no_findings(name):
    result = scan(b"", name)
    assert result.findings
    assert result.severity == Severity.HIGH
    assert "empty" in next(f for f in result.findings if f.rule == "FC001").message


def test_an_empty_file_of_no_model_name_is_info():
    result = scan(b"", "__init__.py")
    assert rules(result) == {"FC003"} and result.severity == Severity.INFO


def _png(trailer=b""):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue() + trailer


def _jpeg():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 90, 200)).save(buf, "JPEG")
    return buf.getvalue()


def _sentencepiece():
    """A SentencePiece ModelProto as sentencepiece writes it: pieces (field 1: piece, score, type),
    then trainer (2) and normalizer (3) specs."""
    pieces = b"".join(field(1, field(1, p.encode()) + b"\x15" + struct.pack("<f", -i) + b"\x18\x01")
                      for i, p in enumerate(["<unk>", "<s>", "</s>", "\u2581the", "\u2581a"]))
    return pieces + field(2, b"\x0a\x03bpe") + field(3, b"\x0a\x04nmt_")


@pytest.mark.parametrize("name,data,fmt", [
    ("README.md", b"# A model\n\nTrained on things. License: apache-2.0\n", "text"),
    ("LICENSE", b"MIT License\n\nPermission is hereby granted, free of charge...\n", "text"),
    ("vocab.txt", "\n".join(["[PAD]", "[UNK]", "héllo", "wörld"]).encode(), "text"),
    ("merges.txt", b"#version: 0.2\n\xc4\xa0 t\nh e\n", "text"),
    ("notes_utf16.txt", "hello, world\r\n".encode("utf-16"), "text"),
    ("logo.png", _png(), "image"),
    ("photo.jpg", _jpeg(), "image"),
    ("tokenizer.model", _sentencepiece(), "sentencepiece"),
])
def test_known_inert_content_is_info(name, data, fmt):
    result = scan(data, name)
    assert result.format == fmt
    assert result.severity == Severity.INFO, [(f.rule, f.message) for f in result.findings]
    assert rules(result) == {"FC002"}
    assert result.inspected == "full"


def test_a_truncated_sentencepiece_model_is_not_inert():
    result = scan(_sentencepiece()[:-3], "tokenizer.model")
    assert result.severity == Severity.MEDIUM and result.format == "unknown"


def test_bytes_hidden_after_a_png_are_read():
    result = scan(_png(af.SYSTEM_PICKLE), "logo.png")
    assert "AIR008" in rules(result)
    assert result.severity == Severity.CRITICAL


def test_a_name_never_lowers_a_verdict():
    assert scan(af.SYSTEM_PICKLE, "README.md").severity == Severity.CRITICAL
    assert scan(af.SYSTEM_PICKLE, "tokenizer.model").severity == Severity.CRITICAL
    assert scan(RANDOM, "LICENSE.txt").severity == Severity.MEDIUM


def test_git_lfs_pointer():
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 4096\n"
    named = scan(pointer, "model.safetensors")
    claim = next(f for f in named.findings if f.rule == "FC001")
    assert "Git LFS pointer" in claim.message and named.severity == Severity.HIGH
    plain = scan(pointer, "pytorch_model.bin")
    assert plain.format == "git-lfs-pointer" and plain.severity == Severity.INFO
    assert "never downloaded" in plain.findings[0].message


def test_member_names_claim_formats_too():
    result = scan(af.tar({"model/model.safetensors": RANDOM, "model/README.md": b"hi\n"}), "bundle.tar")
    claim = next(f for f in result.findings if f.rule == "FC001")
    assert claim.member == "model/model.safetensors"
    assert result.severity == Severity.HIGH
    assert result.inspected == "partial"


def test_real_benign_files_keep_their_verdicts():
    from airlock.core.report.json_report import file_dict

    for name, data in (("checkpoint.pt", af.torch_zip_bytes()), ("hparams.yaml", af.LIGHTNING_HPARAMS),
                       ("model.nemo", af.nemo())):
        result = scan_bytes(data, name)
        try:
            assert result.severity <= Severity.INFO, (name, [(f.rule, f.message) for f in result.findings])
            assert file_dict(result)["inspected"] == "full"
        finally:
            result.close()


# States and reports


def test_inspected_states():
    assert scan(af.torch_zip_bytes(), "m.pt").inspected == "full"
    assert scan(RANDOM, "m.bin").inspected == "none"
    assert scan(af.tar({"a.bin": RANDOM}), "m.tar").inspected == "partial"  # a member not inspected
    assert scan(af.SYSTEM_PICKLE[:-3], "m.pkl").inspected == "partial"      # truncated
    assert inspection.verdict_word(Severity.NONE, "full") == "clean"
    assert inspection.verdict_word(Severity.NONE, "partial") != "clean"


def _gguf(kvs: bytes, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, n_kv) + kvs


def _gguf_key(name: bytes) -> bytes:
    return struct.pack("<Q", len(name)) + name


@pytest.mark.parametrize("name,data,rule", [
    # a header that ends early: what it declares past the end was never read
    ("model.gguf", _gguf(_gguf_key(b"general.name"), 3), "GG001"),
    # an unknown value type (llama.cpp refuses it): the reader stops, later KV pairs are not read
    ("model.gguf", _gguf(_gguf_key(b"general.name") + struct.pack("<I", 99) + b"xxxx" + _gguf_key(b"a.b")
                         + struct.pack("<II", 4, 1), 2), "GG002"),
    # a SafeTensors header that is not JSON: no tensor table was read
    ("model.safetensors", struct.pack("<Q", 12) + b'{"a": [1, 2' + b" " + bytes(16), "ST001"),
], ids=["gguf-truncated", "gguf-unknown-type", "safetensors-not-json"])
def test_a_truncated_or_malformed_structure_is_not_fully_inspected(name, data, rule):
    """README: "a member or coder Airlock cannot read, a limit hit, a malformed structure: its finding,
    and the file is not fully inspected" — a parser that stopped early never reports "full"."""
    result = scan(data, name)
    assert rule in rules(result), [(f.rule, f.message) for f in result.findings]
    assert result.severity >= Severity.HIGH
    assert result.inspected == "partial"
    assert inspection.reasons(result.findings)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "README.md").write_bytes(b"# model\n")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "weights.bin").write_bytes(RANDOM)
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 40))
    (tmp_path / "ckpt.pt").write_bytes(af.torch_zip_bytes())
    return tmp_path


def test_json_report_has_inspected_per_file_and_a_total(folder, capsys):
    assert main(["scan", "--format", "json", str(folder)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1
    states = {Path(f["path"]).name: f["inspected"] for f in doc["files"]}
    assert states == {"README.md": "full", "config.json": "full", "weights.bin": "none",
                      "model.safetensors": "none", "ckpt.pt": "full"}
    assert doc["not_inspected"] == 2


def test_text_report_says_per_file_whether_it_was_fully_inspected(folder, capsys):
    main(["scan", "--color", "never", str(folder)])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 5
    assert all(("fully inspected)" in line) or ("not inspected)" in line) for line in lines), lines
    assert any("weights.bin" in line and "not inspected" in line for line in lines)
    assert out.rstrip().endswith("2 not fully inspected")


def test_sarif_carries_the_inspected_state(folder, capsys):
    main(["scan", "--format", "sarif", str(folder)])
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["properties"]["not_inspected"] == 2
    assert {a["properties"]["inspected"] for a in run["artifacts"]} == {"full", "none"}
    assert all("inspected" in r["properties"] for r in run["results"])


def test_fail_on_applies_as_usual(tmp_path):
    (tmp_path / "weights.bin").write_bytes(RANDOM)
    assert main(["scan", "--format", "json", str(tmp_path)]) == 0  # medium: below the default gate
    assert main(["scan", "--format", "json", "--fail-on", "medium", str(tmp_path)]) == 1


def test_worker_crash_entries_count_as_not_inspected():
    from airlock.core.parallel import crash_entry
    from airlock.core.report import json_report

    entry = crash_entry("x.pt", "killed")
    assert entry["inspected"] == "none"
    assert json_report.document([entry])["not_inspected"] == 1


def test_scan_file_of_a_fifo_is_not_inspected(tmp_path):
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = scan_file(fifo)
    assert result.inspected == "none" and result.severity == Severity.INFO


def _installed_data_files():
    """Real model and data files that installed packages ship for their own tests and examples."""
    import importlib.util

    picks = {"onnxruntime": ("datasets", (".onnx",)), "matplotlib": ("mpl-data/sample_data", (".npz", ".npy")),
             "numpy": ("_core/tests/data", (".pkl", ".npy")), "joblib": ("test/data", (".pkl", ".gz", ".bz2")),
             "torch": ("testing/_internal/data", (".pt", ".pkl"))}
    files = []
    for package, (sub, suffixes) in picks.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations))) / sub
        files += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in suffixes)[:8]
    return files


def test_real_files_shipped_by_installed_packages_never_read_high():
    """Issue 13: "no real file becomes high". onnxruntime's sample models, matplotlib's sample arrays,
    numpy's and joblib's own test pickles (real files written by the real libraries, not generated here)
    keep verdicts below high, and every one is read by a parser (never "not inspected")."""
    files = _installed_data_files()
    assert len(files) >= 10, files
    for path in files:
        result = scan_file(path)
        try:
            assert result.severity < Severity.HIGH, (path, [(f.rule, f.message) for f in result.findings])
            assert result.format not in ("unknown", "skipped"), path
        finally:
            result.close()


def test_a_readme_in_a_model_folder_stays_info(tmp_path, capsys):
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# Model\n\nWeights for a small classifier.\n")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.pt").write_bytes(af.torch_zip_bytes())
    assert main(["scan", "--format", "json", str(tmp_path)]) == 0
    entries = {Path(f["path"]).name: f for f in json.loads(capsys.readouterr().out)["files"]}
    assert entries["README.md"]["severity"] in ("info", "none") and entries["README.md"]["inspected"] == "full"
    assert entries["model.pt"]["severity"] in ("info", "none")


def test_a_real_safetensors_file_with_an_absurd_header_length_is_malformed_safetensors_not_unknown():
    """The issue's example: a .safetensors (written by the safetensors library) whose 8-byte header length
    is absurd reads as malformed SafeTensors (high, not fully inspected), not as an unknown file."""
    import numpy as np
    from safetensors.numpy import save

    data = bytearray(save({"w": np.zeros(4, dtype=np.float32)}))
    data[:8] = struct.pack("<Q", 1 << 62)
    result = scan(bytes(data), "model.safetensors")
    assert result.format == "safetensors"
    assert "ST001" in rules(result) and "AIR005" not in rules(result)
    assert result.severity == Severity.HIGH and result.inspected == "partial"
