"""`airlock scan --format cyclonedx`: a CycloneDX 1.6 ML-BOM that the library's own schema accepts."""

import json
import pickle

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from provenance.hf_fake import COMMIT_2, build

from airlock.core.cli import main

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."


def test_ml_bom_validates_offline_and_carries_hashes_findings_and_provenance(tmp_path, capsys):
    (tmp_path / "evil.pkl").write_bytes(EVIL)
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "README.md").write_text("# A model\n\nWeights for a demo.\n")
    (tmp_path / "config.yaml").write_text("trainer:\n  max_epochs: 3\n")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    paths = build(tmp_path / "hub")
    code = main(["scan", "--format", "cyclonedx", "--hash", "--no-policy", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(out)
    assert errors is None, errors
    bom = json.loads(out)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    components = {c["name"]: c for c in bom["components"]}
    evil = components[str(tmp_path / "evil.pkl")]
    assert evil["type"] == "machine-learning-model"
    assert evil["hashes"][0]["alg"] == "SHA-256" and len(evil["hashes"][0]["content"]) == 64
    props = [(p["name"], p["value"]) for p in evil["properties"]]
    assert ("airlock:verdict", "critical") in props and ("airlock:format", "pickle") in props
    assert any(n == "airlock:finding" and "PKL006" in v for n, v in props)
    weights = components[str(paths["weights2"])]
    assert weights["type"] == "machine-learning-model"
    assert weights["group"] == "org/model" and weights["version"] == COMMIT_2
    config = components[str(paths["config2"])]
    assert config["type"] == "file"
    # New-user trial: a README, a YAML config and a SHA256SUMS were "machine-learning-model" components;
    # the BOM now decides as the approvals gate does (an empty file under a model's name stays a model).
    assert components[str(tmp_path / "README.md")]["type"] == "file"
    assert components[str(tmp_path / "config.yaml")]["type"] == "file"
    assert components[str(tmp_path / "empty.safetensors")]["type"] == "machine-learning-model"
