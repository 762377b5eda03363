"""The CLI contract of DESIGN.md: exit codes, one JSON document, every file once, skipped specials."""

import json
import os
import pickle
import subprocess
import sys

import pytest

from airlock.core import __version__
from airlock.core.cli import main

EVIL = (b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03.")
BENIGN = pickle.dumps({"lr": 0.1, "layers": [1, 2, 3]}, protocol=4)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "evil.pkl").write_bytes(EVIL)
    (tmp_path / "ok.pkl").write_bytes(BENIGN)
    (tmp_path / "empty.bin").write_bytes(b"")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "notes.txt").write_bytes(b"just some text\n")
    return tmp_path


def test_exit_codes(tree, capsys):
    assert run(capsys, "scan", str(tree / "ok.pkl"))[0] == 0
    assert run(capsys, "scan", str(tree / "evil.pkl"))[0] == 1
    assert run(capsys, "scan", "--fail-on", "critical", str(tree / "ok.pkl"))[0] == 0
    assert run(capsys, "scan", "--fail-on", "info", str(tree / "ok.pkl"))[0] == 1  # data-only is info


def test_missing_path_and_bad_arguments_exit_2(tree, capsys):
    code, _, err = run(capsys, "scan", str(tree / "nope.pkl"))
    assert code == 2 and "no such file" in err
    with pytest.raises(SystemExit) as exc:
        main(["scan", "--fail-on", "severe", str(tree)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["scan"])
    assert exc.value.code == 2


def test_json_is_one_document_listing_every_file_once(tree, capsys):
    code, out, err = run(capsys, "scan", "--format", "json", "--jobs", "1", str(tree))
    assert code == 1
    assert err == ""
    doc = json.loads(out)  # exactly one document: json.loads rejects trailing content
    assert doc["schema_version"] == 1 and doc["airlock_version"] == __version__
    paths = [f["path"] for f in doc["files"]]
    expected = sorted(str(tree / n) for n in ("evil.pkl", "ok.pkl", "empty.bin", os.path.join("sub", "notes.txt")))
    assert sorted(paths) == expected
    by_name = {os.path.basename(f["path"]): f for f in doc["files"]}
    evil = by_name["evil.pkl"]
    assert evil["severity"] == "critical" and evil["format"] == "pickle"
    finding = evil["findings"][0]
    assert set(finding) == {"rule", "severity", "message", "offset", "member", "node"}
    assert "system" in finding["message"] and isinstance(finding["offset"], int)
    assert by_name["empty.bin"]["findings"] == [] or by_name["empty.bin"]["severity"] in ("info", "none")


def test_jobs_give_the_same_report(tree, capsys):
    _, one, _ = run(capsys, "scan", "--format", "json", "--jobs", "1", str(tree))
    _, two, _ = run(capsys, "scan", "--format", "json", "--jobs", "2", str(tree))
    assert json.loads(one) == json.loads(two)


def test_symlinks_followed_and_fifos_skipped(tmp_path, capsys):
    (tmp_path / "blob").write_bytes(EVIL)
    (tmp_path / "model.pkl").symlink_to(tmp_path / "blob")
    (tmp_path / "dangling.pkl").symlink_to(tmp_path / "missing")
    os.mkfifo(tmp_path / "pipe")
    code, out, _ = run(capsys, "scan", "--format", "json", str(tmp_path))
    files = {os.path.basename(f["path"]): f for f in json.loads(out)["files"]}
    assert files["model.pkl"]["severity"] == "critical"
    assert files["pipe"]["format"] == "skipped"
    assert "not a regular file" in files["pipe"]["findings"][0]["message"]
    assert files["dangling.pkl"]["severity"] == "high"  # unreadable is a finding, not a crash
    assert code == 1


def test_output_file(tree, capsys, tmp_path):
    target = tmp_path / "report.json"
    code, out, _ = run(capsys, "scan", "--format", "json", "-o", str(target), str(tree / "ok.pkl"))
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["files"][0]["path"] == str(tree / "ok.pkl")


def test_text_report_is_readable_and_plain_when_not_a_tty(tree, capsys):
    code, out, _ = run(capsys, "scan", str(tree / "evil.pkl"), str(tree / "ok.pkl"))
    assert code == 1
    assert "[CRITICAL]" in out and "system" in out
    assert "\x1b[" not in out
    assert "2 file(s) scanned" in out
    _, coloured, _ = run(capsys, "scan", "--color", "always", str(tree / "evil.pkl"))
    assert "\x1b[" in coloured


def test_the_installed_command_keeps_json_clean_on_hostile_input(tree):
    garbage = tree / "garbage.pt"
    garbage.write_bytes(b"\x80\x05" + os.urandom(4096))
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "--format", "json", str(tree)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["files"]) == 5


def test_jsonl_to_an_output_file(tree, capsys, tmp_path_factory):
    folder = tmp_path_factory.mktemp("out")
    out = folder / "report.jsonl"
    code = main(["scan", "--format", "jsonl", "--jobs", "1", "-o", str(out), str(tree)])
    assert capsys.readouterr().out == ""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    _, document, _ = run(capsys, "scan", "--format", "json", "--jobs", "1", str(tree))
    assert lines == json.loads(document)["files"] and code == (1 if any(
        f["severity"] in ("high", "critical") for f in lines) else 0)
    assert [p.name for p in folder.iterdir()] == ["report.jsonl"]  # no temporary file left


def test_an_empty_folder_says_nothing_was_inspected(tmp_path, capsys):
    # New-user trial: the summary read "0 file(s) scanned: ; 0 not fully inspected".
    # And exit 2: a CI gate pointed at an empty download or a wrong folder must not pass.
    (tmp_path / "models" / ".git").mkdir(parents=True)
    (tmp_path / "models" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert main(["scan", "--no-policy", str(tmp_path / "models")]) == 2
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1]
    assert last.startswith("0 file(s) scanned: no file found under the paths given"), last
    assert "nothing was inspected" in err
    for fmt in ("json", "jsonl", "sarif"):
        assert main(["scan", "--no-policy", "--format", fmt, str(tmp_path / "models")]) == 2, fmt
