"""A Hugging Face cache laid out by huggingface_hub's own helpers: scanned once per revision, every
file under its snapshot path with its provenance, orphans under blobs/, and verified by blob names."""

import json
import os

import pytest
from huggingface_hub import scan_cache_dir

from airlock.core.cli import main
from airlock.core.provenance import hf_cache
from airlock.core.scan import iter_files
from provenance.hf_fake import COMMIT_1, COMMIT_2, EVIL, build, tamper


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "hub", build(tmp_path / "hub")


def scan_json(capsys, *argv):
    code = main(["scan", "--format", "json", "--jobs", "1", "--no-policy", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_huggingface_hub_reads_our_fake_cache_as_its_own(cache):
    root, _ = cache
    info = scan_cache_dir(root)
    assert not info.warnings
    repos = {r.repo_id: r for r in info.repos}
    assert set(repos) == {"org/model", "org/evil"}
    revisions = {r.commit_hash: r for r in repos["org/model"].revisions}
    assert set(revisions) == {COMMIT_1, COMMIT_2}
    assert revisions[COMMIT_2].refs == frozenset({"main"}) and revisions[COMMIT_1].refs == frozenset({"v1.0"})


def test_cache_root_every_file_once_under_its_snapshot(cache, capsys):
    root, paths = cache
    code, doc = scan_json(capsys, str(root))
    assert code == 1  # org/evil's pickle
    shown = [f["path"] for f in doc["files"]]
    assert len(shown) == len(set(shown))
    snapshot_files = [p for p in shown if "/snapshots/" in p]
    assert sorted(snapshot_files) == sorted(str(paths[k]) for k in
                                            ("config1", "weights1", "config2", "weights2", "nested", "evil"))
    blob_files = [p for p in shown if "/blobs/" in p]
    assert sorted(blob_files) == sorted([str(paths["orphan"]), str(paths["incomplete"])])
    assert not [p for p in shown if ".lock" in p or ".no_exist" in p or "/refs/" in p]
    assert len(shown) == 8
    by_path = {f["path"]: f for f in doc["files"]}
    weights2 = by_path[str(paths["weights2"])]["huggingface"]
    assert weights2 == {"repo_id": "org/model", "repo_type": "model", "revision": COMMIT_2, "refs": ["main"],
                        "file": "model.safetensors"}
    assert by_path[str(paths["weights1"])]["huggingface"]["refs"] == ["v1.0"]
    assert by_path[str(paths["nested"])]["huggingface"]["file"] == "onnx/notes.txt"
    evil = by_path[str(paths["evil"])]
    assert evil["severity"] == "critical" and evil["huggingface"]["repo_id"] == "org/evil"
    for key in ("orphan", "incomplete"):
        entry = by_path[str(paths[key])]
        assert entry["huggingface"]["in_snapshot"] is False
        notes = [f for f in entry["findings"] if f["rule"] == "PRV004"]
        assert len(notes) == 1 and "not in any snapshot" in notes[0]["message"]
        assert notes[0]["severity"] == "info"
    assert "unfinished" in next(f for f in by_path[str(paths["incomplete"])]["findings"]
                            if f["rule"] == "PRV004")["message"]


def test_the_text_report_names_each_files_repository_revision_and_refs(cache, capsys):
    """The README's step 2 (`airlock scan …/models--org--model`, text): every snapshot file says where it
    comes from, as JSON's `huggingface` does; blobs outside the snapshots say they are outside."""
    _, paths = cache
    main(["scan", "--no-policy", "--color", "never", str(paths["storage"])])
    lines = capsys.readouterr().out.splitlines()

    def block(path):
        start = next(i for i, line in enumerate(lines) if f"] {path}  (" in line)
        end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
        return lines[start + 1:end]

    assert f"    Hugging Face org/model @ {COMMIT_2} (main)" in block(paths["weights2"])
    assert f"    Hugging Face org/model @ {COMMIT_1} (v1.0)" in block(paths["config1"])
    orphan = block(paths["orphan"])
    assert not [line for line in orphan if "Hugging Face" in line] and any("PRV004" in line for line in orphan)


def test_parent_of_the_cache_repo_folder_and_snapshot(cache, capsys):
    root, paths = cache
    whole = sorted(p for p, _ in iter_files(str(root.parent)))
    assert whole == sorted(p for p, _ in iter_files(str(root)))
    repo = sorted(p for p, _ in iter_files(str(paths["storage"])))
    assert len(repo) == 7 and all("models--org--model" in p for p in repo)
    snap = paths["storage"] / "snapshots" / COMMIT_1
    code, doc = scan_json(capsys, str(snap))
    assert code == 0
    assert [f["huggingface"]["revision"] for f in doc["files"]] == [COMMIT_1, COMMIT_1]


def test_describe_is_none_outside_a_cache(tmp_path):
    assert hf_cache.describe(str(tmp_path / "models" / "snapshots" / "x")) is None
    assert hf_cache.repo_id("datasets--org--data--v2") == ("dataset", "org/data/v2")


def test_verify_clean_cache_needs_no_manifest(cache, capsys):
    root, _ = cache
    code = main(["verify", "--format", "json", "--no-policy", str(root)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    bad = [f for e in doc["files"] for f in e["findings"] if f["severity"] not in ("info", "none")]
    assert not bad
    checked = {e["path"] for e in doc["files"] if e["format"] == "file"}
    unsigned = [e for e in doc["files"] if e["format"] == "folder"]
    assert len(unsigned) == 3 and all(e["findings"][0]["rule"] == "PRV005" for e in unsigned)  # per snapshot
    assert len([p for p in checked if "/snapshots/" in p]) == 6


def test_verify_reports_a_tampered_file_with_expected_and_actual(cache, capsys):
    root, paths = cache
    blob = tamper(paths["weights2"], b"not the weights")  # an LFS file: named by SHA-256
    tamper(paths["config1"], b'{"model_type": "evil"}')    # a git file: named by its blob SHA-1
    code = main(["verify", "--format", "json", "--no-policy", str(root)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    by_path = {e["path"]: e for e in doc["files"]}
    weights = by_path[str(paths["weights2"])]
    assert weights["severity"] == "critical"
    message = weights["findings"][0]["message"]
    assert os.path.basename(str(blob)) in message and "sha256" in message and "found" in message
    config = by_path[str(paths["config1"])]
    assert config["findings"][0]["rule"] == "PRV001" and "git-sha1" in config["findings"][0]["message"]
    # The other revision, linked to the same config blob, is tampered too: both views say so.
    assert by_path[str(paths["config2"])]["severity"] == "critical"


def test_verify_dangling_link_and_link_outside_blobs(cache, capsys, tmp_path):
    _, paths = cache
    os.remove(os.path.realpath(paths["weights1"]))
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"x")
    os.remove(paths["config1"])
    os.symlink(outside, paths["config1"])
    code = main(["verify", "--format", "json", "--no-policy", str(paths["storage"] / "snapshots" / COMMIT_1)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    rules = {os.path.basename(e["path"]): [f["rule"] for f in e["findings"]] for e in doc["files"]}
    assert rules["model.safetensors"] == ["PRV002"]
    assert rules["config.json"] == ["PRV012"]
    assert all(COMMIT_1 in e["path"] for e in doc["files"])  # only the snapshot asked for


def test_verify_one_snapshot_file_and_a_plain_file(cache, capsys, tmp_path):
    _, paths = cache
    assert main(["verify", "--no-policy", str(paths["weights2"])]) == 0
    capsys.readouterr()
    tamper(paths["weights2"], b"x")
    assert main(["verify", "--format", "json", "--no-policy", str(paths["weights2"])]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [f["rule"] for e in doc["files"] for f in e["findings"]] == ["PRV001"]
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    assert main(["verify", "--format", "json", "--no-policy", str(plain)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["files"][0]["findings"][0]["rule"] == "PRV013"  # never an empty, clean-looking report


def test_a_plain_file_among_linked_snapshot_files_is_high(cache, capsys):
    # New-user trial: a snapshot file replaced by a plain copy (`sed -i` breaks the link, or a swap) was
    # info "a copy" and `verify` passed; huggingface_hub links every file or copies every file.
    _, paths = cache
    weights = paths["weights2"]
    weights.unlink()
    weights.write_bytes(EVIL)
    code = main(["verify", "--format", "json", "--no-policy", str(paths["storage"])])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    rules = {e["path"]: [f["rule"] for f in e["findings"]] for e in doc["files"]}
    assert rules[str(weights)] == ["PRV012"]
    assert main(["verify", "--format", "json", "--no-policy", str(weights)]) == 1  # the file on its own
    doc = json.loads(capsys.readouterr().out)
    assert [f["rule"] for e in doc["files"] for f in e["findings"]] == ["PRV012"]


def test_a_plain_copy_that_matches_the_lock_is_not_a_failure(cache, capsys, tmp_path):
    # The lock checked its content: the broken link alone is no reason to fail CI.
    _, paths = cache
    lock = tmp_path / "airlock.lock"
    assert main(["lock", "--no-policy", str(paths["storage"]), "-o", str(lock)]) == 0
    capsys.readouterr()
    weights = paths["weights2"]
    data = weights.read_bytes()
    weights.unlink()
    weights.write_bytes(data)
    code = main(["verify", "--format", "json", "--no-policy", "--lock", str(lock), str(paths["storage"])])
    doc = json.loads(capsys.readouterr().out)
    rules = {os.path.realpath(e["path"]): [f["rule"] for f in e["findings"]] for e in doc["files"]}
    assert rules[os.path.realpath(weights)] == ["PRV013"] and code == 0


def test_a_cache_made_of_copies_only_stays_info(tmp_path, capsys):
    # Where the file system has no links huggingface_hub copies every file: nothing to check, not tampered.
    paths = build(tmp_path / "hub")
    for f in list((paths["storage"] / "snapshots").rglob("*")):
        if f.is_symlink():
            data = f.read_bytes()
            f.unlink()
            f.write_bytes(data)
    assert main(["verify", "--format", "json", "--no-policy", str(paths["storage"])]) == 0
    doc = json.loads(capsys.readouterr().out)
    copies = [f["rule"] for e in doc["files"] if "/snapshots/" in e["path"] for f in e["findings"]]
    assert "PRV013" in copies and "PRV012" not in copies
