"""The template view marks only where a finding points, and wraps long lines. Templates are never rendered."""


from PySide6.QtWidgets import QPlainTextEdit
from test_templates import BENIGN, DEEPSEEK  # real templates: Llama 3.1, Qwen, DeepSeek…

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes, scan_file
from airlock.core.tree import TEMPLATE, Node
from airlock.gui.demo import gguf_bytes
from airlock.gui.details.template import TemplateView, template_marks


def template_node(result):
    return next(n for n in result.root.walk() if n.kind == TEMPLATE)


def shown(qtbot, node):
    view = TemplateView()
    qtbot.addWidget(view)
    view.show_node(node)
    return view


def test_a_sandbox_escape_is_marked_where_its_finding_points(qtbot, tmp_path):
    path = tmp_path / "chat.gguf"
    gguf_bytes(str(path))  # the demo's hostile GGUF, written by gguf's own writer
    result = scan_file(str(path))
    node = template_node(result)
    assert node.severity == Severity.CRITICAL
    view = shown(qtbot, node)
    text = view.text.toPlainText()
    marked = [text[s:e] for s, e in view.text.marks]
    assert marked and all("__globals__" in m or "__init__" in m or "popen" in m for m in marked)
    assert "message['content']" not in " ".join(marked)  # the benign part is shown as is, unmarked
    assert "dangerous expression(s) marked" in view.status.text()
    result.close()


def test_clean_real_templates_get_no_marks(qtbot):
    for name, text in BENIGN.items():
        node = template_node(scan_bytes(text.encode(), "chat_template.jinja"))
        assert all(f.rule == "TPL010" for f in node.findings), name  # at most the drift note
        view = shown(qtbot, node)
        assert view.text.marks == [], name  # no fallback pattern marks `'system'` or `.format`
        assert "No finding points into it" in view.status.text()
    assert "system" in DEEPSEEK


def test_marks_follow_the_finding_line_even_when_the_expression_is_written_differently(qtbot):
    text = "{{ messages }}\n  {{ x . __class__ }}\n{{ 'system' }}"
    node = template_node(scan_bytes(text.encode(), "chat_template.jinja"))
    assert node.findings
    (span,) = template_marks(node, text)
    # The reader's own span (the attribute) when it records one, else the line it names, without its indent.
    assert text[span[0]:span[1]] in ("__class__", "{{ x . __class__ }}")
    node.attrs.pop("marks", None)
    (span,) = template_marks(node, text)
    assert text[span[0]:span[1]] == "{{ x . __class__ }}"


def test_core_recorded_spans_win(qtbot):
    text = "{{ a }}{{ x.__class__ }}"
    node = Node(TEMPLATE, "t", attrs={"text": text, "marks": [(7, 24)]})
    assert shown(qtbot, node).text.marks == [(7, 24)]


def test_long_lines_wrap(qtbot):
    node = Node(TEMPLATE, "t", attrs={"text": "{{ message['content'] }} " * 200})
    view = shown(qtbot, node)
    assert view.text.lineWrapMode() == QPlainTextEdit.LineWrapMode.WidgetWidth


def test_torchscript_trigger_lines_are_marked_in_the_code_text(qtbot):
    """TS003: the code file's Text tab marks the probe, the comparison and the override."""
    from fixtures.torchscript_trigger_files import backdoored

    result = scan_bytes(backdoored()["cnn_where_traced.pt"], "model.pt")
    (hit,) = [f for f in result.findings if f.rule == "TS003"]
    view = shown(qtbot, hit.node)
    text = view.text.toPlainText()
    marked = [text[s:e] for s, e in view.text.marks]
    assert any("torch.eq(" in m and "31337" in m for m in marked), marked
    assert any(m.startswith("return torch.where(") for m in marked), marked
    assert not any("(net).forward(" in m for m in marked)  # the model's own layers are not on the path
    assert "marked" in view.status.text()
