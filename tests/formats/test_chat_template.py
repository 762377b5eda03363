"""Stand-alone chat templates (chat_template.jinja): recognised by content, analysed, never rendered."""


import pytest
from test_templates import BENIGN, HOSTILE

from airlock.core.findings import Severity
from airlock.core.formats import chat_template
from airlock.core.scan import scan_bytes, scan_file
from airlock.core.tree import TEMPLATE


def scan(text: str, name: str = "chat_template.jinja"):
    return scan_bytes(text.encode(), name)


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_templates_are_read_and_stay_clean(name):
    result = scan(BENIGN[name])
    assert result.format == "chat_template"
    # Clean: nothing above info. A real template that is not the catalogued copy of its family
    # (another version, the tool-use variant) says how it drifts, as an info note with the diff.
    assert all(f.rule == "TPL010" and f.severity == Severity.INFO and f.detail for f in result.findings), \
        [f.message for f in result.findings]
    (template,) = [n for n in result.root.walk() if n.kind == TEMPLATE]
    assert template.attrs["text"] == BENIGN[name] and template.length == len(BENIGN[name].encode())


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_escapes_in_a_jinja_file_are_findings(name):
    text, line, rule, needle = HOSTILE[name]
    # A real attack hides in a template that otherwise looks like one.
    result = scan("{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}\n" + text)
    assert result.format == "chat_template"
    hit = next(f for f in result.findings if f.rule == rule)
    assert f"line {line + 1}:" in hit.message and needle in hit.message


def test_content_decides_not_the_name(tmp_path):
    hostile = "{% for message in messages %}{{ cycler.__init__.__globals__.os.popen('id').read() }}{% endfor %}"
    path = tmp_path / "notes.txt"
    path.write_text(hostile)
    result = scan_file(path)
    try:
        assert result.format == "chat_template" and result.severity == Severity.CRITICAL
    finally:
        result.close()


@pytest.mark.parametrize("text", [
    "{{ name }} is not a chat template: no chat words",
    "plain text that mentions messages and bos_token but has no Jinja markers",
    '{"chat_template": "{% for message in messages %}{% endfor %}"}',  # JSON: the config reader's
])
def test_other_text_is_not_taken_for_a_template(text):
    assert scan(text, "file.txt").format != "chat_template"


def test_chat_words_after_long_macros_are_found(tmp_path):
    macros = "".join(f"{{% macro m{i}(x) %}}{{{{ x }}}}{{% endmacro %}}\n" for i in range(300))
    text = macros + "{% for message in messages %}{{ m1(message['content']) }}{% endfor %}"
    assert 4096 < len(text) < 64 * 1024
    path = tmp_path / "chat_template.jinja"
    path.write_text(text)
    result = scan_file(path)
    try:
        assert result.format == "chat_template" and result.findings == []
    finally:
        result.close()


def test_unparseable_template_is_medium():
    result = scan("{% for message in messages %}{{ message['content'] }")
    assert result.format == "chat_template"
    assert [f.rule for f in result.findings] == ["TPL004"] and result.severity == Severity.MEDIUM


def test_oversized_template_is_not_read(monkeypatch):
    monkeypatch.setattr(chat_template, "MAX_TEMPLATE_BYTES", 64)
    result = scan("{% for message in messages %}" + "x" * 100 + "{% endfor %}")
    assert result.format == "chat_template"
    assert any("budget" in f.message for f in result.findings)
