"""The policy file: lookup, checked keys (exit 2 naming key, table and line), suppressions and
overrides that stay visible, allowed globals, budgets, fail-on, refused formats, the digest."""

import hashlib
import json
import os
import pickle
from pathlib import Path

import jsonschema
import pytest

from airlock.core.cli import main
from airlock.core.limits import DEFAULT_LIMITS
from airlock.core.policy_file import EMPTY, PolicyError, digest, find, load

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."
SCHEMA = json.loads((__import__("pathlib").Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json").read_text())


def custom_class_pickle():
    # REDUCE on a third-party class: medium "needs third-party code" unless the policy allows it.
    return (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x0bmypkg.model\x94\x8c\x06Config\x94\x93\x94"
            b"\x8c\x01x\x94\x85\x94R\x94.")


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The policy's folder (the current one); the files scanned sit below it, in models/ (a policy in the
    scanned folder itself came with the files and is never used)."""
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    (models / "evil.pkl").write_bytes(EVIL)
    (models / "custom.pkl").write_bytes(custom_class_pickle())
    (models / "ok.pkl").write_bytes(pickle.dumps([1, 2], protocol=4))
    return tmp_path


def scan(capsys, *argv):
    code, doc, _ = scan_err(capsys, *argv)
    return code, doc


def scan_err(capsys, *argv):
    code = main(["scan", "--format", "json", "--jobs", "1", *argv])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def by_name(doc):
    return {os.path.basename(f["path"]): f for f in doc["files"]}


@pytest.mark.parametrize(("text", "expect"), [
    ('fail-on = "high"\nfail_on = "low"\n', ["line 2", "'fail_on'", "the top level"]),
    ('fail-on = "severe"\n', ["line 1", "'fail-on'", "severity"]),
    ('[[suppress]]\nrule = "PKL006"\nreason = "x"\n\n[[suppress]]\nrule = "PKL001"\nwhy = "y"\n',
     ["line 7", "'why'", "[[suppress]] number 2"]),
    ('[[override]]\nrule = "AIR004"\nseverity = "info"\n', ["line 1", "lacks 'reason'"]),
    ('[[suppress]]\nrule = "PKL006"\nsha256 = "abc"\nreason = "x"\n', ["line 3", "'sha256'", "64 hex"]),
    ('refuse-formats = ["pickle", "exe"]\n', ["line 1", "unknown format 'exe'"]),
    ('[[allow-global]]\nname = "os.system"\nreason = "please"\n', ["denylist", "os.system"]),
    # A critical rule is waived only for the file reviewed (new-user trial: this passed every file).
    ('[[suppress]]\nrule = "PKL006"\nreason = "x"\n', ["airlock.toml:1", "PKL006, a critical rule", "sha256"]),
    ('[[override]]\nrule = "TPL001"\nseverity = "low"\nreason = "x"\n', ["critical rule", "path = "]),
    ("not toml at all = = \n", ["not valid TOML"]),
    # New-user trial: a budget below what the scanning process itself uses was a MemoryError traceback.
    ('memory-budget = "1KiB"\n', ["line 1", "'memory-budget'", "at least 64MiB"]),
    # A typo in a rule id would silently change nothing.
    ('[[override]]\nrule = "NOPE999"\nseverity = "low"\nreason = "x"\n', ["line 2", "no rule is called NOPE999"]),
])
def test_bad_policy_exits_2_naming_key_table_and_line(work, capsys, text, expect):
    (work / "airlock.toml").write_text(text)
    assert main(["scan", str(work / "models" / "ok.pkl")]) == 2
    err = capsys.readouterr().err
    assert "airlock.toml" in err and "Traceback" not in err
    for part in expect:
        assert part in err, err


def test_pyproject_table_and_lookup_from_the_current_folder_upward(work, capsys):
    (work / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.airlock]\nfail-on = "critical"\n'
                                         'unknown-thing = 1\n')
    sub = work / "deep" / "er"
    sub.mkdir(parents=True)
    os.chdir(sub)
    assert find() == str(work / "pyproject.toml")
    assert main(["scan", str(work / "models" / "ok.pkl")]) == 2
    assert "[tool.airlock]" in capsys.readouterr().err
    (work / "pyproject.toml").write_text('[tool.airlock]\nfail-on = "info"\n')
    assert main(["scan", str(work / "models" / "ok.pkl")]) == 1  # data-only is info: fails at info
    assert main(["scan", "--no-policy", str(work / "models" / "ok.pkl")]) == 0
    capsys.readouterr()


def test_the_scanned_folder_never_brings_its_own_policy(work, capsys, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("cwd")
    (work / "models" / "airlock.toml").write_text('[[suppress]]\nrule = "PKL006"\nreason = "trust me"\n')
    os.chdir(elsewhere)
    code, doc = scan(capsys, str(work / "models"))
    assert code == 1 and by_name(doc)["evil.pkl"]["severity"] == "critical"


@pytest.mark.parametrize("argument", [".", "evil.pkl", "./evil.pkl"])
def test_scanning_from_inside_the_folder_does_not_take_its_policy_either(work, capsys, argument):
    """Regression (new-user trial): `cd model && airlock scan .` used the model's own airlock.toml."""
    models = work / "models"
    (models / "airlock.toml").write_text('[[suppress]]\nrule = "PKL006"\nreason = "trust me"\n')
    os.chdir(models)
    code, doc, err = scan_err(capsys, argument)
    assert code == 1 and by_name(doc)["evil.pkl"]["severity"] == "critical" and "policy" not in doc
    assert f"not using the policy file {models / 'airlock.toml'}" in err and "--policy" in err
    assert find(scanned=[argument]) is None and find() == str(models / "airlock.toml")


def test_a_policy_passed_over_lets_the_one_above_it_apply(work, capsys):
    models = work / "models"
    (models / "pyproject.toml").write_text('[tool.airlock]\n[[tool.airlock.suppress]]\nrule = "PKL006"\n'
                                           'reason = "trust me"\n')
    (work / "airlock.toml").write_text('fail-on = "critical"\n')
    os.chdir(models)
    code, doc, err = scan_err(capsys, ".")
    assert code == 1 and doc["policy"]["path"] == str(work / "airlock.toml")
    assert "not using the policy file" in err


def test_a_policy_named_on_the_command_line_is_used_wherever_it_is(work, capsys):
    models = work / "models"
    (models / "airlock.toml").write_text('[[suppress]]\nrule = "PKL006"\npath = "evil.pkl"\nreason = "ours"\n')
    os.chdir(models)
    code, doc, err = scan_err(capsys, "--policy", "airlock.toml", ".")
    assert code == 0 and doc["policy"]["path"].endswith("airlock.toml")
    assert "not using" not in err


def test_suppression_stays_in_the_report_marked_and_does_not_count(work, capsys):
    sha = hashlib.sha256(EVIL).hexdigest()
    (work / "airlock.toml").write_text(
        f'[[suppress]]\nrule = "PKL006"\nsha256 = "{sha}"\nreason = "reviewed in TICKET-1"\n'
        '[[suppress]]\nrule = "AIR010"\npath = "ok.*"\nreason = "data-only is fine"\n')
    code, doc = scan(capsys, str(work / "models"))
    assert code == 0
    evil = by_name(doc)["evil.pkl"]
    assert evil["sha256"] == sha  # a policy entry keyed by sha256 makes the scan hash
    finding = next(f for f in evil["findings"] if f["rule"] == "PKL006")
    assert finding["suppressed_by"] == {"rule": "PKL006", "sha256": sha, "reason": "reviewed in TICKET-1",
                                        "where": "airlock.toml:1"}
    assert finding["severity"] == "critical"  # unchanged: suppressed, not re-rated
    assert evil["severity"] == "none"
    assert doc["policy"]["path"] == str(work / "airlock.toml") and len(doc["policy"]["digest"]) == 64
    assert by_name(doc)["ok.pkl"]["findings"][0]["suppressed_by"]["where"] == "airlock.toml:5"
    # Another file with the same rule but other bytes is not covered by the sha256 baseline.
    (work / "models" / "evil2.pkl").write_bytes(EVIL + b"\n")
    code, doc = scan(capsys, str(work / "models"))
    assert code == 1 and by_name(doc)["evil2.pkl"]["severity"] == "critical"
    # Text and SARIF show it too.
    assert main(["scan", "--color", "never", str(work / "models" / "evil.pkl")]) == 0
    assert "SUPPRESSED by policy airlock.toml:1: reviewed in TICKET-1" in capsys.readouterr().out
    assert main(["scan", "--format", "sarif", str(work / "models" / "evil.pkl")]) == 0
    sarif = json.loads(capsys.readouterr().out)
    jsonschema.validate(sarif, SCHEMA)
    result = next(r for r in sarif["runs"][0]["results"] if r["ruleId"] == "PKL006")
    assert result["suppressions"][0]["kind"] == "external"
    assert "TICKET-1" in result["suppressions"][0]["justification"]


def test_override_says_what_it_was(work, capsys):
    (work / "airlock.toml").write_text('[[override]]\nrule = "PKL005"\nseverity = "low"\npath = "custom.pkl"\n'
                                       'reason = "our own class"\n')
    code, doc = scan(capsys, str(work / "models" / "custom.pkl"))
    entry = by_name(doc)["custom.pkl"]
    changed = [f for f in entry["findings"] if "overridden_by" in f]
    assert changed and changed[0]["severity"] == "low" and changed[0]["overridden_by"]["was"] == "medium"
    assert entry["severity"] == "low" and code == 0


def test_allowed_global_with_its_reason(work, capsys):
    _, doc = scan(capsys, "--no-policy", str(work / "models" / "custom.pkl"))
    assert by_name(doc)["custom.pkl"]["severity"] == "medium"
    (work / "airlock.toml").write_text('[[allow-global]]\nname = "mypkg.model.Config"\nreason = "our config"\n')
    _, doc = scan(capsys, str(work / "models" / "custom.pkl"))
    assert by_name(doc)["custom.pkl"]["severity"] in ("none", "info")
    from airlock.core.pickle.policy import load_policy

    assert load_policy().allow["mypkg.model.Config"] == "allowed by policy airlock.toml:1: our config"
    del load_policy().allow["mypkg.model.Config"]  # this process's allowlist is shared by later tests


def test_refused_format_budgets_and_fail_on(work, capsys):
    (work / "airlock.toml").write_text('refuse-formats = ["pickle"]\nfail-on = "critical"\nmax-decompressed = "1MiB"\n'
                                       'timeout = 5\n')
    policy = load(str(work / "airlock.toml"))
    limits = policy.limits(DEFAULT_LIMITS)
    assert limits.max_decompressed_bytes == 2**20 and limits.time_budget_s == 5.0
    code, doc = scan(capsys, str(work / "models" / "ok.pkl"))
    finding = next(f for f in by_name(doc)["ok.pkl"]["findings"] if f["rule"] == "PRV011")
    assert finding["severity"] == "high" and code == 0  # fail-on critical
    assert main(["scan", "--fail-on", "high", str(work / "models" / "ok.pkl")]) == 1  # the command line wins
    capsys.readouterr()


def test_a_refused_format_inside_a_container_is_refused_too(work, capsys):
    """Regression (new-user trial): refuse-formats = ["pickle"] passed the same pickle inside a zip, a tar
    and a .pkl.gz (members are judged like files)."""
    import gzip
    import io
    import tarfile
    import zipfile

    data = (work / "models" / "ok.pkl").read_bytes()
    (work / "models" / "ok.pkl").unlink()
    with zipfile.ZipFile(work / "models" / "in.zip", "w") as z:
        z.writestr("inner/w.pkl", data)
    with tarfile.open(work / "models" / "in.tar", "w") as t:
        info = tarfile.TarInfo("w.pkl")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    (work / "models" / "w.pkl.gz").write_bytes(gzip.compress(data))
    (work / "airlock.toml").write_text('refuse-formats = ["pickle"]\n')
    code, doc = scan(capsys, str(work / "models"))
    for name in ("in.zip", "in.tar", "w.pkl.gz"):
        entry = by_name(doc)[name]
        assert "pickle" in entry["member_formats"], name
        refused = [f for f in entry["findings"] if f["rule"] == "PRV011"]
        assert refused and "member of format pickle" in refused[0]["message"] and entry["severity"] == "high"
    assert code == 1


def test_policy_digest_is_canonical(work):
    a = work / "a.toml"
    b = work / "b.toml"
    a.write_text('fail-on = "high"\nrequire-signature = true\n')
    b.write_text('# same policy, other layout\nrequire-signature = true\n\nfail-on = "HIGH"\n')
    assert digest(load(str(a))) == digest(load(str(b)))
    assert digest(load(str(a))) != digest(EMPTY)
    with pytest.raises(PolicyError):
        load(str(work / "missing.toml"))


def test_policy_digest_covers_every_file_of_the_builtin_policy_data(work, monkeypatch):
    """Regression: the digest read only the pickle allow/deny lists and torch's weights-only set, so a
    changed Hydra, skops or TensorFlow list (which change verdicts) left locks and approvals matching."""
    import airlock.resources
    from airlock.core import policy_file
    from airlock.core.pickle import policy as builtin_policy

    folder = Path(airlock.resources.__file__).parent / "policy"
    assert sorted(policy_file.BUILTIN_DATA) == sorted(p.name for p in folder.iterdir() if p.suffix == ".json")
    before = digest(EMPTY)
    real = builtin_policy.read_policy_text
    for name in policy_file.BUILTIN_DATA:
        def changed(wanted, name=name):
            text = real(wanted)
            return text.replace("{", '{"_changed": 1, ', 1) if wanted == name else text
        monkeypatch.setattr(builtin_policy, "read_policy_text", changed)
        assert digest(EMPTY) != before, name
    monkeypatch.setattr(builtin_policy, "read_policy_text", real)
    assert digest(EMPTY) == before
