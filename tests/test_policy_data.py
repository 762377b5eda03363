"""The policy data ships inside the package, every entry has a reason, and a scan refuses without it."""

import json
from importlib import resources

from airlock.core.cli import main
from airlock.core.pickle import policy


def test_policy_is_read_as_importlib_resources_reads_it():
    root = resources.files("airlock.resources") / "policy"
    for name in ("allowlist.json", "denylist.json", "torch_weights_only.json"):
        assert policy.read_policy_text(name) == (root / name).read_text("utf-8")


def test_policy_entries_have_reasons():
    root = resources.files("airlock.resources") / "policy"
    for name in ("allowlist.json", "denylist.json"):
        data = json.loads((root / name).read_text("utf-8"))
        assert data["entries"]
        for entry in data["entries"]:
            assert entry["reason"].strip(), entry


def test_allow_and_deny_do_not_overlap():
    p = policy.load_policy()
    for name in p.allow:
        assert p._deny_match(name) is None, name


def test_scan_refuses_when_policy_is_missing(monkeypatch, tmp_path, capsys):
    target = tmp_path / "x.pkl"
    target.write_bytes(b"N.")

    def missing(name):
        raise policy.PolicyMissing(f"policy data {name} is missing")

    monkeypatch.setattr(policy, "_read_json", missing)
    policy.load_policy.cache_clear()
    try:
        assert main(["scan", str(target)]) == 2
        assert "missing" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        policy.load_policy.cache_clear()
