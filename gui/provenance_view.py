"""A folder's tab: its signature state and the tree of its files, each with its verdict.

For a plain folder the header says "signed by …", "signature does not match: …", "signature does
not verify: …", "signed, not verified" (a model.sig and no key yet) or "unsigned". A Hugging Face
cache (its root, a `models--*` folder or one snapshot) opens as this one tab: each repository and
revision (commit, the refs naming it, the snapshot's signature state) with its files under their
snapshot paths, and the blobs no snapshot links to under blobs/.

Everything is core's: files are scanned through `airlock.core.api.scan_paths` (each revision once,
the policy applied as `airlock scan` applies it), signatures checked by core.provenance.signing.
Both run in workers; double-clicking a file opens it in its own tab.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from airlock.core.findings import Severity
from airlock.core.provenance import hf_cache, signing
from airlock.core.text import safe_path, safe_text
from airlock.gui import theme
from airlock.gui.workers import FunctionWorker, WorkerBase, WorkerSignals, pool

COL_NAME, COL_VERDICT, COL_FORMAT, COL_FINDINGS = range(4)
PATH_ROLE = Qt.ItemDataRole.UserRole + 1
BLOBS = "blobs/ (not in any snapshot)"


def is_hf_folder(path: str) -> bool:
    """A Hugging Face cache root, a repository folder (`models--org--name`) or one snapshot."""
    if not os.path.isdir(path):
        return False
    if hf_cache.is_repo_folder(path):
        return True
    where = hf_cache.split(os.path.join(path, "x"))
    if where is not None and where[1] == "snapshots" and len(where[2]) == 2:
        return True  # <repo>/snapshots/<commit>
    try:
        return any(hf_cache.is_repo_folder(os.path.join(path, e)) for e in os.listdir(path)
                   if e.startswith(hf_cache.PREFIXES))
    except OSError:
        return False


def signed_folders(path: str) -> list[tuple[str, str]]:
    """(label, folder) of every folder whose signature the view reports: the folder itself, or for
    a Hugging Face cache each snapshot (a signature travels with a revision's files)."""
    if not is_hf_folder(path):
        return [("", path)]
    repos = [path] if hf_cache.is_repo_folder(path) else []
    where = hf_cache.split(os.path.join(path, "x"))
    if where is not None and where[1] == "snapshots" and len(where[2]) == 2:
        return [(revision_label(where[0], where[2][0]), path)]
    if not repos:
        repos = sorted(os.path.join(path, e) for e in os.listdir(path)
                       if hf_cache.is_repo_folder(os.path.join(path, e)))
    return [(revision_label(repo, commit), os.path.join(repo, "snapshots", commit))
            for repo in repos for commit in hf_cache.snapshots(repo)]


def revision_label(repo_folder: str, commit: str) -> str:
    _, rid = hf_cache.repo_id(os.path.basename(os.path.normpath(repo_folder)))
    refs = hf_cache.read_refs(repo_folder).get(commit, [])
    names = f" ({', '.join(refs)})" if refs else " (no ref points at it)"
    return f"{rid} @ {commit[:12]}{names}"


def signature_states(path: str, key: str | None = None,
                     certs: list[str] | None = None) -> list[tuple[str, str]]:
    """(label, one-line state) per signed folder. Raises signing.BadKey. Runs in a worker."""
    return [(label, signing.verify(folder, key=key, certs=certs).summary())
            for label, folder in signed_folders(path)]


class FolderSignals(WorkerSignals):
    report = Signal(object)  # one file's report entry (a dict), as it finishes


class FolderScanWorker(WorkerBase):
    """Scans every file below a folder (or the files listed) through core's `scan_paths`, emitting each
    entry."""

    def __init__(self, path: str, files: list[str] | None = None) -> None:
        super().__init__()
        self.signals: FolderSignals = FolderSignals()
        self.path = path
        self.files = files
        self.policy_note = ""

    def work(self, progress: Callable[[float, str], None], cancelled: Callable[[], bool]) -> Any:
        from airlock.core.api import scan_paths
        from airlock.gui.policy_marks import load_policy

        policy, self.policy_note = load_policy([self.path] if self.files is None else self.files)
        count = 0
        for report in scan_paths([self.path] if self.files is None else self.files, policy=policy, jobs=1):
            if cancelled():
                return None
            count += 1
            self.signals.report.emit(report.to_dict())
            progress(0.0, f"{count} file(s)")
        return count


class FolderView(QWidget):
    """One tab for a folder. `open_file(path)` asks the window to open a file in its own tab."""

    scan_finished = Signal(object)  # self
    open_file = Signal(str)

    def __init__(self, path: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.hf = is_hf_folder(path)
        self.entries: list[dict[str, Any]] = []
        self.states: list[tuple[str, str]] = []
        self.error: str | None = None
        self.worker: FolderScanWorker | None = None
        self.sig_worker: FunctionWorker | None = None
        self._groups: dict[tuple[str, ...], QTreeWidgetItem] = {}
        self._items: dict[str, QTreeWidgetItem] = {}  # a file's row by its path: a tab's rescan updates it
        self._shown: dict[str, str] = {}  # the file tabs it takes rows from: path read → path shown
        self._waiting: set[str] = set()  # those whose tab has not finished its scan yet
        self.policy_note = ""

        kind = "Hugging Face cache" if self.hf else "Folder"
        self.title = QLabel(f"{kind}: {safe_path(path, 300)}")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.signature = QLabel("Signature: checking…")
        self.signature.setTextFormat(Qt.TextFormat.PlainText)
        self.signature.setWordWrap(True)
        self.signature.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel("Scanning… (nothing in it is executed)")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.verify_button = QPushButton("Verify Signature with Key…")
        self.verify_button.setToolTip("Verify model.sig with a PEM elliptic-curve public key "
                                      "(model-signing), offline")
        self.verify_button.clicked.connect(self.choose_key)
        self.cert_button = QPushButton("Verify with Certificate…")
        self.cert_button.setToolTip("Verify model.sig against a certificate chain (PEM files: the CA and any "
                                    "intermediates), offline")
        self.cert_button.clicked.connect(self.choose_certificates)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Name", "Verdict", "Format", "Findings"])
        self.tree.setAccessibleName("Folder files")
        self.tree.setUniformRowHeights(True)
        self.tree.header().resizeSection(COL_NAME, 420)
        self.tree.header().resizeSection(COL_VERDICT, 220)
        self.tree.itemDoubleClicked.connect(self._double_clicked)
        row = QHBoxLayout()
        row.addWidget(self.signature, 1)
        row.addWidget(self.verify_button)
        row.addWidget(self.cert_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.title)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.tree, 1)

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path)) or self.path

    @property
    def busy(self) -> bool:
        return self.worker is not None or self.sig_worker is not None or bool(self._waiting)

    @property
    def severity(self) -> Severity:
        if self.error is not None:
            return Severity.HIGH  # not fully read: never looks clean
        return max((Severity.parse(str(e["severity"])) for e in self.entries), default=Severity.NONE)

    # Work

    def start_scan(self, tabs: list[tuple[str, Any]] | None = None, rest: list[str] | None = None) -> None:
        """Scan the folder's files in a worker. When the window opened a tab for some of them (`tabs`:
        (path shown, FileView)), their rows come from those tabs' scans, so that each file is scanned
        once, and only `rest` (the files without a tab) is scanned here."""
        for shown, view in tabs or ():
            self._shown[view.path] = shown
            self._waiting.add(view.path)
            view.scan_finished.connect(self._tab_scanned)
        if tabs is None or rest:
            worker = FolderScanWorker(self.path, None if tabs is None else rest)
            worker.signals.report.connect(self._add_entry)
            worker.signals.progress.connect(self._progress)
            worker.signals.errored.connect(self._failed)
            worker.signals.finished.connect(self._scan_done)
            self.worker = worker
            pool().start(worker)
        self.check_signature()

    def _tab_scanned(self, view: Any) -> None:
        """A file tab of this folder finished (or re-ran) its scan: its row shows that tab's entry."""
        shown = self._shown.get(view.path)
        if shown is None:
            return
        self._waiting.discard(view.path)
        self.policy_note = view.policy_note or self.policy_note
        if view.entry is not None:
            self._show_entry({**view.entry, "path": shown})
        elif view.error is not None:
            self._show_entry(_not_inspected(shown, f"could not scan: {view.error}"))
        else:
            self._show_entry(_not_inspected(shown, "not inspected: cancelled"))
        self._settle()

    def tab_closing(self, view: Any) -> None:
        """The window closes a file tab: if its scan had not finished, the row says so (never clean)."""
        shown = self._shown.pop(view.path, None)  # the closed tab's late signals are not listened to
        if view.path in self._waiting and shown is not None:
            self._waiting.discard(view.path)
            note = "not inspected: its tab was closed before the scan finished"
            self._show_entry(_not_inspected(shown, note))
            self._settle()

    def check_signature(self, key: str | None = None, certs: list[str] | None = None) -> None:
        """Compute the signature state in a worker: without a key, whether model.sig is present."""
        if self.sig_worker is not None:
            self.sig_worker.cancel()
        worker = FunctionWorker(signature_states, self.path, key, certs, plain=True)
        worker.signals.returned.connect(self._signature_returned)
        worker.signals.errored.connect(self._signature_failed)
        worker.signals.finished.connect(self._signature_done)
        self.sig_worker = worker
        self.signature.setText("Signature: verifying…" if key or certs else "Signature: checking…")
        pool().start(worker)

    def choose_key(self) -> None:
        key, _ = QFileDialog.getOpenFileName(self, "Public key (PEM) to verify model.sig with")
        if key:
            self.check_signature(key=key)

    def choose_certificates(self) -> None:
        certs, _ = QFileDialog.getOpenFileNames(self, "Certificate chain (PEM) to verify model.sig with")
        if certs:
            self.check_signature(certs=list(certs))

    def cancel(self) -> None:
        for worker in (self.worker, self.sig_worker):
            if worker is not None:
                worker.cancel()

    # Results (bound methods: Qt drops the connections when the tab goes away)

    def _current(self, worker: WorkerBase | None) -> bool:
        return worker is not None and self.sender() is worker.signals

    def _signature_returned(self, states: list[tuple[str, str]]) -> None:
        if not self._current(self.sig_worker):
            return
        self.states = states
        lines = [f"{safe_text(label, 200)} · {safe_text(state, 400)}" if label else safe_text(state, 400)
                 for label, state in states]
        self.signature.setText("Signature: " + ("\n".join(lines) if lines else "no snapshot"))
        for label, state in states:
            group = self._groups.get(("rev", label))
            if group is not None:
                group.setText(COL_VERDICT, safe_text(state, 200))

    def _signature_failed(self, message: str) -> None:
        if self._current(self.sig_worker):
            self.signature.setText(f"Signature: cannot verify: {safe_text(message, 400)}")

    def _signature_done(self) -> None:
        if self._current(self.sig_worker):
            self.sig_worker = None
            self._maybe_finished()

    def _progress(self, _fraction: float, message: str) -> None:
        if self._current(self.worker):
            self.status.setText(f"Scanning… {safe_text(message, 80)}")

    def _failed(self, message: str) -> None:
        if self._current(self.worker):
            self.error = message
            self.status.setText(f"The scan failed: {safe_text(message, 400)}; the files below are not all "
                                "inspected")

    def _scan_done(self) -> None:
        if not self._current(self.worker):
            return
        self.policy_note = self.worker.policy_note if self.worker is not None else ""
        self.worker = None
        self._settle()

    def _settle(self) -> None:
        """Every file reported (by the worker and the tabs): say so."""
        if self.worker is not None or self._waiting:
            return
        if self.error is None:
            worst = self.severity
            policy = self.policy_note
            self.status.setText(f"{len(self.entries)} file(s) scanned · worst: {worst.label.upper()}"
                                + (f" · {policy}" if policy else "") + " · double-click a file to open it")
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        if not self.busy:
            self.scan_finished.emit(self)

    # The tree

    def _add_entry(self, entry: dict[str, Any]) -> None:
        if not self._current(self.worker):
            return
        self._show_entry(entry)

    def _show_entry(self, entry: dict[str, Any]) -> None:
        path = str(entry["path"])
        item = self._items.get(path)
        if item is None:
            self.entries.append(entry)
            parent, key, parts = self._place(entry)
            for part in parts[:-1]:
                key = (*key, part)
                parent = self._group(parent, part + "/", key)
            item = QTreeWidgetItem(parent)
            item.setText(COL_NAME, safe_path(parts[-1], 200))
            self._items[path] = item
        else:  # the file's tab scanned it again (Reload): the row follows
            self.entries = [entry if str(e["path"]) == path else e for e in self.entries]
        severity = Severity.parse(str(entry["severity"]))
        word = severity.label.upper() if severity != Severity.NONE else "NO FINDINGS"
        if entry.get("note"):
            word = f"{word} · {safe_text(str(entry['note']), 200)}"
        elif entry.get("inspected", "full") != "full":
            word += f" · {entry.get('inspected')} inspection"
        item.setText(COL_VERDICT, word)
        item.setIcon(COL_VERDICT, theme.severity_icon(severity))
        item.setText(COL_FORMAT, safe_text(str(entry.get("format", "")), 40))
        findings = entry.get("findings", [])
        changed = sum(1 for f in findings if f.get("suppressed_by") or f.get("overridden_by"))
        by_policy = f" ({changed} changed by policy)" if changed else ""
        item.setText(COL_FINDINGS, f"{len(findings)}{by_policy}")
        item.setData(COL_NAME, PATH_ROLE, str(entry["path"]))
        item.setToolTip(COL_NAME, "")
        if severity >= Severity.MEDIUM:
            top = item.parent()
            while top is not None:
                top.setExpanded(True)
                top = top.parent()

    def _place(self, entry: dict[str, Any]) -> tuple[Any, tuple[str, ...], list[str]]:
        """The tree parent of a file, its key, and the file's path below it in parts."""
        info = entry.get("huggingface")
        if isinstance(info, dict):
            rid = str(info.get("repo_id"))
            repo = self._group(self.tree.invisibleRootItem(), rid, ("repo", rid))
            if "revision" in info:
                where = hf_cache.split(str(entry["path"]))
                label = revision_label(where[0], str(info["revision"])) if where else str(info["revision"])
                group = self._group(repo, f"revision {label}", ("rev", label))
                group.setToolTip(COL_NAME, f"commit {safe_text(str(info['revision']), 80)}")
                return group, ("rev", label), str(info.get("file", "")).split("/")
            return self._group(repo, BLOBS, ("blobs", rid)), ("blobs", rid), [str(info.get("blob", "?"))]
        rel = os.path.relpath(os.path.abspath(str(entry["path"])), os.path.abspath(self.path))
        return self.tree.invisibleRootItem(), ("dir",), rel.replace(os.sep, "/").split("/")

    def _group(self, parent: Any, text: str, key: tuple[str, ...]) -> QTreeWidgetItem:
        item = self._groups.get(key)
        if item is None:
            item = QTreeWidgetItem(parent)
            item.setText(COL_NAME, safe_path(text, 300))
            item.setExpanded(True)
            self._groups[key] = item
            if key[0] == "rev" and len(key) == 2:  # a revision, not a folder inside it
                state = dict(self.states).get(key[1])
                if state is not None:
                    item.setText(COL_VERDICT, safe_text(state, 200))
        return item

    def _double_clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        path = item.data(COL_NAME, PATH_ROLE)
        if isinstance(path, str):
            self.open_file.emit(path)

    def file_items(self) -> dict[str, QTreeWidgetItem]:
        """Every file row by its path (for tests and the window)."""
        out = {}
        stack = [self.tree.invisibleRootItem()]
        while stack:
            item = stack.pop()
            for i in range(item.childCount()):
                child = item.child(i)
                if child is None:
                    continue
                path = child.data(COL_NAME, PATH_ROLE)
                if isinstance(path, str):
                    out[path] = child
                stack.append(child)
        return out


