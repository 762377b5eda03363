"""Files a loader runs by name and folder: Python shipped with a model (MF003 medium, MF001 high when a
config names it), and chat templates found by name (chat_template.jinja, *.jinja next to a model)."""

import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
from fixtures import model_folder_code_files as F

from airlock.core.cli import main
from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes, scan_file


def _write_tree(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


def _scan(path):
    result = scan_file(path)
    result.close()
    return result


def _rules(result):
    return sorted({f.rule for f in result.findings})


@pytest.fixture
def remote_code(tmp_path):
    return _write_tree(tmp_path / "repo", {rel: data for rel, (data, _) in F.remote_code_folder().items()})


@pytest.mark.parametrize("rel", sorted(F.remote_code_folder()))
def test_every_file_of_a_remote_code_folder_gets_its_severity(remote_code, rel):
    _, severity = F.remote_code_folder()[rel]
    result = _scan(remote_code / rel)
    # What the folder makes of the file (code's own rules may add more: a Python-source format's).
    ours = max((f.severity for f in result.findings if f.rule.startswith(("MF", "TPL"))), default=None)
    assert ours == severity, [(f.rule, f.message) for f in result.findings]
    assert result.severity >= severity


def test_code_a_config_names_is_high_and_says_which_config(remote_code):
    result = _scan(remote_code / "modeling_mine.py")
    finding = next(f for f in result.findings if f.rule == "MF001")
    assert finding.severity == Severity.HIGH
    assert "config.json auto_map.AutoModelForCausalLM (modeling_mine.MineModel) names this file" in finding.message
    assert "trust_remote_code=True" in finding.message and "config.json with model_type and auto_map" in finding.message


def test_shipped_code_nobody_names_is_medium_and_says_who_runs_it(remote_code):
    helper = next(f for f in _scan(remote_code / "rotary.py").findings if f.rule == "MF003")
    assert helper.severity == Severity.MEDIUM and "trust_remote_code=True" in helper.message
    generate = next(f for f in _scan(remote_code / "custom_generate" / "generate.py").findings
                    if f.rule == "MF003")
    assert "custom_generate/generate.py" in generate.message and "in place of generate()" in generate.message


@pytest.mark.parametrize(("config_name", "data", "rel"), [
    ("generation_config.json", {"auto_map": {"generate": "custom_generate.generate.generate"}},
     "custom_generate/generate.py"),
    ("config.json", {"custom_pipelines": {"text-generation": {"impl": "pipe.MinePipeline"}}}, "pipe.py"),
    ("tokenizer_config.json", {"auto_map": {"AutoTokenizer": ["tokenization_mine.MineTokenizer", None]}},
     "tokenization_mine.py"),
])
def test_other_configs_that_name_code_make_it_high(tmp_path, config_name, data, rel):
    files = {"config.json": json.dumps({"model_type": "mine"}), rel: "X = 1\n"}
    files[config_name] = json.dumps({**json.loads(files.get(config_name, "{}")), **data})
    _write_tree(tmp_path, files)
    result = _scan(tmp_path / rel)
    # Only the loader context is asserted: how the code itself reads depends on the Python-source format.
    (finding,) = [f for f in result.findings if f.rule.startswith("MF")]
    assert finding.rule == "MF001" and finding.message.startswith(config_name)


def test_hub_and_handler_code(tmp_path):
    _write_tree(tmp_path, {rel: data for rel, (data, _) in F.hub_folder().items()})
    hub = _scan(tmp_path / "hubconf.py").findings
    assert [f.rule for f in hub if f.rule.startswith("MF")] == ["MF003"]
    assert "torch.hub.load runs it" in hub[-1].message
    handler = next(f for f in _scan(tmp_path / "handler.py").findings if f.rule == "MF003")
    assert "Inference Endpoints" in handler.message and "hubconf.py" in handler.message


def test_weights_at_the_top_level_make_a_model_folder(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "inference.py").write_text("print('hello')\n")
    finding = next(f for f in _scan(tmp_path / "inference.py").findings if f.rule == "MF003")
    assert "weights at its top level (model.safetensors)" in finding.message


@pytest.mark.parametrize("files", [
    {"utils.py": "X = 1\n"},  # a plain source folder
    {"config.json": json.dumps({"hidden_size": 8}), "utils.py": "X = 1\n"},  # a config, but not a model's
    {"config.json": json.dumps({"model_type": "x"}), "a/b/c/deep.py": "X = 1\n"},  # too far below the model
    # a repository with a checkpoint at its root: its src/ is the user's own code, not the model's
    {"model.pkl": b"\x80\x04K\x01.", "src/train.py": "X = 1\n"},
])
def test_python_outside_model_folders_gets_no_model_finding(tmp_path, files):
    _write_tree(tmp_path, files)
    rel = next(r for r in files if r.endswith(".py"))
    assert not [f for f in _scan(tmp_path / rel).findings if f.rule.startswith("MF")]


def test_the_check_runs_whatever_format_reads_the_file(tmp_path):
    # A "modeling" file that is really a pickle: the pickle is judged, and the loader context is added.
    payload = b"\x80\x02cos\nsystem\nX\x12\x00\x00\x00echo AIRLOCK_MARKER\x85R."
    _write_tree(tmp_path, {"config.json": json.dumps(F.CONFIG), "modeling_mine.py": payload})
    result = _scan(tmp_path / "modeling_mine.py")
    assert result.format == "pickle" and result.severity == Severity.CRITICAL
    assert "MF001" in _rules(result)


def test_folder_scan_reports_each_file_once_with_its_severity(remote_code, capsys):
    assert main(["scan", "--format", "json", str(remote_code)]) == 1
    report = json.loads(capsys.readouterr().out)
    got = {Path(f["path"]).relative_to(remote_code).as_posix(): Severity.parse(f["severity"])
           for f in report["files"]}
    assert set(got) == set(F.remote_code_folder())
    assert all(got[rel] >= sev for rel, (_, sev) in F.remote_code_folder().items()), got


# Chat templates by name.

def test_chat_template_jinja_is_analysed_past_the_first_64_kib(remote_code):
    result = _scan(remote_code / "chat_template.jinja")
    assert result.format == "chat_template"
    escape = next(f for f in result.findings if f.rule == "TPL001")
    assert escape.severity == Severity.CRITICAL and "cycler.__init__.__globals__" in escape.message


def test_by_name_everywhere_but_other_jinja_only_next_to_a_model(tmp_path, remote_code):
    assert _scan(remote_code / "additional_chat_templates" / "tool_use.jinja").severity == Severity.CRITICAL
    _write_tree(tmp_path / "notes", {"page.jinja": F.FILLER + F.ESCAPE, "chat_template.jinja": F.FILLER + F.ESCAPE})
    page = _scan(tmp_path / "notes" / "page.jinja")  # a site template, not a model's: read as what it is
    assert page.format != "chat_template" and not any(f.rule.startswith("TPL") for f in page.findings)
    assert _scan(tmp_path / "notes" / "chat_template.jinja").severity == Severity.CRITICAL
    assert scan_bytes((F.FILLER + F.ESCAPE).encode(), "chat_template.jinja").severity == Severity.CRITICAL


def test_plain_text_template_by_name_is_clean(tmp_path):
    _write_tree(tmp_path, {"chat_template.jinja": "You are a helpful assistant."})
    result = _scan(tmp_path / "chat_template.jinja")
    assert result.format == "chat_template" and result.findings == []


def test_a_template_claimed_by_another_format_is_still_analysed(tmp_path):
    # Starts like JSON, so the JSON reader claims it (and fails); transformers still renders it.
    text = '{"note": 1} ' + F.ESCAPE
    _write_tree(tmp_path, {"chat_template.jinja": text})
    result = _scan(tmp_path / "chat_template.jinja")
    assert result.format == "json"
    assert any(f.rule == "TPL001" for f in result.findings)
    # A pickle named like a template keeps its verdict, and is also looked at as a template.
    (tmp_path / "chat_template.jinja").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    result = _scan(tmp_path / "chat_template.jinja")
    assert result.format == "pickle" and any(n.kind == "template" for n in result.root.walk())


def test_template_by_name_inside_an_archive():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model/chat_template.jinja", F.FILLER + F.ESCAPE)
    result = scan_bytes(buf.getvalue(), "bundle.zip")
    assert any(f.rule == "TPL001" and f.severity == Severity.CRITICAL for f in result.findings)


# Python code inside archives (issue 13: every container a loader opens, members judged like files). A *.py
# member is never the user's own code: modelaudit flags a handler.py running os.system inside a generic tar
# ("Python Archive Member Security"); Airlock read it clean.

HANDLER = b"import os\nos.system('echo hidden')\n"


def _archives():
    from fixtures import archive_files as af

    mar = io.BytesIO()  # a TorchServe .mar: a zip with its manifest, the handler and the weights
    with zipfile.ZipFile(mar, "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", '{"model": {"handler": "handler.py", "serializedFile": "model.pt"}}')
        zf.writestr("handler.py", HANDLER)
        zf.writestr("model.pt", af.torch_zip_bytes())
    return {
        "bundle.tar": af.tar({"model/model.safetensors": b"", "model/handler.py": HANDLER}),
        "bundle.tar.gz": af.tar({"model/config.json": b'{"model_type": "bert"}', "model/modeling_x.py": HANDLER},
                                "w:gz"),
        "model.mar": mar.getvalue(),
        "hub.7z": af.sevenz({"hubconf.py": b"dependencies = []\n", "model.pt": af.torch_zip_bytes()}),
        "only_code.tar": af.tar({"handler.py": HANDLER}),
    }


@pytest.mark.parametrize("name", ["bundle.tar", "bundle.tar.gz", "model.mar", "hub.7z", "only_code.tar"])
def test_python_members_of_an_archive_are_shipped_code_never_clean(name):
    result = scan_bytes(_archives()[name], name)
    try:
        shipped = [f for f in result.findings if f.rule == "MF003"]
        assert len(shipped) == 1, [(f.rule, f.message) for f in result.findings]
        assert shipped[0].severity == Severity.MEDIUM and shipped[0].member.endswith(".py")
        assert "shipped inside this archive" in shipped[0].message
        if name != "only_code.tar":
            assert " beside " in shipped[0].message  # names the model file it ships with
        assert result.severity >= Severity.MEDIUM
    finally:
        result.close()


def test_the_code_of_an_archive_member_is_still_judged_by_the_code_rules():
    from fixtures import archive_files as af

    loader = b"import torch\nstate = torch.load('weights.bin')\n"
    result = scan_bytes(af.tar({"model/handler.py": loader, "model/weights.bin": af.torch_zip_bytes()}), "b.tar")
    try:
        assert {"MF003", "PY101"} <= {f.rule for f in result.findings}
        assert result.severity == Severity.HIGH
    finally:
        result.close()


def test_any_jinja_inside_an_archive_is_analysed_past_the_first_64_kib():
    """transformers renders additional_chat_templates/*.jinja by name; inside a model archive they are
    extracted beside the model, so the template is analysed whatever its first 64 KiB hold."""
    from fixtures import archive_files as af

    data = af.tar({"model/config.json": b'{"model_type": "llama"}',
                   "model/additional_chat_templates/tool_use.jinja": (F.FILLER + F.ESCAPE).encode()}, "w:gz")
    result = scan_bytes(data, "model.tar.gz")
    try:
        assert any(f.rule == "TPL001" and f.severity == Severity.CRITICAL for f in result.findings), \
            [(f.rule, f.message) for f in result.findings]
    finally:
        result.close()
