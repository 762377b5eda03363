"""Hugging Face-style folders: auto_map remote code, custom pipelines, chat templates in JSON configs."""

import json

import pytest

from airlock.core.cli import main
from airlock.core.findings import Severity
from airlock.core.formats import model_folder
from airlock.core.scan import scan_bytes, scan_file

LLAMA3_LIKE = (
    "{{- bos_token }}{%- set ns = namespace(system='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] %}"
    "{%- else %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
ESCAPE = "{{ cycler.__init__.__globals__.os.popen('echo AIRLOCK_MARKER').read() }}"


def _write(folder, name, data):
    path = folder / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _scan(path):
    result = scan_file(path)
    result.close()
    return result


def _rules(result):
    return sorted(f.rule for f in result.findings)


def test_auto_map_next_to_python_files_is_high_on_that_config(tmp_path, capsys):
    _write(tmp_path, "config.json", {"model_type": "mine", "architectures": ["MyModel"],
                                     "auto_map": {"AutoConfig": "configuration_mine.MyConfig",
                                                  "AutoModelForCausalLM": "modeling_mine.MyModel"}})
    (tmp_path / "modeling_mine.py").write_text("import os\n")
    (tmp_path / "configuration_mine.py").write_text("\n")
    result = _scan(tmp_path / "config.json")
    assert result.format == "json" and _rules(result) == ["MF001"] and result.severity == Severity.HIGH
    message = result.findings[0].message
    assert "trust_remote_code=True" in message and "modeling_mine.py" in message
    assert result.root.attrs["model_type"] == "mine"
    # The folder scan puts the finding on config.json's entry and nowhere else.
    assert main(["scan", "--format", "json", str(tmp_path)]) == 1
    files = {f["path"].rsplit("/", 1)[-1]: f for f in json.loads(capsys.readouterr().out)["files"]}
    assert files["config.json"]["severity"] == "high"
    assert [f["rule"] for f in files["config.json"]["findings"]] == ["MF001"]
    # Read by the code checks (issue 22): the file itself has no risky call; config.json names it, so the
    # folder check (model_folder_context) makes it high on its own entry too.
    assert files["modeling_mine.py"]["format"] == "python"
    assert files["modeling_mine.py"]["severity"] == "high"
    assert [f["rule"] for f in files["modeling_mine.py"]["findings"]] == ["MF001"]


def test_auto_map_without_the_code_is_medium(tmp_path):
    _write(tmp_path, "config.json", {"auto_map": {"AutoModel": "modeling_x.XModel"}})
    result = _scan(tmp_path / "config.json")
    assert _rules(result) == ["MF002"] and result.severity == Severity.MEDIUM
    assert "modeling_x.py" in result.findings[0].message


def test_code_from_another_repository_is_high(tmp_path):
    _write(tmp_path, "tokenizer_config.json",
           {"auto_map": {"AutoTokenizer": ["someone/other-repo--tokenization_x.XTokenizer", None]}})
    result = _scan(tmp_path / "tokenizer_config.json")
    assert _rules(result) == ["MF001"] and "someone/other-repo" in result.findings[0].message


def test_custom_pipelines_count_as_remote_code(tmp_path):
    _write(tmp_path, "config.json", {"custom_pipelines": {"text-classification": {"impl": "pipe.MyPipeline"}}})
    (tmp_path / "pipe.py").write_text("\n")
    assert _rules(_scan(tmp_path / "config.json")) == ["MF001"]


def test_config_inside_a_container_cannot_see_the_folder():
    result = scan_bytes(json.dumps({"auto_map": {"AutoModel": "m.X"}}).encode(), "config.json")
    assert _rules(result) == ["MF002"] and "container" in result.findings[0].message


def test_plain_configs_are_known_inert_info(tmp_path):
    """Issue 13: JSON without templates or code references is known-inert content, info (FC002)."""
    _write(tmp_path, "config.json", {"model_type": "llama", "hidden_size": 4096, "architectures": ["LlamaForCausalLM"]})
    (tmp_path / "utils.py").write_text("\n")  # a .py file alone does not make a config run code
    result = _scan(tmp_path / "config.json")
    assert [f.rule for f in result.findings] == ["FC002"] and result.root.child_count == 3
    assert result.severity == Severity.INFO and result.inspected == "full"
    assert "without templates or code references" in result.findings[0].message


def test_chat_templates_in_tokenizer_config(tmp_path):
    _write(tmp_path, "tokenizer_config.json", {"chat_template": LLAMA3_LIKE, "bos_token": "<s>"})
    # a Llama-3-like template that is not the catalogued one: its drift is an info note, nothing more
    assert _rules(_scan(tmp_path / "tokenizer_config.json")) == ["TPL010"]
    _write(tmp_path, "tokenizer_config.json", {"chat_template": LLAMA3_LIKE + ESCAPE})
    result = _scan(tmp_path / "tokenizer_config.json")
    assert _rules(result) == ["TPL001", "TPL010"] and result.severity == Severity.CRITICAL
    assert result.findings[0].node.kind == "template"


def test_named_chat_templates_are_each_checked(tmp_path):
    _write(tmp_path, "tokenizer_config.json", {"chat_template": [
        {"name": "default", "template": LLAMA3_LIKE}, {"name": "tool_use", "template": ESCAPE}]})
    result = _scan(tmp_path / "tokenizer_config.json")
    assert _rules(result) == ["TPL001", "TPL010"]  # the escape, and the default template's drift (info)
    assert next(f for f in result.findings if f.rule == "TPL001").node.label == "chat_template.tool_use"
    _write(tmp_path, "chat_template.json", {"chat_template": ESCAPE})
    assert _rules(_scan(tmp_path / "chat_template.json")) == ["TPL001"]


def test_malformed_configs(tmp_path):
    _write(tmp_path, "config.json", '{"model_type": "x",')
    result = _scan(tmp_path / "config.json")
    assert _rules(result) == ["AIR002"] and result.severity == Severity.HIGH
    _write(tmp_path, "notes.json", '{"not really": json')
    assert _scan(tmp_path / "notes.json").severity == Severity.INFO


def test_more_specific_json_formats_win(tmp_path):
    _write(tmp_path, "model.safetensors.index.json", {"metadata": {}, "weight_map": {}})
    assert _scan(tmp_path / "model.safetensors.index.json").format != "json"


def test_many_keys_are_paged():
    data = json.dumps({f"k{i}": i for i in range(5000)}).encode()
    result = scan_bytes(data, "vocab.json")
    group = result.root.children()[0]
    assert group.is_lazy and group.child_count == 5000 and group.child_at(4999).attrs["key"] == "k4999"


@pytest.mark.parametrize(("head", "score"), [(b'{"a": 1}', 20), (b'\xef\xbb\xbf  {\n "a"', 20), (b"{}", 20),
                                              (b"[1, 2]", 0), (b"{{ x }}", 0), (b"\x80\x04", 0), (b"", 0)])
def test_sniff_is_low_and_content_based(head, score):
    assert model_folder.sniff(head, len(head)) == score