def _not_inspected(path: str, note: str) -> dict[str, Any]:
    """The row of a file whose tab gave no scan: listed, never clean."""
    return {"path": path, "severity": "info", "format": "", "findings": [], "inspected": "none", "note": note}


# Wiring into the main window (kept here so that main_window.py only calls these).

def folder_views(window: Any) -> list[FolderView]:
    tabs = window.tabs
    return [w for i in range(tabs.count()) if isinstance(w := tabs.widget(i), FolderView)]


def open_folders(window: Any, folders: list[str], *, start: bool = True) -> list[FolderView]:
    """A tab per folder, scanning (unless not `start`: see start_folders); a file double-clicked in it
    opens in the window."""
    opened = []
    for path in folders:
        view = FolderView(path)
        view.scan_finished.connect(lambda v, w=window: _folder_finished(w, v))
        view.open_file.connect(lambda p, w=window: w.open_paths([p]))
        index = window.tabs.addTab(view, theme.severity_icon(Severity.INFO), safe_path(view.name, 60) + "/")
        window.tabs.setTabToolTip(index, "")
        if start:
            view.start_scan()
        opened.append(view)
    return opened


def start_folders(folders: list[FolderView], listing: dict[str, list[tuple[str, str]]],
                  tabs: list[Any]) -> None:
    """Start the folder tabs' scans. A plain folder's files that have a tab of their own are scanned
    there once, and the folder shows those results; a Hugging Face cache scans by revision itself."""
    by_path = {view.path: view for view in tabs}
    for folder in folders:
        files = listing.get(folder.path)
        if folder.hf or files is None:
            folder.start_scan()
            continue
        folder.start_scan([(shown, by_path[real]) for shown, real in files if real in by_path],
                          [real for _, real in files if real not in by_path])


def tab_closing(window: Any, view: Any) -> None:
    for folder in folder_views(window):
        folder.tab_closing(view)


def _folder_finished(window: Any, view: FolderView) -> None:
    index = window.tabs.indexOf(view)
    if index >= 0:
        severity = view.severity
        word = severity.label.upper() if severity != Severity.NONE else "NO FINDINGS"
        word = "FAILED" if view.error else word
        window.tabs.setTabIcon(index, theme.severity_icon(severity))
        window.tabs.setTabText(index, f"{safe_path(view.name, 60)}/ — {word}")
    if not any(v.busy for v in window.views()) and not any_busy(window):
        window.all_scans_finished.emit()


def any_busy(window: Any) -> bool:
    return any(v.busy for v in folder_views(window))


def close_folder_tab(window: Any, index: int) -> bool:
    view = window.tabs.widget(index)
    if not isinstance(view, FolderView):
        return False
    view.cancel()
    window.tabs.removeTab(index)
    view.deleteLater()
    if not window.tabs.count():
        window.stack.setCurrentWidget(window.welcome)
    return True
