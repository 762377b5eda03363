"""Review ▸ Approve… / Reject… / Show History on the open file, and its history in the details pane
(a Review tab). The approvals database is a file in the test's folder."""

from __future__ import annotations

import hashlib
import pickle

import pytest
from PySide6.QtWidgets import QMessageBox

from airlock.core.review.queries import open_store
from airlock.gui import review
from airlock.gui.export import html_report
from airlock.gui.main_window import MainWindow

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRLOCK_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    path = str(tmp_path / "approvals.sqlite3")
    review.set_db(path)
    yield path
    review.set_db(None)


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    win.quiet_review = True  # no modal error boxes
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def open_file(qtbot, window, path):
    with qtbot.waitSignal(window.all_scans_finished, timeout=60_000):
        (view,) = window.open_paths([str(path)])
    return view


def decide(qtbot, window, decision, note, *, accept_critical=False):
    flow = review.start(window, decision)
    assert flow is not None and flow.dialog is not None
    dialog = flow.dialog
    dialog.reviewer.setText("gui-reviewer")
    dialog.note.setPlainText(note)
    if accept_critical:
        dialog.accept_critical.setChecked(True)
    assert dialog.ok.isEnabled()
    with qtbot.waitSignal(flow.done, timeout=60_000) as blocker:
        dialog.ok.click()
    return blocker.args


def test_menu_has_the_review_actions(window):
    titles = [a.text() for a in window.menuBar().actions()]
    assert "Re&view" in titles
    assert window.approve_action.text() == "&Approve…" and window.reject_action.text() == "Re&ject…"


def test_approve_then_reject_records_and_shows_the_trail(qtbot, window, db, tmp_path):
    path = tmp_path / "optimizer.pkl"
    path.write_bytes(pickle.dumps({"lr": 0.1}, protocol=4))
    view = open_file(qtbot, window, path)
    status, trail = decide(qtbot, window, review.APPROVE, "looked at every global")
    assert status == "ok" and [d["decision"] for d in trail] == ["approve"]
    tab = review.history_view(view, create=False)
    assert tab is not None and view.details.tabs.indexOf(tab) >= 0
    assert "APPROVED by gui-reviewer" in tab.text.toPlainText() and "looked at every global" in tab.text.toPlainText()
    status, trail = decide(qtbot, window, review.REJECT, "changed my mind")
    assert [d["decision"] for d in trail] == ["approve", "reject"]
    assert tab.text.toPlainText().rstrip().endswith("now: REJECTED")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with open_store(db, write=False) as store:
        rows = store.history(sha)
    assert [(r["decision"], r["reviewer"], r["note"]) for r in rows] == [
        ("approve", "gui-reviewer", "looked at every global"), ("reject", "gui-reviewer", "changed my mind")]
    page = html_report(view.result)  # the export carries the decision that counts
    assert "REJECTED</span> by gui-reviewer" in page and sha in page


def test_critical_file_needs_the_accept_box(qtbot, window, db, tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(EVIL)
    open_file(qtbot, window, path)
    flow = review.start(window, review.APPROVE)
    dialog = flow.dialog
    assert not dialog.accept_critical.isHidden()
    dialog.note.setPlainText("sample for the lab")
    assert not dialog.ok.isEnabled()
    dialog.accept_critical.setChecked(True)
    assert dialog.ok.isEnabled()
    dialog.reject()
    status, trail = decide(qtbot, window, review.APPROVE, "sample for the lab", accept_critical=True)
    assert status == "ok" and trail[-1]["accepted_critical"] is True and trail[-1]["verdict"] == "critical"
    # Rejecting needs no box; an empty note never enables the button.
    flow = review.start(window, review.REJECT)
    assert flow.dialog.accept_critical.isHidden() and not flow.dialog.ok.isEnabled()
    flow.dialog.reject()


def test_history_is_looked_up_only_when_asked(qtbot, window, db, tmp_path):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    view = open_file(qtbot, window, path)
    tab = review.history_view(view, create=False)
    assert tab is not None and "press the button" in tab.text.toPlainText()  # attached, nothing hashed yet
    tab = review.show_history(window)  # starts the look-up (it may finish before the next line)
    qtbot.waitUntil(lambda: "no record" in tab.text.toPlainText(), timeout=60_000)
    assert tab.button.isEnabled() and hashlib.sha256(path.read_bytes()).hexdigest() in tab.text.toPlainText()
    assert view.details.tabs.currentWidget() is tab


def test_a_database_that_cannot_be_used_is_reported(qtbot, window, tmp_path, monkeypatch):
    bad = tmp_path / "not-a-db.sqlite3"
    bad.write_text("text " * 500)
    review.set_db(str(bad))
    monkeypatch.setattr(QMessageBox, "open", lambda self: None)
    try:
        path = tmp_path / "m.pkl"
        path.write_bytes(pickle.dumps([1]))
        open_file(qtbot, window, path)
        status, message = decide(qtbot, window, review.APPROVE, "x")
        assert status == "error" and "approvals database" in message
    finally:
        review.set_db(None)
