"""`airlock approve | reject | history` and the gate of `airlock scan --require-approved`, on generated
files, against SQLite and a real PostgreSQL server (the `db_url` fixture runs each test on both)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import sqlite3

import pytest
from provenance.hf_fake import safetensors_bytes

from airlock.core.cli import main
from airlock.core.policy_file import EMPTY, digest
from airlock.core.review.migrations import LATEST

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    data = {
        "model.safetensors": safetensors_bytes(8),
        "optimizer.pkl": pickle.dumps({"lr": 0.1, "betas": [0.9, 0.99]}, protocol=4),
        "evil.pkl": EVIL,
        "config.json": b'{"model_type": "bert"}',
        "README.md": b"# a model\n",
    }
    for name, content in data.items():
        (folder / name).write_bytes(content)
    return folder


def init(db):
    """An empty approvals database (the gate refuses a --db file that does not exist: a typo)."""
    from airlock.core.review.queries import open_store

    open_store(db).close()
    return db


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def history_json(capsys, db, target):
    code, out, _ = run(capsys, "history", "--db", db, "--format", "json", str(target))
    return code, json.loads(out)


def test_approve_records_everything_a_review_needs(files, db_url, capsys):
    model = files / "model.safetensors"
    code, out, err = run(capsys, "approve", str(model), "--note", "checked against the upstream card",
                         "--reviewer", "alice", "--db", db_url, "--no-policy")
    assert code == 0, err
    assert f"approved {sha(model.read_bytes())}" in out and "by alice" in out
    code, doc = history_json(capsys, db_url, model)
    assert code == 0
    (entry,) = doc["files"]
    assert entry["current"] == "approve"
    (record,) = entry["decisions"]
    assert record["sha256"] == sha(model.read_bytes())
    assert record["size"] == model.stat().st_size
    assert record["file_name"] == "model.safetensors" and record["path"] == str(model)
    assert record["format"] == "safetensors" and record["verdict"] == "none"
    assert record["decision"] == "approve" and record["accepted_critical"] is False
    assert record["reviewer"] == "alice" and record["note"] == "checked against the upstream card"
    assert record["policy_digest"] == digest(EMPTY)
    assert len(record["findings_digest"]) == 64 and record["decided_at"].endswith("Z")


def test_reviewer_defaults_to_the_login_name(files, db_url, capsys, monkeypatch):
    monkeypatch.setenv("LOGNAME", "carol-from-login")
    assert run(capsys, "approve", str(files / "optimizer.pkl"), "--note", "ok", "--db", db_url)[0] == 0
    _, doc = history_json(capsys, db_url, files / "optimizer.pkl")
    assert doc["files"][0]["decisions"][0]["reviewer"] == "carol-from-login"


def test_critical_findings_need_accept_critical_and_the_record_says_so(files, db_url, capsys):
    evil = files / "evil.pkl"
    code, out, err = run(capsys, "approve", str(evil), str(files / "optimizer.pkl"), "--note", "x",
                         "--db", db_url, "--no-policy")
    assert code == 1 and out == ""
    assert "evil.pkl has critical findings" in err and "--accept-critical" in err and "PKL" in err
    # Nothing was recorded, not even the clean file approved in the same command.
    assert history_json(capsys, db_url, files / "optimizer.pkl")[0] == 1
    code, out, err = run(capsys, "approve", str(evil), "--note", "lab sample", "--accept-critical",
                         "--db", db_url, "--no-policy")
    assert code == 0, err
    assert "critical findings accepted" in out
    record = history_json(capsys, db_url, evil)[1]["files"][0]["decisions"][0]
    assert record["accepted_critical"] is True and record["verdict"] == "critical"
    assert any(f["rule"] == "PKL006" and f["offset"] is not None for f in record["findings"])


def test_latest_decision_counts_and_history_shows_the_whole_trail(files, db_url, capsys):
    model = files / "model.safetensors"
    for verb, note in (("approve", "first look"), ("reject", "licence problem"), ("approve", "licence fixed")):
        assert run(capsys, verb, str(model), "--note", note, "--db", db_url, "--no-policy")[0] == 0
    code, out, _ = run(capsys, "history", "--db", db_url, str(model))
    assert code == 0
    assert out.count("APPROVED") == 2 and out.count("REJECTED") == 1
    assert out.index("first look") < out.index("licence problem") < out.index("licence fixed")
    assert out.rstrip().endswith("now: approved")
    assert run(capsys, "reject", str(model), "--note", "withdrawn", "--db", db_url)[0] == 0
    _, doc = history_json(capsys, db_url, sha(model.read_bytes()))  # by hash, the file not needed
    assert doc["files"][0]["current"] == "reject" and len(doc["files"][0]["decisions"]) == 4


def test_history_exit_codes(files, db_url, capsys):
    assert run(capsys, "approve", str(files / "optimizer.pkl"), "--note", "ok", "--db", db_url)[0] == 0
    code, out, _ = run(capsys, "history", "--db", db_url, "0" * 64)
    assert code == 1 and "no record" in out
    code, _, err = run(capsys, "history", "--db", db_url, str(files / "missing.pkl"))
    assert code == 2 and "no such file" in err
    assert run(capsys, "history", "--db", db_url, str(files))[0] == 2  # a folder is neither
    # Several targets: exit 1 when one of them has no record.
    assert run(capsys, "history", "--db", db_url, str(files / "optimizer.pkl"), str(files / "evil.pkl"))[0] == 1


def test_history_of_an_empty_default_database_is_no_record_and_creates_nothing(files, capsys, tmp_path):
    code, out, _ = run(capsys, "history", str(files / "optimizer.pkl"))
    assert code == 1 and "no record" in out
    assert not (tmp_path / "xdg-data").exists()


def test_default_database_is_a_wal_sqlite_file_in_the_user_data_folder(files, capsys, tmp_path):
    assert run(capsys, "approve", str(files / "optimizer.pkl"), "--note", "ok", "--no-policy")[0] == 0
    path = tmp_path / "xdg-data" / "airlock" / "approvals.sqlite3"
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT max(version) FROM airlock_schema").fetchone()[0] == LATEST


def test_airlock_db_environment_variable_names_the_database(files, capsys, tmp_path, monkeypatch):
    db = tmp_path / "team.sqlite3"
    monkeypatch.setenv("AIRLOCK_DB", f"sqlite:///{db}")
    assert run(capsys, "approve", str(files / "optimizer.pkl"), "--note", "ok")[0] == 0
    assert db.is_file() and not (tmp_path / "xdg-data").exists()
    assert run(capsys, "history", str(files / "optimizer.pkl"))[0] == 0


def test_an_approval_belongs_to_the_content_hash(files, db_url, capsys, tmp_path):
    model = files / "model.safetensors"
    assert run(capsys, "approve", str(model), "--note", "ok", "--db", db_url, "--no-policy")[0] == 0
    other = tmp_path / "elsewhere"
    other.mkdir()
    renamed = other / "renamed-copy.bin"
    renamed.write_bytes(model.read_bytes())
    changed = other / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0x01  # one byte of tensor data: still a valid file, another hash
    changed.write_bytes(bytes(data))
    code, out, _ = run(capsys, "scan", "--require-approved", "--db", db_url, "--no-policy", "--format", "json",
                       str(renamed), str(changed))
    doc = json.loads(out)
    by_name = {os.path.basename(e["path"]): e for e in doc["files"]}
    assert code == 1
    assert not [f for f in by_name["renamed-copy.bin"]["findings"] if f["rule"].startswith("REV")]
    assert by_name["renamed-copy.bin"]["review"]["decision"] == "approve"
    assert by_name["model.safetensors"]["severity"] == "high"
    assert [f["rule"] for f in by_name["model.safetensors"]["findings"]] == ["REV001"]


def test_require_approved_gates_models_only(files, db_url, capsys):
    init(db_url)
    code, out, _ = run(capsys, "scan", "--require-approved", "--db", db_url, "--no-policy", "--format", "json",
                       str(files))
    assert code == 1
    rules = {os.path.basename(e["path"]): {f["rule"] for f in e["findings"]} for e in json.loads(out)["files"]}
    assert "REV001" in rules["model.safetensors"] and "REV001" in rules["optimizer.pkl"]
    assert "REV001" in rules["evil.pkl"]
    assert not rules["config.json"] & {"REV001", "REV002"} and not rules["README.md"] & {"REV001", "REV002"}
    # Approve the models, reject the hostile one: the gate passes for the approved and fails critical.
    for name in ("model.safetensors", "optimizer.pkl"):
        assert run(capsys, "approve", str(files / name), "--note", "ok", "--db", db_url, "--no-policy")[0] == 0
    assert run(capsys, "reject", str(files / "evil.pkl"), "--note", "runs os.system", "--reviewer", "bob",
               "--db", db_url, "--no-policy")[0] == 0
    code, out, _ = run(capsys, "scan", "--require-approved", "--db", db_url, "--no-policy", "--format", "json",
                       str(files))
    entries = {os.path.basename(e["path"]): e for e in json.loads(out)["files"]}
    assert entries["model.safetensors"]["severity"] == "none"
    assert entries["model.safetensors"]["review"]["same_findings"] is True
    rejected = [f for f in entries["evil.pkl"]["findings"] if f["rule"] == "REV002"]
    assert rejected and rejected[0]["severity"] == "critical" and "bob" in rejected[0]["message"]
    assert "runs os.system" in rejected[0]["message"]
    code = main(["scan", "--require-approved", "--db", db_url, "--no-policy", str(files / "model.safetensors"),
                 str(files / "optimizer.pkl"), str(files / "README.md")])
    capsys.readouterr()
    assert code == 0


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_the_gate_fails_whatever_fail_on_says(files, db_url, capsys, fmt):
    # New-user trial: `--require-approved --fail-on critical` exited 0 with an unapproved model (REV001 is
    # high): the gate the user asked for was open.
    init(db_url)
    model = str(files / "model.safetensors")
    argv = ["scan", "--require-approved", "--fail-on", "critical", "--db", db_url, "--no-policy", "--format", fmt]
    code, out, _ = run(capsys, *argv, model)
    assert code == 1 and "REV001" in out
    assert run(capsys, "approve", model, "--note", "ok", "--db", db_url, "--no-policy")[0] == 0
    assert run(capsys, *argv, model)[0] == 0
    # Without the gate, --fail-on is as before: --db alone adds no finding and fails nothing.
    assert run(capsys, "scan", "--fail-on", "critical", "--db", db_url, "--no-policy",
               str(files / "optimizer.pkl"))[0] == 0


def test_unknown_content_with_a_model_name_is_gated(files, db_url, capsys):
    init(db_url)
    noise = random.Random(17).randbytes
    (files / "weights.bin").write_bytes(b"\xfe\xed" + noise(254))  # no format Airlock knows; a loader would try it
    (files / "notes.txt").write_bytes(b"\xfe\xed" + noise(62))
    _, out, _ = run(capsys, "scan", "--require-approved", "--db", db_url, "--no-policy", "--format", "json",
                       str(files / "weights.bin"), str(files / "notes.txt"))
    rules = {os.path.basename(e["path"]): {f["rule"] for f in e["findings"]} for e in json.loads(out)["files"]}
    assert "REV001" in rules["weights.bin"] and "REV001" not in rules["notes.txt"]


def test_inert_and_empty_files_of_a_download_are_not_gated(db_url, capsys, tmp_path):
    """Regression (the README flow, `huggingface-cli download --local-dir model/`): the gate held the
    download's empty `.cache/huggingface/download/*.lock` files, a picture of the model card, a Git LFS
    pointer and the SentencePiece `tokenizer.model` as unapproved models. Inert content is not a model;
    an empty file is one only under a model's name."""
    from test_fail_closed import _png, _sentencepiece

    init(db_url)
    model = tmp_path / "model"
    cache = model / ".cache" / "huggingface" / "download"
    cache.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(safetensors_bytes(8))
    (model / "tokenizer.model").write_bytes(_sentencepiece())
    (model / "diagram.png").write_bytes(_png())
    (model / "extra.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64
                                              + b"\nsize 89\n")
    (cache / "model.safetensors.lock").write_bytes(b"")
    (cache / "model.safetensors.metadata").write_text(f"{'1' * 40}\n{'a' * 64}\n1733389000.1\n")
    (model / "empty.safetensors").write_bytes(b"")
    assert run(capsys, "approve", str(model / "model.safetensors"), "--note", "ok", "--db", db_url,
               "--no-policy")[0] == 0
    _, out, _ = run(capsys, "scan", "--require-approved", "--db", db_url, "--no-policy", "--format", "json",
                    str(model))
    entries = {os.path.relpath(e["path"], model): e for e in json.loads(out)["files"]}
    gated = {name for name, e in entries.items() if any(f["rule"] == "REV001" for f in e["findings"])}
    assert gated == {"empty.safetensors"}, gated  # an empty file under a model's name: gated by its name
    # An LFS pointer where a model should be is not a model, but the scan itself says the name lies (high).
    assert entries["extra.safetensors"]["severity"] == "high"
    assert "FC001" in {f["rule"] for f in entries["extra.safetensors"]["findings"]}
    os.remove(model / "extra.safetensors")
    os.remove(model / "empty.safetensors")
    code, out, _ = run(capsys, "scan", "--require-approved", "--db", db_url, "--no-policy", str(model))
    assert code == 0, out


