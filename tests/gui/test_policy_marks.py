"""Findings a policy file changed: struck through with the entry's reason, or re-rated saying what
they were; the verdict counts neither the suppressed ones nor the old severities."""

import hashlib
import pickle

import pytest
from PySide6.QtCore import Qt

from airlock.core.findings import Severity
from airlock.gui.file_view import FileView
from airlock.gui.findings_panel import COL_MESSAGE, COL_SEVERITY
from airlock.gui.workers import pool

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."
CUSTOM = (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x0bmypkg.model\x94\x8c\x06Config\x94\x93\x94"
          b"\x8c\x01x\x94\x85\x94R\x94.")


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the policy is found from the current folder, as `airlock scan` finds it
    models = tmp_path / "models"  # below it: a policy beside the opened file came with it and is not used
    models.mkdir()
    (models / "evil.pkl").write_bytes(EVIL)
    (models / "custom.pkl").write_bytes(CUSTOM)
    (models / "ok.pkl").write_bytes(pickle.dumps([1, 2], protocol=4))
    return tmp_path


def open_view(qtbot, path):
    view = FileView(str(path))
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.scan_finished, timeout=60_000):
        view.start_scan()
    return view


def rows(view):
    model = view.findings.model()
    return [(model.findings[r], {c: model.data(model.index(r, c)) for c in (COL_SEVERITY, COL_MESSAGE)},
             model.data(model.index(r, COL_MESSAGE), Qt.ItemDataRole.FontRole),
             model.data(model.index(r, COL_MESSAGE), Qt.ItemDataRole.ToolTipRole))
            for r in range(model.rowCount())]


def test_suppressed_finding_is_struck_through_with_its_reason_and_not_counted(qtbot, work):
    sha = hashlib.sha256(EVIL).hexdigest()
    (work / "airlock.toml").write_text(
        f'[[suppress]]\nrule = "PKL006"\nsha256 = "{sha}"\nreason = "reviewed in TICKET-1"\n')
    view = open_view(qtbot, work / "models" / "evil.pkl")
    shown = rows(view)
    marked = [r for r in shown if r[0].rule == "PKL006"]
    assert marked, [r[0].rule for r in shown]
    finding, text, font, tooltip = marked[0]
    assert font is not None and font.strikeOut()
    assert "suppressed by airlock.toml:1: reviewed in TICKET-1" in text[COL_MESSAGE]
    assert "TICKET-1" in tooltip
    assert finding.severity == Severity.CRITICAL  # suppressed, not re-rated: still says what it is
    assert shown[-1][0] is finding  # suppressed findings go last, still listed
    assert view.banner.verdict.severity < Severity.CRITICAL  # the verdict does not count it
    assert "1 finding(s) suppressed by the policy" in view.banner.label.text()  # and says so
    assert f"policy {work / 'airlock.toml'}" in view.info.text()
    # The policy entry keyed by sha256 made the scan hash the file: the details show it at once.
    assert view.details.file_hash.sha256 == sha


def test_unmarked_findings_keep_their_look(qtbot, work):
    view = open_view(qtbot, work / "models" / "evil.pkl")  # no policy file
    assert all(font is None for _, _, font, _ in rows(view))
    assert view.banner.verdict.severity == Severity.CRITICAL
    assert "policy" not in view.info.text()


def test_overridden_finding_says_what_it_was_and_why(qtbot, work):
    (work / "airlock.toml").write_text('[[override]]\nrule = "PKL005"\nseverity = "low"\npath = "custom.pkl"\n'
                                       'reason = "our own class"\n')
    view = open_view(qtbot, work / "models" / "custom.pkl")
    marked = [r for r in rows(view) if r[0].rule == "PKL005"]
    assert marked
    finding, text, font, _ = marked[0]
    assert finding.severity == Severity.LOW
    assert text[COL_SEVERITY] == "LOW (was MEDIUM)"
    assert "severity overridden by airlock.toml:1 (was MEDIUM): our own class" in text[COL_MESSAGE]
    assert font is None  # re-rated, not suppressed
    assert view.banner.verdict.severity == Severity.LOW
    view.reveal_finding(finding)  # the details pane's row for it says so too
    table = view.details.attributes
    cells = [table.item(r, 1).text() for r in range(table.rowCount()) if table.item(r, 0).text() == "finding PKL005"]
    assert cells and "(was MEDIUM): our own class" in cells[0]
    # Selecting it started the decompiled view's worker: let it finish before the view goes away.
    qtbot.waitUntil(lambda: not pool().busy, timeout=60_000)


