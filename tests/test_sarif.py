"""SARIF 2.1.0 output validates against the official schema and carries what code scanning needs."""

import json
from pathlib import Path

import jsonschema

from airlock.core.cli import main
from airlock.core.findings import all_rules

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