def test_policy_key_require_approved_turns_the_gate_on(files, db_url, capsys, tmp_path, monkeypatch):
    init(db_url)
    policy = tmp_path / "airlock.toml"
    policy.write_text("require-approved = true\n")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "scan", "--db", db_url, "--format", "json", str(files / "optimizer.pkl"))
    assert code == 1 and "REV001" in out
    policy.write_text('require-approved = "yes"\n')
    code, _, err = run(capsys, "scan", "--db", db_url, str(files / "optimizer.pkl"))
    assert code == 2 and "require-approved" in err and "line 1" in err


def test_a_policy_can_re_rate_the_gates_finding_visibly(files, db_url, capsys, tmp_path):
    init(db_url)
    policy = tmp_path / "policy.toml"
    policy.write_text('[[override]]\nrule = "REV001"\nseverity = "medium"\nreason = "pilot: warn only"\n')
    code, out, _ = run(capsys, "scan", "--require-approved", "--db", db_url, "--policy", str(policy),
                       "--format", "json", str(files / "optimizer.pkl"))
    assert code == 0
    (finding,) = [f for f in json.loads(out)["files"][0]["findings"] if f["rule"] == "REV001"]
    assert finding["severity"] == "medium" and finding["overridden_by"]["was"] == "high"


def test_db_alone_adds_decisions_without_findings(files, db_url, capsys):
    assert run(capsys, "reject", str(files / "optimizer.pkl"), "--note", "no", "--db", db_url)[0] == 0
    code, out, _ = run(capsys, "scan", "--db", db_url, "--no-policy", "--format", "json", str(files / "optimizer.pkl"),
                       str(files / "model.safetensors"))
    entries = {os.path.basename(e["path"]): e for e in json.loads(out)["files"]}
    assert code == 0
    assert entries["optimizer.pkl"]["review"]["decision"] == "reject"
    assert "review" not in entries["model.safetensors"]
    assert not any(f["rule"].startswith("REV") for e in entries.values() for f in e["findings"])


