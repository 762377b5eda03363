"""`airlock lock` and `airlock verify --lock / --manifest`: changed, missing and extra files, pins."""

import json
import os
import pickle
import subprocess
import tomllib

import pytest

from airlock.core.cli import main
from provenance.hf_fake import COMMIT_2, build, safetensors_bytes, tamper


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(safetensors_bytes(16))
    (folder / "config.json").write_bytes(b'{"model_type": "bert"}')
    (folder / "optimizer.pkl").write_bytes(pickle.dumps({"lr": 0.1}, protocol=4))
    (folder / "README.md").write_text("# a model\n")
    return folder


def verify_json(capsys, *argv):
    code = main(["verify", "--format", "json", "--no-policy", *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out)


def findings(doc):
    """Every finding but the folder's signature state (info here; tests/provenance/test_signing.py)."""
    return {(os.path.basename(e["path"]), f["rule"], f["severity"]) for e in doc["files"] for f in e["findings"]
            if f["rule"] not in ("PRV005", "PRV006")}


def test_lock_records_files_relative_to_the_lock(model, capsys):
    lock = model / "airlock.lock"
    assert main(["lock", "--no-policy", "-o", str(lock), str(model)]) == 0
    data = tomllib.loads(lock.read_text())
    assert data["version"] == 1 and len(data["policy_digest"]) == 64
    paths = sorted(f["path"] for f in data["file"])
    assert paths == ["README.md", "config.json", "model.safetensors", "optimizer.pkl"]
    record = next(f for f in data["file"] if f["path"] == "model.safetensors")
    assert record["format"] == "safetensors" and record["verdict"] == "none" and record["size"] == len(safetensors_bytes(16))
    assert len(record["sha256"]) == 64 and len(record["findings_digest"]) == 64
    code, doc = verify_json(capsys, "--lock", str(lock))
    assert code == 0 and not findings(doc)


def test_changed_missing_and_extra_files(model, capsys):
    lock = model / "airlock.lock"
    assert main(["lock", "--no-policy", "-o", str(lock), str(model)]) == 0
    (model / "config.json").write_bytes(b'{"model_type": "evil"}')
    os.remove(model / "optimizer.pkl")
    (model / "extra.safetensors").write_bytes(safetensors_bytes(2))
    (model / "NOTES.txt").write_text("text does not count as extra\n")
    (model / "model.sig").write_text("{}")  # never counts as extra
    code, doc = verify_json(capsys, "--lock", str(lock), str(model))
    assert code == 1
    got = findings(doc)
    assert ("config.json", "PRV001", "critical") in got
    assert ("optimizer.pkl", "PRV002", "high") in got
    assert ("extra.safetensors", "PRV003", "high") in got
    assert not [g for g in got if g[0] in ("NOTES.txt", "model.sig", "airlock.lock")]
    message = next(f["message"] for e in doc["files"] for f in e["findings"] if f["rule"] == "PRV001")
    assert "expected sha256" in message and "found" in message


def test_extra_means_a_model_config_or_unrecognised_file(model, capsys):
    """"Extra" = a model or config file the lock does not list. Regression: bytes no format recognises, added
    under a name no format claims, passed unnoticed (fail open), while a picture or a .gitattributes added
    beside the model failed the check."""
    import random

    from test_fail_closed import _png

    lock = model / "airlock.lock"
    assert main(["lock", "--no-policy", "-o", str(lock), str(model)]) == 0
    (model / "payload.dat").write_bytes(b"\xfe\xed" + random.Random(5).randbytes(500))
    (model / "diagram.png").write_bytes(_png())
    (model / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    (model / "download.lock").write_bytes(b"")
    code, doc = verify_json(capsys, "--lock", str(lock), str(model))
    assert code == 1
    assert findings(doc) == {("payload.dat", "PRV003", "high")}


def test_a_model_under_a_readme_or_text_name_is_extra(model, capsys):
    """A name never lowers a verdict. New-user trial: a pickle added as notes.txt or LICENSE after the lock
    passed `verify --lock`; a model card with front matter and plain notes still do not count."""
    lock = model / "airlock.lock"
    assert main(["lock", "--no-policy", "-o", str(lock), str(model)]) == 0
    payload = pickle.dumps({"lr": 0.2}, protocol=2)
    (model / "notes.txt").write_bytes(payload)
    (model / "LICENSE").write_bytes(payload)
    (model / "USAGE.md").write_text("---\nlicense: mit\ntags: [bert]\n---\n# Usage\n\nLoad it.\n")
    (model / "CHANGES.txt").write_text("v2: retrained\n")
    code, doc = verify_json(capsys, "--lock", str(lock), str(model))
    assert code == 1
    assert findings(doc) == {("notes.txt", "PRV003", "high"), ("LICENSE", "PRV003", "high")}


def test_a_local_dir_downloads_bookkeeping_is_not_pinned(model, capsys):
    """`huggingface-cli download --local-dir model/` keeps `.cache/huggingface/download/<file>.lock` and
    `.metadata` (commit, etag, time) beside the files, rewritten by each download: pinned, CI's fresh download
    failed as "changed since it was locked". They are not part of the model: not pinned, never extra."""
    bookkeeping = model / ".cache" / "huggingface"
    (bookkeeping / "download").mkdir(parents=True)
    (bookkeeping / ".gitignore").write_text("*\n")
    (bookkeeping / "download" / "model.safetensors.lock").write_bytes(b"")
    meta = bookkeeping / "download" / "model.safetensors.metadata"
    meta.write_text(f"{'1' * 40}\n{'a' * 64}\n1733389000.1\n")
    lock = model / "airlock.lock"
    assert main(["lock", "--no-policy", "-o", str(lock), str(model)]) == 0
    assert not [f for f in tomllib.loads(lock.read_text())["file"] if ".cache" in f["path"]]
    meta.write_text(f"{'1' * 40}\n{'a' * 64}\n1733399999.9\n")  # downloaded again
    (bookkeeping / "download" / "config.json.metadata").write_text(f"{'1' * 40}\n{'b' * 40}\n1733399999.9\n")
    code, doc = verify_json(capsys, "--lock", str(lock), str(model))
    assert code == 0 and not findings(doc), doc
    (model / "config.json").write_bytes(b'{"model_type": "evil"}')  # the model's own files still count
    code, doc = verify_json(capsys, "--lock", str(lock), str(model))
    assert code == 1 and findings(doc) == {("config.json", "PRV001", "critical")}
    # Named on the command line, such a file is pinned all the same.
    assert main(["lock", "--no-policy", "-o", str(lock), str(meta)]) == 0
    assert [f["path"] for f in tomllib.loads(lock.read_text())["file"]] == [
        ".cache/huggingface/download/model.safetensors.metadata"]


def test_different_findings_digest_is_info_rescan(model, capsys):
    lock = model / "airlock.lock"
    assert main(["lock", "--no-policy", "-o", str(lock), str(model)]) == 0
    text = lock.read_text()
    data = tomllib.loads(text)
    old = next(f["findings_digest"] for f in data["file"] if f["path"] == "optimizer.pkl")
    lock.write_text(text.replace(old, "0" * 64))
    code, doc = verify_json(capsys, "--lock", str(lock))
    assert code == 0
    assert findings(doc) == {("optimizer.pkl", "PRV010", "info")}


def test_lock_from_a_newer_airlock_and_broken_locks_exit_2(model, capsys):
    lock = model / "airlock.lock"
    lock.write_text('version = 99\nairlock_version = "9.0"\n')
    assert main(["verify", "--lock", str(lock)]) == 2
    assert "newer Airlock" in capsys.readouterr().err
    lock.write_text("version = [\n")
    assert main(["verify", "--lock", str(lock)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    lock.write_text('version = 1\n[[file]]\npath = "x"\nsha256 = "nothex"\n')
    assert main(["verify", "--lock", str(lock)]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "Traceback" not in err


def test_hugging_face_pins(tmp_path, capsys):
    root = tmp_path / "hub"
    paths = build(root)
    lock = tmp_path / "airlock.lock"
    assert main(["lock", "--no-policy", "-o", str(lock), str(paths["storage"] / "snapshots" / COMMIT_2)]) == 0
    data = tomllib.loads(lock.read_text())
    assert data["repository"] == [{"repo_id": "org/model", "repo_type": "model", "revision": COMMIT_2,
                                   "refs": ["main"]}]
    assert all(f["repo_id"] == "org/model" and f["revision"] == COMMIT_2 for f in data["file"])
    assert data["file"][0]["path"].startswith("hub/models--org--model/snapshots/")
    snapshot = str(paths["storage"] / "snapshots" / COMMIT_2)
    code, doc = verify_json(capsys, "--lock", str(lock), snapshot)
    assert code == 0, doc
    # A pin naming a branch is medium; a commit that is not there is high.
    lock.write_text(lock.read_text().replace(f'revision = "{COMMIT_2}"\nrefs', 'revision = "main"\nrefs'))
    code, doc = verify_json(capsys, "--lock", str(lock), snapshot)
    assert ("airlock.lock", "PRV009", "medium") in findings(doc)
    lock.write_text(lock.read_text().replace('revision = "main"\nrefs', f'revision = "{"c" * 40}"\nrefs'))
    code, doc = verify_json(capsys, "--lock", str(lock), snapshot)
    assert code == 1 and ("airlock.lock", "PRV008", "high") in findings(doc)
    # And the content itself: a tampered blob fails the lock and the blob name.
    tamper(paths["weights2"], b"other")
    code, doc = verify_json(capsys, "--lock", str(lock), snapshot)
    assert ("model.safetensors", "PRV001", "critical") in findings(doc)


def test_readme_flow_lock_and_verify_a_whole_repository_folder(tmp_path, capsys):
    """Regression (new-user trial of the README flow): `airlock lock models--org--model` then `airlock
    verify --lock airlock.lock models--org--model` reported every blob a snapshot links to as "extra" and
    listed each file twice. A linked blob is its snapshot file: one entry per file, exit 0."""
    from provenance.hf_fake import add_file

    paths = build(tmp_path / "hub")
    repo = str(paths["storage"])
    lock = tmp_path / "ci" / "airlock.lock"
    lock.parent.mkdir()
    assert main(["lock", "--no-policy", "-o", str(lock), repo]) == 0
    capsys.readouterr()
    pinned = [f["path"] for f in tomllib.loads(lock.read_text())["file"]]
    assert len(pinned) == 5 and all("/snapshots/" in p for p in pinned)  # no revision holds the other blobs
    code, doc = verify_json(capsys, "--lock", str(lock), repo)
    assert code == 0, doc
    assert not [f for e in doc["files"] for f in e["findings"] if f["rule"] == "PRV003"]
    shown = [os.path.normpath(os.path.abspath(e["path"])) for e in doc["files"] if e["format"] != "folder"]
    assert len(shown) == len(set(shown)) == 7  # 5 snapshot files, the orphan blob, the unfinished download
    # A new revision downloaded into the cache: its file is extra under its snapshot path, not its blob.
    add_file(tmp_path / "hub", "org/model", "3" * 40, "model.safetensors", safetensors_bytes(2), lfs=True)
    tamper(paths["weights1"], b"other")
    code, doc = verify_json(capsys, "--lock", str(lock), repo)
    assert code == 1
    got = {(os.path.relpath(e["path"], repo), f["rule"]) for e in doc["files"] for f in e["findings"]
           if f["rule"] in ("PRV001", "PRV003")}
    new = os.path.join("snapshots", "3" * 40, "model.safetensors")
    weights1 = os.path.relpath(paths["weights1"], repo)
    assert got == {(new, "PRV003"), (weights1, "PRV001")}, got


def test_a_lock_of_a_cache_verifies_the_same_cache_elsewhere(tmp_path, capsys):
    """The README's CI flow: the lock is made on a laptop and committed; CI downloads the same revision into
    its own cache, at another path. Cache files are found by repository, revision and name, not by the
    laptop's relative path; a file the CI cache lacks is still missing, a changed one still critical."""
    import shutil

    paths = build(tmp_path / "laptop" / "hub")
    project = tmp_path / "laptop" / "project"
    project.mkdir()
    lock = project / "airlock.lock"
    assert main(["lock", "--no-policy", "-o", str(lock), str(paths["storage"])]) == 0
    ci_cache = tmp_path / "ci-home" / ".cache" / "huggingface" / "hub"
    shutil.copytree(tmp_path / "laptop" / "hub", ci_cache, symlinks=True)
    ci_repo = ci_cache / paths["storage"].name
    for leftover in (paths["orphan"], paths["incomplete"]):  # the laptop's leftovers are not in CI's download
        os.remove(ci_repo / "blobs" / leftover.name)
    ci_lock = tmp_path / "ci-work" / "project" / "airlock.lock"
    ci_lock.parent.mkdir(parents=True)
    shutil.copy(lock, ci_lock)
    shutil.rmtree(tmp_path / "laptop")
    capsys.readouterr()
    code, doc = verify_json(capsys, "--lock", str(ci_lock), str(ci_repo))
    assert code == 0, doc
    assert not findings(doc)
    os.remove(ci_repo / "snapshots" / COMMIT_2 / "config.json")
    tamper(ci_repo / "snapshots" / COMMIT_2 / "model.safetensors", b"other")
    code, doc = verify_json(capsys, "--lock", str(ci_lock), str(ci_repo))
    assert code == 1
    got = findings(doc)
    assert ("config.json", "PRV002", "high") in got and ("model.safetensors", "PRV001", "critical") in got


def test_manifest_from_sha256sum(model, capsys):
    sums = subprocess.run(["sha256sum", "model.safetensors", "config.json"], cwd=model, capture_output=True,
                          check=True).stdout
    sums += subprocess.run(["sha256sum", "-b", "optimizer.pkl"], cwd=model, capture_output=True,
                           check=True).stdout
    (model / "SHA256SUMS").write_bytes(sums)
    code, doc = verify_json(capsys, "--manifest", str(model / "SHA256SUMS"))
    assert code == 0 and not findings(doc)
    (model / "optimizer.pkl").write_bytes(b"changed")
    os.remove(model / "config.json")
    (model / "new.safetensors").write_bytes(safetensors_bytes(1))
    code, doc = verify_json(capsys, "--manifest", str(model / "SHA256SUMS"))
    assert code == 1
    assert findings(doc) == {("optimizer.pkl", "PRV001", "critical"), ("config.json", "PRV002", "high"),
                             ("new.safetensors", "PRV003", "high")}


def test_a_manifest_kept_away_from_its_files_says_where_names_are_looked_up(model, capsys, tmp_path, monkeypatch):
    """Regression (new-user trial): `airlock hash a b > /tmp/SUMS` then `verify --manifest /tmp/SUMS a b` said
    "missing" with no word on why (names are relative to the manifest's folder, as sha256sum -c reads them)."""
    monkeypatch.chdir(model)
    elsewhere = tmp_path / "sums"
    elsewhere.mkdir()
    assert main(["hash", "config.json"]) == 0
    (elsewhere / "SUMS").write_text(capsys.readouterr().out)
    code, doc = verify_json(capsys, "--manifest", str(elsewhere / "SUMS"), "config.json")
    missing = [f for e in doc["files"] for f in e["findings"] if f["rule"] == "PRV002" and "SUMS" in f["message"]]
    assert code == 1 and missing and "relative to its own folder" in missing[0]["message"]
    (model / "SUMS").write_text((elsewhere / "SUMS").read_text())  # kept beside the files: verified
    code, doc = verify_json(capsys, "--manifest", "SUMS", "config.json")
    assert code == 0, doc
    # The text report of a verification says what was checked, not "not inspected" (nothing is inspected).
    assert main(["verify", "--no-policy", "--manifest", "SUMS", "config.json"]) == 0
    out = capsys.readouterr().out
    assert "[ok] " in out and "file(s) verified" in out and "inspected" not in out.lower()


def test_manifest_line_that_does_not_parse_exits_2_naming_it(model, capsys):
    (model / "SHA256SUMS").write_text("a" * 64 + "  model.safetensors\ngarbage here\n")
    assert main(["verify", "--manifest", str(model / "SHA256SUMS")]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "SHA256SUMS" in err


def test_a_file_listed_twice_with_different_hashes_exits_2(model, capsys):
    # New-user trial: the last line won, so a wrong hash on line 1 followed by the right one passed (and
    # the other order failed); `sha256sum -c` checks both. The same hash twice is fine.
    import hashlib

    right = hashlib.sha256((model / "optimizer.pkl").read_bytes()).hexdigest()
    listing = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                      for p in sorted(model.iterdir()) if p.is_file())
    sums = model / "SHA256SUMS"
    sums.write_text(f"{'0' * 64}  optimizer.pkl\n" + listing)
    assert main(["verify", "--no-policy", "--manifest", str(sums), str(model)]) == 2
    err = capsys.readouterr().err
    assert "optimizer.pkl" in err and "line 1" in err and "line 5" in err, err
    sums.write_text(f"{right}  optimizer.pkl\n" + listing)
    assert main(["verify", "--no-policy", "--manifest", str(sums), str(model)]) == 0
    capsys.readouterr()


def test_a_lock_pinning_one_file_twice_with_different_hashes_exits_2(model, capsys):
    # Same trap as the manifest's: the last [[file]] record won.
    lock = model / "airlock.lock"
    assert main(["lock", "--no-policy", "-o", str(lock), str(model)]) == 0
    capsys.readouterr()
    text = lock.read_text()
    record = text[text.index("[[file]]"):]
    record = record[:record.index("\n\n") + 1] if "\n\n" in record else record
    first = record.split('sha256 = "')[1][:64]
    lock.write_text(text.replace(record, record.replace(first, "0" * 64) + "\n" + record, 1))
    assert main(["verify", "--no-policy", "--lock", str(lock), str(model)]) == 2
    err = capsys.readouterr().err
    assert "[[file]] number 2" in err and "[[file]] number 1" in err, err


def test_verify_without_anything_to_check_against_exits_2(capsys):
    assert main(["verify"]) == 2
    assert "PATH" in capsys.readouterr().err
