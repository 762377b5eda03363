"""Trigger logic in TorchScript code (TS003): real torch.jit.trace/script archives of a CNN, an LSTM,
a BERT-like encoder and a GPT-like decoder, backdoored (where, masked_fill, mask blend, a scripted
`if`; plain and obfuscated) are high with the path; the same models bare and everyday control flow
(dynamic shapes, thresholds, a ReLU as where, NaN guards, padding masks, a sample-rate `if`, torch's
own attention and Transformer encoder) read clean. Nothing is loaded: the code is read as text."""

import pytest
from fixtures.torchscript_trigger_files import backdoored, ordinary

from airlock.core.findings import Severity
from airlock.core.graph.model import TRIGGER
from airlock.core.report.json_report import file_dict
from airlock.core.scan import scan_bytes


def scan(name, data):
    return scan_bytes(data, name)


def triggers(result):
    return [f for f in result.findings if f.rule == "TS003"]


@pytest.mark.parametrize("name", sorted(backdoored()))
def test_backdoored_archives_are_high_with_the_trigger_path(name):
    result = scan(name, backdoored()[name])
    (hit,) = triggers(result)
    assert hit.severity == result.severity == Severity.HIGH
    assert hit.message.startswith("TorchScript code line ") and ".forward returns input-independent values" in hit.message
    assert "probed on line" in hit.message and "lines on the path:" in hit.message
    assert any(c in hit.message for c in ("31337", "31336", "7.0")), hit.message  # the constants compared
    code = hit.node
    roles = code.attrs["trigger_lines"]
    for role in ("input probe", "comparison with constants", "output override"):
        assert any(role in r for r in roles.values()), roles
    assert hit.member and hit.member.endswith(".py")  # the code file inside the archive
    text = code.attrs["text"]
    marked = [text[s:e] for s, e in code.attrs["marks"]]
    assert any("31337" in m or "31336" in m for m in marked), marked  # the code view marks the comparison


@pytest.mark.parametrize("name", sorted(ordinary()))
def test_ordinary_models_and_control_flow_read_clean(name):
    result = scan(name, ordinary()[name])
    assert result.format == "torchscript"
    assert result.findings == [], [f.message for f in result.findings]
    assert not any("trigger_lines" in n.attrs for n in result.root.walk())


def test_a_trigger_that_needs_one_comparison_to_fail_is_found():
    (hit,) = triggers(scan("m.pt", backdoored()["cnn_obfuscated_traced.pt"]))
    assert "fails\")" in hit.message  # hypothesis: only the negated comparison fails
    assert hit.message.count("line ") >= 6  # three comparisons, each with its line


def test_the_scripted_if_names_the_branch_line():
    (hit,) = triggers(scan("m.pt", backdoored()["lstm_if_scripted.pt"]))
    text = hit.node.attrs["text"].split("\n")
    line = int(hit.message.split("TorchScript code line ")[1].split(":")[0])
    assert text[line - 1].strip().startswith("if bool(")


def test_the_graph_view_highlights_the_path():
    result = scan("m.pt", backdoored()["cnn_where_traced.pt"])
    (hit,) = triggers(result)
    graph = hit.node.attrs["graph"].build()
    on_path = {b.title: b.reasons for b in graph.nodes if TRIGGER in b.marks}
    assert "where" in on_path and any("output override" in r for r in on_path["where"])
    assert any("comparison with constants" in r for rs in on_path.values() for r in rs)
    assert any(graph.edge_marks)
    assert not any(TRIGGER in b.marks for b in graph.nodes if b.title.endswith("forward"))  # the model itself


def test_reports_carry_the_finding():
    result = scan("m.pt", backdoored()["gpt_blend_traced.pt"])
    (entry,) = [f for f in file_dict(result)["findings"] if f["rule"] == "TS003"]
    assert entry["severity"] == "high" and "compared line" in entry["message"]


def _edited(data: bytes, edit) -> bytes:
    """The archive with its top module's code file rewritten (the way an attacker edits one)."""
    import io
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if "/code/" in info.filename and info.filename.endswith(".py") and b"WhereTrigger" in body:
                body = edit(body.decode()).encode()
            dst.writestr(info.filename, body)
    return out.getvalue()


@pytest.mark.parametrize(("edit", "why"), [
    (lambda t: t.replace("def forward(", "def forward((", 1), "not Python"),
    (lambda t: t.replace("return torch.where(", "return " + "x + " * 60_000 + "torch.where(", 1), "nested"),
])
def test_code_that_cannot_be_analysed_is_said_not_analysed(edit, why):
    result = scan("m.pt", _edited(backdoored()["cnn_where_traced.pt"], edit))
    notes = [f for f in result.findings if f.rule == "TS004"]
    assert notes and why in notes[0].message and notes[0].severity == Severity.MEDIUM
    assert result.inspected != "full"  # never reads as fully inspected