def test_a_broken_policy_is_not_applied_and_the_view_says_so(qtbot, work):
    (work / "airlock.toml").write_text('[[suppress]]\nrule = "PKL006"\nwhy = "no reason key"\n')
    view = open_view(qtbot, work / "models" / "evil.pkl")
    assert "NOT applied" in view.info.text() and "line 3" in view.info.text()
    assert view.banner.verdict.severity == Severity.CRITICAL


def test_the_opened_files_folder_never_brings_its_own_policy(qtbot, work, tmp_path_factory, monkeypatch):
    (work / "models" / "airlock.toml").write_text('[[suppress]]\nrule = "PKL006"\nreason = "trust me"\n')
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    view = open_view(qtbot, work / "models" / "evil.pkl")
    assert view.banner.verdict.severity == Severity.CRITICAL
    assert all(font is None for _, _, font, _ in rows(view))


def test_launched_from_the_opened_files_folder_it_still_does_not_take_its_policy(qtbot, work, monkeypatch):
    """Regression (new-user trial): the app started in a downloaded model's folder applied its airlock.toml."""
    (work / "models" / "airlock.toml").write_text('[[suppress]]\nrule = "PKL006"\nreason = "trust me"\n')
    monkeypatch.chdir(work / "models")
    view = open_view(qtbot, "evil.pkl")
    assert view.banner.verdict.severity == Severity.CRITICAL
    assert "NOT applied: it came with the opened files" in view.info.text()


def risk_cells(view, node):
    """The Risk column of `node` and of every node above it, in the tree that is shown."""
    from airlock.gui.tree_model import COL_RISK

    model = view.tree.model()
    cells = []
    while node is not None:
        cells.append(model.data(model.index_for(node).siblingAtColumn(COL_RISK)))
        node = node.parent
    return cells


def test_the_tree_shows_the_overridden_severity_and_what_it_was(qtbot, work):
    (work / "airlock.toml").write_text('[[override]]\nrule = "PKL005"\nseverity = "low"\npath = "custom.pkl"\n'
                                       'reason = "our own class"\n')
    view = open_view(qtbot, work / "models" / "custom.pkl")
    finding = next(f for f in view.result.findings if f.rule == "PKL005")
    assert finding.node is not None
    assert view.result.root.severity == Severity.LOW  # the tree counts as the verdict does
    cells = risk_cells(view, finding.node)
    assert cells and all(cell == "low (was medium)" for cell in cells), cells
    # "Show only risky" and a search show the same Risk text.
    with qtbot.waitSignal(view.search_finished, timeout=60_000):
        view.set_filter("", risky_only=True)
    qtbot.waitUntil(lambda: not view._pending, timeout=10_000)
    assert view.results is not None and view.tree.model() is view.results
    assert finding.node in view.results.matches
    assert risk_cells(view, finding.node) == cells


def test_the_tree_does_not_count_a_suppressed_finding(qtbot, work):
    sha = hashlib.sha256(EVIL).hexdigest()
    (work / "airlock.toml").write_text(
        f'[[suppress]]\nrule = "PKL006"\nsha256 = "{sha}"\nreason = "reviewed in TICKET-1"\n')
    view = open_view(qtbot, work / "models" / "evil.pkl")
    finding = next(f for f in view.result.findings if f.rule == "PKL006")
    counted = [f.severity for f in view.result.findings if f is not finding and f.node is not None]
    assert view.result.root.severity == max([Severity.NONE, *counted])
    assert risk_cells(view, finding.node)[0].endswith("(was critical)")


def test_without_a_policy_the_tree_keeps_its_severities(qtbot, work):
    view = open_view(qtbot, work / "models" / "custom.pkl")
    finding = next(f for f in view.result.findings if f.rule == "PKL005")
    assert risk_cells(view, finding.node)[0] == "medium"
