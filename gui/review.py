"""Review ▸ Approve… / Reject… / Show History: the review trail of the open file.

The dialog takes a note (and the reviewer, default the login name); approving a file with critical
findings needs the "accept critical findings" box, as `airlock approve --accept-critical`. The
decision is recorded by airlock.core.review.decisions.decide in a worker (it scans and hashes the
file, as the CLI does), into the same database as the CLI (`AIRLOCK_DB`, else the user data folder).
The file's history shows in a "Review" tab of the details pane. Hashing reads the whole file, so the
history is looked up when asked (the tab's button or the menu), or after a decision.

Only this module and two lines of menu wiring in main_window.py belong to the review feature.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from airlock.core.findings import Severity
from airlock.core.text import safe_text
from airlock.gui.workers import FunctionWorker, pool

APPROVE, REJECT = "approve", "reject"
TAB_TITLE = "Review"

_KNOWN: dict[str, dict[str, Any]] = {}  # path → sha256, size and the decision that counts (for reports)
_DB_URL: list[str | None] = [None]  # None: AIRLOCK_DB, else the default file
_FLOWS: set[QObject] = set()  # alive until their worker reports


def set_db(url: str | None) -> None:
    _DB_URL[0] = url


def db_url() -> str | None:
    return _DB_URL[0]


def known_fields(path: str) -> dict[str, Any]:
    """What the app learnt about this file's review (sha256, size, review), for the HTML export."""
    return dict(_KNOWN.get(path, {}))


# Work done in a pool thread (core calls only)

def record_decision(path: str, decision: str, note: str, reviewer: str, accept_critical: bool,
                    url: str | None) -> list[dict[str, Any]]:
    from airlock.core.review.decisions import decide
    from airlock.core.review.queries import open_store

    with open_store(url, write=True) as store:
        records = decide(store, [path], decision, note=note, reviewer=reviewer or None,
                         accept_critical=accept_critical, jobs=1)
        trail = store.history(records[0]["sha256"])
    return trail


def look_up_history(path: str, url: str | None) -> list[dict[str, Any]] | tuple[str, int]:
    from airlock.core.provenance.hashing import sha256_file
    from airlock.core.review.queries import open_store

    sha, size = sha256_file(path)
    with open_store(url, write=False) as store:
        trail = store.history(sha)
    return trail if trail else (sha, size)


# The details pane's tab

class HistoryView(QWidget):
    """The decisions recorded for the file's sha256, oldest first; the latest counts."""

    def __init__(self, view: Any) -> None:
        super().__init__()
        self.view = view
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setAccessibleName("Review history")
        self.text.setPlainText("The review history is looked up by the file's SHA-256, which reads the whole "
                               "file: press the button (or decide with Review ▸ Approve… / Reject…).")
        self.button = QPushButton("Look up review history")
        self.button.clicked.connect(self.look_up)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.text, 1)
        self.worker: FunctionWorker | None = None

    def look_up(self) -> FunctionWorker:
        self.button.setEnabled(False)
        self.text.setPlainText("Hashing the file and looking up its decisions…")
        worker = FunctionWorker(look_up_history, self.view.path, db_url(), plain=True)
        worker.signals.returned.connect(self.show_result)
        worker.signals.errored.connect(self.show_error)
        self.worker = worker
        pool().start(worker)
        return worker

    def show_result(self, result: Any) -> None:
        from airlock.core.review.cli import render_history

        self.button.setEnabled(True)
        if isinstance(result, tuple):
            sha, size = result
            _KNOWN[self.view.path] = {"sha256": sha, "size": size}
            self.text.setPlainText(render_history(self.view.path, sha, []))
            return
        self.show_trail(result)

    def show_trail(self, trail: list[dict[str, Any]]) -> None:
        from airlock.core.review.cli import render_history
        from airlock.core.review.gate import summary

        self.button.setEnabled(True)
        latest = trail[-1]
        _KNOWN[self.view.path] = {"sha256": latest["sha256"], "size": latest["size"],
                                  "review": summary(latest, None)}
        self.text.setPlainText(render_history(self.view.path, latest["sha256"], trail))

    def show_error(self, message: str) -> None:
        self.button.setEnabled(True)
        self.text.setPlainText(f"Could not look up the review history: {safe_text(message, 600)}")


def history_view(view: Any, create: bool = True) -> HistoryView | None:
    """The view's Review tab (added to its details pane the first time)."""
    existing = getattr(view, "_review_history", None)
    if existing is not None or not create:
        return existing
    widget = HistoryView(view)
    view.details.tabs.addTab(widget, TAB_TITLE)
    view._review_history = widget
    return widget


# The dialog

