"""Hydra/OmegaConf configs: every `_target_` judged like a pickle global, YAML composed with the safe
loader only (a python tag is a tag, never an object). Configs are dumped with PyYAML's own emitter."""

import json

import pytest
import yaml

from airlock.core.findings import Severity
from airlock.core.formats import yaml_config
from airlock.core.scan import scan_bytes


def scan(data, name="config.yaml"):
    result = scan_bytes(data, name)
    result.close()
    return result


def dump(config):
    return yaml.safe_dump(config, sort_keys=False).encode()


def by_rule(result):
    out = {}
    for f in result.findings:
        out.setdefault(f.rule, []).append(f)
    return out


@pytest.mark.parametrize("target,rule,severity", [
    ("os.system", "HYD001", Severity.CRITICAL),
    ("subprocess.Popen", "HYD001", Severity.CRITICAL),
    ("builtins.exec", "HYD001", Severity.CRITICAL),
    ("torch.load", "HYD001", Severity.CRITICAL),
    ("logging.os.system", "HYD001", Severity.CRITICAL),  # an attribute walk, as Hydra's _locate does
    ("hydra.utils.call", "HYD002", Severity.HIGH),     # reaches whatever its arguments name
    ("mypkg.build_model", "HYD002", Severity.HIGH),    # unknown function, called with the config
    ("mypkg.models.Net", "HYD003", Severity.MEDIUM),   # unknown class
    ("torch.optim.AdamW", None, Severity.NONE),        # allowlisted with a reason
    ("nemo.collections.asr.modules.ConformerEncoder", None, Severity.NONE),
    ("collections.OrderedDict", None, Severity.NONE),  # the pickle allowlist applies too
])
def test_targets_are_judged_with_the_callable_policy(target, rule, severity):
    data = dump({"trainer": {"max_epochs": 3}, "model": {"head": {"_target_": target, "dim": 4}}})
    result = scan(data)
    assert result.format == "yaml"
    assert result.severity == severity, [(f.rule, f.message) for f in result.findings]
    if rule is not None:
        hit = by_rule(result)[rule][0]
        assert target in hit.message and "model.head" in hit.message
        assert data[hit.offset:hit.offset + len(target)].decode() == target  # points at the text


def test_nested_args_partial_and_lists_are_walked():
    config = {"pipeline": [{"_target_": "mypkg.Step", "_args_": [{"_target_": "os.popen", "_args_": ["id"]}]}],
              "optimizer": {"_target_": "mypkg.make_opt", "_partial_": True}}
    result = scan(dump(config))
    rules = by_rule(result)
    assert "os.popen" in rules["HYD001"][0].message and "pipeline[0]._args_[0]" in rules["HYD001"][0].message
    assert "functools.partial" in rules["HYD002"][0].message
    assert "HYD003" in rules


def test_interpolated_target_and_eval_resolver_are_high():
    data = b"model:\n  _target_: ${oc.env:MODEL_CLASS}\nsteps: 2\nlr: ${eval:'__import__(\"os\").system(\"id\")'}\n"
    rules = by_rule(scan(data))
    assert "interpolation" in rules["HYD004"][0].message
    assert "`eval` resolver" in rules["HYD002"][0].message


def test_python_tags_are_tags_never_objects():
    data = (b"a: 1\nhook: !!python/object/apply:os.system [\"echo AIRLOCK_MARKER\"]\n"
            b"betas: !!python/tuple [0.9, 0.99]\nns: !!python/object:argparse.Namespace {lr: 1}\n"
            b"fn: !!python/name:mypkg.helper ''\nnew: !!python/object/new:mypkg.Thing []\n")
    result = scan(data, "hparams.yaml")
    rules = by_rule(result)
    assert "os.system" in rules["HYD001"][0].message
    assert any("mypkg.Thing" in f.message for f in rules["HYD005"])       # called: high
    assert any("mypkg.helper" in f.message for f in rules["HYD003"])      # only named: medium
    assert not any("tuple" in f.message or "Namespace" in f.message for f in result.findings)


def test_nemo_target_key_only_in_model_config():
    data = b"target: mypkg.models.Evil\nname: x\n"
    assert any(f.rule == "HYD003" for f in scan(data, "model_config.yaml").findings)
    # `target` is a plain key elsewhere: known-inert data
    assert [(f.rule, f.severity) for f in scan(data, "other.yaml").findings] == [("FC002", Severity.INFO)]


def test_json_config_with_targets():
    data = json.dumps({"model": {"_target_": "builtins.eval", "_args_": ["1"]}, "lr": 0.1}).encode()
    result = scan(data, "config.json")
    assert result.format == "yaml" and result.root.attrs["syntax"] == "json"
    assert result.severity == Severity.CRITICAL
    plain = scan(json.dumps({"model_type": "bert"}).encode(), "config.json")
    assert plain.format == "json"  # no target: the Hugging Face config reader keeps it


def test_text_that_is_not_a_yaml_mapping_stays_text():
    for data in (b"# Model card\n\nLicense: MIT\n", b"Note: read me\nthis is prose, not a config\n"):
        result = scan(data, "README.md")
        assert result.format == "text" and result.severity == Severity.INFO


def test_yaml_named_text_is_read_as_a_config_whatever_its_first_line():
    result = scan(b"- _target_: os.system\n  command: id\n", "list.yaml")
    assert result.severity == Severity.CRITICAL


def test_billion_laughs_is_walked_once_per_node():
    lines = ["a0: &a0 {_target_: mypkg.Thing}"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    result = scan("\n".join(lines).encode())
    assert len([f for f in result.findings if f.rule == "HYD003"]) == 1


def test_deep_nesting_is_a_finding_not_a_crash():
    data = b"a: " + b"[" * 50_000 + b"]" * 50_000 + b"\nb: 1\n"
    result = scan(data)
    assert "AIR001" not in {f.rule for f in result.findings}
    assert result.severity >= Severity.HIGH or result.format == "text"


def test_oversized_config_is_not_inspected():
    data = b"a: 1\nb: 2\n" + b"c: x\n" * (yaml_config.MAX_CONFIG_BYTES // 5 + 10)
    result = scan(data)
    assert any(f.rule == "AIR005" for f in result.findings)
    assert result.severity == Severity.MEDIUM


def test_malformed_yaml_after_a_document_is_reported():
    data = b"a: 1\nb: {_target_: os.system}\n---\nc: [unclosed\n"
    result = scan(data)
    rules = by_rule(result)
    assert "HYD001" in rules and "AIR005" in rules


def test_a_model_card_front_matter_is_known_inert_info():
    """A README.md with YAML front matter (every Hugging Face model card) is said inert, never silent."""
    card = b"---\nlicense: apache-2.0\ntags:\n- text-generation\n---\n# My model\n"
    result = scan(card, "README.md")
    assert [(f.rule, f.severity) for f in result.findings] == [("FC002", Severity.INFO)]
