"""SARIF 2.1.0 output validates against the official schema and carries what code scanning needs."""

import json
import os
import pickle
from pathlib import Path

import jsonschema
import pytest

from airlock.core.cli import main
from airlock.core.report import sarif
from airlock.core.rule_catalog import all_rules

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json").read_text())
EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."


def test_sarif_validates_and_has_regions(tmp_path, capsys):
    (tmp_path / "evil.pkl").write_bytes(EVIL)
    (tmp_path / "weird name ü.pkl").write_bytes(EVIL[:20])  # truncated: a malformed finding
    assert main(["scan", "--format", "sarif", str(tmp_path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, SCHEMA)
    run = doc["runs"][0]
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {r.id for r in all_rules()} <= rule_ids
    assert run["results"]
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert result["level"] in ("error", "warning", "note")
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] == 1
        assert isinstance(region["byteOffset"], int) and region["byteLength"] >= 1
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels["PKL006"] == "error"
    assert "AIR002" in levels  # the truncated file


def test_every_rule_has_an_id_title_and_severity():
    rules = all_rules()
    assert len({r.id for r in rules}) == len(rules)
    for rule in rules:
        assert rule.id and rule.title and rule.severity is not None


# What GitHub code scanning needs (issue 17)


def sarif_doc(capsys, *argv, expect=None):
    code = main(["scan", "--format", "sarif", "--no-policy", *argv])
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, SCHEMA)
    if expect is not None:
        assert code == expect
    return doc["runs"][0]


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A checkout: .git at its top, the scan started from a sub-folder."""
    top = tmp_path / "repo"
    (top / ".git").mkdir(parents=True)
    (top / "models" / "sub").mkdir(parents=True)
    (top / "models" / "evil.pkl").write_bytes(EVIL)
    (top / "models" / "sub" / "ok: data.pkl").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=2))
    monkeypatch.chdir(top / "models")
    return top


def test_every_rule_has_help_in_text_and_markdown(capsys, repo):
    run = sarif_doc(capsys, "evil.pkl")
    for rule in run["tool"]["driver"]["rules"]:
        help_ = rule["help"]
        assert help_["text"].strip() and help_["markdown"].strip()
        assert "Why it matters" in help_["text"] and "What to do" in help_["text"]
        assert f"`{rule['id']}`" in help_["markdown"] and "**What to do.**" in help_["markdown"]
        assert "helpUri" not in rule  # the package names no documentation site


def test_help_uri_points_at_the_rules_page_when_documentation_is_set():
    assert sarif.documentation_url() is None  # pyproject.toml has no [project.urls] Documentation
    doc = json.loads(sarif.render([], docs_url="https://docs.example.org/airlock"))
    jsonschema.validate(doc, SCHEMA)
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert rules and all(r["helpUri"] == f"https://docs.example.org/airlock/rules.md#{r['id']}" for r in rules)
    page = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text()
    assert all(f'<a id="{r["id"]}"></a>' in page for r in rules)


def test_documentation_url_is_read_from_the_package_metadata(monkeypatch, capsys, repo):
    """`[project.urls] Documentation` reaches the metadata as `Project-URL: Documentation, <url>`: a package
    built with one gets helpUri on every rule of `airlock scan --format sarif`, one without gets none."""
    import email.message
    import importlib.metadata

    def metadata_with(urls):
        message = email.message.Message()
        for url in urls:
            message["Project-URL"] = url
        return lambda name: message

    try:
        monkeypatch.setattr(importlib.metadata, "metadata", metadata_with(
            ["Source, https://example.org/src", "documentation , https://docs.example.org/airlock/"]))
        sarif.documentation_url.cache_clear()
        rules = sarif_doc(capsys, ".", expect=1)["tool"]["driver"]["rules"]
        assert all(r["helpUri"] == f"https://docs.example.org/airlock/rules.md#{r['id']}" for r in rules)
        monkeypatch.setattr(importlib.metadata, "metadata", metadata_with(["Source, https://example.org/src"]))
        sarif.documentation_url.cache_clear()
        assert not [r for r in sarif_doc(capsys, ".", expect=1)["tool"]["driver"]["rules"] if "helpUri" in r]
    finally:
        sarif.documentation_url.cache_clear()


def test_results_carry_stable_partial_fingerprints_and_the_run_an_automation_id(capsys, repo):
    first = sarif_doc(capsys, ".", expect=1)
    second = sarif_doc(capsys, ".", expect=1)
    prints = [r["partialFingerprints"][sarif.FINGERPRINT_KEY] for r in first["results"]]
    assert prints and len(set(prints)) == len(prints)
    assert prints == [r["partialFingerprints"][sarif.FINGERPRINT_KEY] for r in second["results"]]
    assert first["automationDetails"]["id"].startswith("airlock/scan/")


def test_uris_are_relative_to_the_nearest_git_folder(capsys, repo):
    run = sarif_doc(capsys, ".", "--include-info")
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == repo.as_uri() + "/"
    uris = {a["location"]["uri"] for a in run["artifacts"]}
    assert uris == {"models/evil.pkl", "models/sub/ok%3A%20data.pkl"}  # ':' encoded: never a scheme
    assert all(a["location"]["uriBaseId"] == "SRCROOT" for a in run["artifacts"])
    for result in run["results"]:
        location = result["locations"][0]["physicalLocation"]["artifactLocation"]
        assert location["uriBaseId"] == "SRCROOT" and location["uri"] in uris


def test_a_git_file_marks_a_worktree_root_too(capsys, tmp_path, monkeypatch):
    top = tmp_path / "worktree"
    (top / "deep" / "er").mkdir(parents=True)
    (top / ".git").write_text("gitdir: /somewhere/else\n")
    assert sarif.find_root(str(top / "deep" / "er")) == str(top)
    (top / "deep" / "m.pkl").write_bytes(EVIL)
    monkeypatch.chdir(top / "deep" / "er")
    run = sarif_doc(capsys, str(top / "deep" / "m.pkl"))
    assert run["artifacts"][0]["location"] == {"uri": "deep/m.pkl", "uriBaseId": "SRCROOT"}


def test_files_outside_the_root_get_absolute_file_uris(capsys, repo, tmp_path):
    outside = tmp_path / "elsewhere" / "x y.pkl"
    outside.parent.mkdir()
    outside.write_bytes(EVIL)
    run = sarif_doc(capsys, str(outside), "evil.pkl")
    locations = [a["location"] for a in run["artifacts"]]
    assert locations[0] == {"uri": outside.as_uri()} and locations[0]["uri"].startswith("file:///")
    assert locations[1] == {"uri": "models/evil.pkl", "uriBaseId": "SRCROOT"}


def test_sarif_root_option_and_the_current_folder_without_git(capsys, repo, tmp_path, monkeypatch):
    run = sarif_doc(capsys, "--sarif-root", str(repo / "models"), "evil.pkl")
    assert run["artifacts"][0]["location"]["uri"] == "evil.pkl"
    plain = tmp_path / "no-git-here"
    plain.mkdir()
    (plain / "a.pkl").write_bytes(EVIL)
    monkeypatch.chdir(plain)
    if sarif.find_root() == str(plain):  # (unless the temporary folder itself lies in a checkout)
        run = sarif_doc(capsys, "a.pkl")
        assert run["artifacts"][0]["location"] == {"uri": "a.pkl", "uriBaseId": "SRCROOT"}
        assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == plain.as_uri() + "/"


@pytest.mark.parametrize("command", ["scan", "verify"])
def test_a_sarif_root_that_is_not_a_folder_exits_2_naming_it(capsys, repo, tmp_path, command):
    """Regression: `--sarif-root /nonexistent` was accepted and every URI silently became absolute."""
    (tmp_path / "a-file").write_text("x")
    for bad, words in ((str(tmp_path / "nonexistent"), "no such folder"), (str(tmp_path / "a-file"), "not a folder")):
        with pytest.raises(SystemExit) as stop:
            main([command, "--format", "sarif", "--sarif-root", bad, "evil.pkl"])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "--sarif-root" in err and words in err and bad in err and "Traceback" not in err


def test_info_results_are_left_out_unless_include_info(capsys, repo):
    run = sarif_doc(capsys, "sub", expect=0)
    assert run["results"] == [] and len(run["artifacts"]) == 1  # the file is still listed
    run = sarif_doc(capsys, "sub", "--include-info", expect=0)
    assert {r["ruleId"] for r in run["results"]} == {"AIR010"} and run["results"][0]["level"] == "note"


def test_verify_takes_the_same_code_scanning_options(capsys, repo):
    (repo / "models" / "SHA256SUMS").write_text(f"{'0' * 64}  evil.pkl\n")
    code = main(["verify", "--format", "sarif", "--no-policy", "--manifest", "SHA256SUMS", "--sarif-root",
                 str(repo / "models"), "--include-info", "."])
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, SCHEMA)
    assert code == 1
    run = doc["runs"][0]
    assert run["automationDetails"]["id"].startswith("airlock/verify/")
    assert any(r["ruleId"] == "PRV001" for r in run["results"])
    assert all(not a["location"]["uri"].startswith("file:") for a in run["artifacts"])


def test_names_that_are_not_utf8_round_trip(capsys, repo):
    name = os.fsdecode(b"bad-\xff-name.pkl")
    (repo / "models" / name).write_bytes(EVIL)
    run = sarif_doc(capsys, name)
    assert run["artifacts"][0]["location"]["uri"] == "models/bad-%FF-name.pkl"