def test_the_policy_digest_is_recorded(files, db_url, capsys, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('fail-on = "medium"\n')
    assert run(capsys, "approve", str(files / "optimizer.pkl"), "--note", "ok", "--db", db_url,
               "--policy", str(policy))[0] == 0
    from airlock.core.policy_file import load

    record = history_json(capsys, db_url, files / "optimizer.pkl")[1]["files"][0]["decisions"][0]
    assert record["policy_digest"] == digest(load(str(policy))) != digest(EMPTY)


def test_bad_input_exits_2_with_one_line(files, capsys, tmp_path):
    code, _, err = run(capsys, "approve", str(files / "nope.pkl"), "--note", "x", "--db", str(tmp_path / "a.db"))
    assert code == 2 and "no such file" in err
    code, _, err = run(capsys, "approve", str(files / "optimizer.pkl"), "--note", "  ", "--db", str(tmp_path / "a.db"))
    assert code == 2 and "--note" in err
    not_a_db = tmp_path / "text.sqlite3"
    not_a_db.write_text("this is not a database " * 100)
    for argv in (["approve", str(files / "optimizer.pkl"), "--note", "x"], ["history", str(files / "optimizer.pkl")],
                 ["scan", "--require-approved", str(files / "optimizer.pkl")]):
        code, _, err = run(capsys, *argv, "--db", str(not_a_db))
        assert code == 2, argv
        assert "approvals database" in err and "Traceback" not in err and err.count("\n") == 1
    code, _, err = run(capsys, "approve", str(files / "optimizer.pkl"), "--note", "x",
                       "--db", str(tmp_path / "no" / "such" / "folder.db"))
    assert code == 2 and "no such folder" in err
    code, _, err = run(capsys, "scan", "--require-approved", "--db", str(tmp_path / "missing.db"),
                       str(files / "optimizer.pkl"))
    assert code == 2 and "no such approvals database" in err
    code, _, err = run(capsys, "history", "--db", "mysql://u@h/db", "0" * 64)
    assert code == 2 and "unsupported database URL" in err
    # A named database file that does not exist is a typo, not an empty trail (as for the gate).
    for missing in (tmp_path / "missing.db", tmp_path / "no" / "such" / "folder.db"):
        code, out, err = run(capsys, "history", "--db", str(missing), "0" * 64)
        assert code == 2 and "no such approvals database" in err and out == ""
        assert not missing.exists()


def test_unreachable_postgresql_exits_2_without_its_password(files, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run(capsys, "approve", str(files / "optimizer.pkl"), "--note", "x",
                       "--db", f"postgresql://airlock:s3cret@127.0.0.1:{port}/x")
    assert code == 2 and "approvals database" in err and "s3cret" not in err and "***" in err


def test_the_gate_streams_with_jsonl(files, db_url, capsys):
    """jsonl looks each file up as it finishes; the database stays open for the whole scan."""
    assert run(capsys, "approve", str(files / "optimizer.pkl"), "--note", "ok", "--db", db_url, "--no-policy")[0] == 0
    code, out, _ = run(capsys, "scan", "--require-approved", "--db", db_url, "--no-policy", "--format", "jsonl",
                       "--jobs", "1", str(files))
    entries = {os.path.basename(e["path"]): e for e in map(json.loads, out.splitlines())}
    assert code == 1 and len(entries) == 5
    assert entries["optimizer.pkl"]["review"]["decision"] == "approve"
    assert not any(f["rule"] == "REV001" for f in entries["optimizer.pkl"]["findings"])
    assert any(f["rule"] == "REV001" for f in entries["model.safetensors"]["findings"])
    assert any(f["rule"] == "REV001" for f in entries["evil.pkl"]["findings"])
    assert "review" not in entries["README.md"]