class ReviewDialog(QDialog):
    def __init__(self, parent: QWidget | None, path: str, decision: str, severity: Severity) -> None:
        super().__init__(parent)
        self.decision = decision
        self.critical = severity >= Severity.CRITICAL
        verb = "Approve" if decision == APPROVE else "Reject"
        self.setWindowTitle(f"{verb} this exact file")
        about = QLabel(f"{safe_text(path, 300)}\nverdict: {severity.label}\n\nThe decision is recorded for "
                       "the file's SHA-256: a renamed copy shares it, any change to the bytes does not.")
        about.setTextFormat(Qt.TextFormat.PlainText)
        about.setWordWrap(True)
        self.note = QPlainTextEdit()
        self.note.setPlaceholderText("Why (required): what you checked, the ticket, the source…")
        self.reviewer = QLineEdit()
        from airlock.core.review.decisions import default_reviewer

        self.reviewer.setText(default_reviewer())
        self.accept_critical = QCheckBox("Approve although the file has critical findings (the record "
                                         "says so)")
        self.accept_critical.setVisible(decision == APPROVE and self.critical)
        form = QFormLayout()
        form.addRow("Note", self.note)
        form.addRow("Reviewer", self.reviewer)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.ok = self.buttons.addButton(verb, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(about)
        layout.addLayout(form)
        layout.addWidget(self.accept_critical)
        layout.addWidget(self.buttons)
        self.note.textChanged.connect(self._update)
        self.accept_critical.toggled.connect(self._update)
        self._update()

    def _update(self) -> None:
        ready = bool(self.note.toPlainText().strip())
        if self.decision == APPROVE and self.critical:
            ready = ready and self.accept_critical.isChecked()
        self.ok.setEnabled(ready)


class ReviewFlow(QObject):
    """Dialog → record in a worker → the history tab shows the new trail."""

    done = Signal(str, object)  # "ok" | "error" | "declined", the trail or the message

    def __init__(self, window: Any, view: Any, decision: str) -> None:
        super().__init__(window)
        self.window = window
        self.view = view
        self.decision = decision
        self.dialog: ReviewDialog | None = None
        self.worker: FunctionWorker | None = None

    def open_dialog(self) -> ReviewDialog:
        severity = self.view.result.severity if self.view.result is not None else Severity.HIGH
        self.dialog = ReviewDialog(self.window, self.view.path, self.decision, severity)
        self.dialog.accepted.connect(self.submit)
        self.dialog.rejected.connect(lambda: self.done.emit("declined", None))
        _FLOWS.add(self)
        self.dialog.open()
        return self.dialog

    def submit(self) -> None:
        dialog = self.dialog
        assert dialog is not None
        worker = FunctionWorker(record_decision, self.view.path, self.decision, dialog.note.toPlainText(),
                                dialog.reviewer.text().strip(), dialog.accept_critical.isChecked(), db_url(),
                                plain=True)
        worker.signals.returned.connect(self._recorded)
        worker.signals.errored.connect(self._failed)
        self.worker = worker
        pool().start(worker)

    def _recorded(self, trail: list[dict[str, Any]]) -> None:
        _FLOWS.discard(self)
        tab = history_view(self.view)
        assert tab is not None
        tab.show_trail(trail)
        word = "Approved" if self.decision == APPROVE else "Rejected"
        self.window.statusBar().showMessage(f"{word}: decision #{trail[-1]['id']} recorded.", 8000)
        self.done.emit("ok", trail)

    def _failed(self, message: str) -> None:
        _FLOWS.discard(self)
        from PySide6.QtWidgets import QMessageBox

        from airlock.gui.export import message_box

        if not getattr(self.window, "quiet_review", False):
            message_box(self.window, QMessageBox.Icon.Warning, "Decision not recorded",
                        safe_text(message, 800)).open()
        self.done.emit("error", message)


# Wiring into the main window

def install(window: Any) -> None:
    """Add the Review menu to the main window, and the Review tab to each file's details pane."""
    menu = window.menuBar().addMenu("Re&view")
    window.approve_action = menu.addAction("&Approve…", lambda: start(window, APPROVE))
    window.reject_action = menu.addAction("Re&ject…", lambda: start(window, REJECT))
    menu.addSeparator()
    window.history_action = menu.addAction("Show &History", lambda: show_history(window))
    window.tabs.currentChanged.connect(lambda _i: _attach(window))
    window.all_scans_finished.connect(lambda: _attach(window))


def _attach(window: Any) -> None:
    view = window.current_view()
    if view is not None:
        history_view(view)


def start(window: Any, decision: str) -> ReviewFlow | None:
    view = window.current_view()
    if view is None or view.result is None:
        window.statusBar().showMessage("Open a file and let its scan finish first.", 5000)
        return None
    flow = ReviewFlow(window, view, decision)
    flow.open_dialog()
    return flow


def show_history(window: Any) -> HistoryView | None:
    view = window.current_view()
    if view is None:
        return None
    tab = history_view(view)
    assert tab is not None
    view.details.tabs.setCurrentWidget(tab)
    tab.look_up()
    return tab
