"""The main window: open files (drop, File ▸ Open, recent, command line), one tab per file."""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Iterable

from PySide6.QtCore import QEvent, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QTabWidget,
    QToolBar,
    QWidget,
)

from airlock.core.findings import Severity
from airlock.core.source import is_url
from airlock.core.text import safe_path
from airlock.gui import export, provenance_view, session, theme
from airlock.gui.file_view import FileView
from airlock.gui.on_disk import DiskWatch
from airlock.gui.start_page import StartPage
from airlock.gui.workers import FunctionWorker, pool, release_frozen, warm_up_plotting

MIN_WIDTH, MIN_HEIGHT = 1280, 800
SEARCH_DEBOUNCE_MS = 250  # a pause in the typing this long starts the search
WARM_UP_DELAY_MS = 1500  # after start-up, matplotlib is imported in the background (the first histogram)
MAX_RECENT = 12
MAX_FILES_PER_FOLDER = 200


MODEL_FILTERS = (
    "Model files (*.safetensors *.gguf *.pt *.pth *.ckpt *.bin *.pkl *.pickle *.joblib *.npy *.npz *.onnx "
    "*.keras *.h5 *.hdf5 *.nemo *.pt2 *.tflite *.jinja *.json *.yaml *.yml *.tar *.tgz *.gz *.7z *.zip)",
    "All files (*)",
)


def expand_paths(paths: Iterable[str], empty: list[str] | None = None,
                 listing: dict[str, list[tuple[str, str]]] | None = None) -> list[str]:
    """Files for the given paths: a folder contributes the files below it (sorted). Folders that
    contribute none go to `empty` when given; `listing`, when given, gets each folder's files as
    (path shown, path read)."""
    from airlock.core.scan import iter_files

    out: list[str] = []
    for path in paths:
        if not is_url(path) and os.path.isdir(path):  # a URL is never looked up on disk
            pairs = list(iter_files(path))
            if not pairs and empty is not None:
                empty.append(path)
            if listing is not None:
                listing[path] = pairs
            out.extend(real for _, real in pairs)
        else:
            out.append(path)
    return out


# A file name that is not UTF-8 (carried as lone surrogates) does not survive a QString: it is kept
# in the settings as its bytes in base64 behind this prefix, which no absolute path starts with.
_BYTES_PREFIX = "bytes:"


def _to_setting(path: str) -> str:
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return _BYTES_PREFIX + base64.b64encode(raw).decode("ascii")
    return path


def _from_setting(value: str) -> str:
    if value.startswith(_BYTES_PREFIX):
        try:
            return os.fsdecode(base64.b64decode(value[len(_BYTES_PREFIX):], validate=True))
        except ValueError:
            return ""
    return value


def empty_folder_words(folders: list[str]) -> str:
    lines = []
    for folder in folders[:5]:
        shown = safe_path(folder, 200)
        if not os.access(folder, os.R_OK | os.X_OK):
            lines.append(f"{shown}: its contents cannot be read (permission denied).")
        else:
            lines.append(f"{shown}: there is no file in it, nor in its subfolders.")
    return "Nothing to open.\n\n" + "\n".join(lines)


class MainWindow(QMainWindow):
    all_scans_finished = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Airlock — look inside model files without loading them")
        self.setWindowIcon(theme.app_icon())
        self.resize(MIN_WIDTH, MIN_HEIGHT)
        self.setMinimumSize(960, 600)
        self.setAcceptDrops(True)

        self.tabs = QTabWidget()
        self.tabs.setTabsClosable(True)
        self.tabs.setMovable(True)
        self.tabs.setDocumentMode(True)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.welcome = StartPage(self)  # recent files, samples, drop target, formats
        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.tabs)
        self.setCentralWidget(self.stack)

        self.search = QLineEdit(placeholderText="Search names and values (Ctrl+F) — Enter: find next")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(360)
        self.search.textChanged.connect(self._search_changed)
        self.search.returnPressed.connect(self.find_next)
        # Typing only restarts this timer; the search starts once the typing pauses, in a worker.
        self.search_timer = QTimer(self)
        self.search_timer.setSingleShot(True)
        self.search_timer.setInterval(SEARCH_DEBOUNCE_MS)
        self.search_timer.timeout.connect(self.apply_search)
        self._search_target: FileView | None = None  # the tab the pending text was typed for
        self.risky_only = QCheckBox("Show only risky")
        self.risky_only.toggled.connect(self._risky_toggled)
        # The state stays in a permanent label; showMessage() is for passing messages (they expire).
        self.state_label = QLabel("Ready. Nothing you open is ever executed.")
        self.state_label.setTextFormat(Qt.TextFormat.PlainText)
        self.statusBar().addPermanentWidget(self.state_label)
        self.notice: QMessageBox | None = None
        self._build_actions()
        from airlock.gui import review

        review.install(self)  # Review ▸ Approve… / Reject… / Show History, and each file's Review tab
        from airlock.gui import diff_view

        diff_view.install(self)  # File ▸ Compare with…: a diff tab
        self._update_actions()
        self.warm_up: FunctionWorker | None = None
        QTimer.singleShot(WARM_UP_DELAY_MS, self.start_warm_up)
        self.disk = DiskWatch(self)  # opened files that change on disk make their tab stale
        self.disk.changed.connect(self._file_changed)

    def start_warm_up(self) -> None:
        """matplotlib (~1 s to import and set up its fonts) is loaded in a pool thread, once."""
        if self.warm_up is None:
            self.warm_up = FunctionWorker(warm_up_plotting, plain=True)
            pool().start(self.warm_up)

    # Menus and toolbar

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_action = file_menu.addAction("&Open…", self.open_dialog)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_folder_action = file_menu.addAction("Open &Folder…", self.open_folder_dialog)
        self.open_url_action = file_menu.addAction("Open &URL…", self.open_url_dialog)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self.reload_action = file_menu.addAction("Re&load from Disk", self.reload_current_tab)
        self.reload_action.setShortcut("F5")
        file_menu.addSeparator()
        self.export_st_action = file_menu.addAction("&Export to SafeTensors…", self.export_safetensors)
        self.export_st_action.setShortcut("Ctrl+E")
        report_menu = file_menu.addMenu("Export &Report")
        self.report_actions = [
            report_menu.addAction("JSON…", lambda: self.export_report("json")),
            report_menu.addAction("SARIF…", lambda: self.export_report("sarif")),
            report_menu.addAction("HTML page…", lambda: self.export_report("html")),
        ]
        file_menu.addSeparator()
        close = file_menu.addAction("&Close Tab", lambda: self.close_tab(self.tabs.currentIndex()))
        close.setShortcut(QKeySequence.StandardKey.Close)
        quit_action = file_menu.addAction("&Quit", self.close)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)

        edit = menu.addMenu("&Edit")
        find = edit.addAction("&Find…", self.focus_search)
        find.setShortcut(QKeySequence.StandardKey.Find)
        find_next = edit.addAction("Find &Next", self.find_next)
        find_next.setShortcut(QKeySequence.StandardKey.FindNext)
        worst = edit.addAction("Go to &Worst Finding", self.select_worst_finding)
        worst.setShortcut("Ctrl+J")

        view = menu.addMenu("&View")
        self.risky_action = view.addAction("Show Only &Risky")
        self.risky_action.setCheckable(True)
        self.risky_action.setShortcut("Ctrl+R")
        self.risky_action.toggled.connect(self.risky_only.setChecked)
        focus = view.addMenu("&Focus")
        for label, key, target in (("Tree", "Alt+1", "tree"), ("Findings", "Alt+2", "findings"),
                                   ("Details", "Alt+3", "details")):
            act = focus.addAction(label, functools.partial(self.focus_part, target))
            act.setShortcut(key)
        theme_menu = view.addMenu("&Theme")
        group = QActionGroup(self)
        current = theme.saved_choice()
        for label, choice in (("Follow System", theme.SYSTEM), ("Light", theme.LIGHT), ("Dark", theme.DARK)):
            act = theme_menu.addAction(label, functools.partial(self.set_theme, choice))
            act.setCheckable(True)
            act.setChecked(choice == current)
            group.addAction(act)

        help_menu = menu.addMenu("&Help")
        help_menu.addAction("&About Airlock", self.show_about)

        bar = QToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        bar.addAction(self.open_action)
        bar.addAction(self.export_st_action)
        report = QAction("Export Report…", self)
        report.triggered.connect(lambda: self.export_report("html"))
        self.report_actions.append(report)
        bar.addAction(report)
        bar.addSeparator()
        spacer = QWidget()
        spacer.setFixedWidth(12)
        bar.addWidget(spacer)
        bar.addWidget(self.search)
        bar.addWidget(self.risky_only)
        self.addToolBar(bar)

    def _update_actions(self) -> None:
        view = self.current_view()
        ready = view is not None and view.result is not None and view.stale is None
        self.reload_action.setEnabled(view is not None and not view.busy)
        for act in self.report_actions:
            act.setEnabled(ready)
        self.export_st_action.setEnabled(ready and view is not None and export.can_convert(view))
        busy = sum(1 for v in self.views() if v.busy)
        if busy:
            self.state_label.setText(f"{len(self.views())} file(s) open · analysing {busy}… (nothing runs)")
        elif self.views():
            self.state_label.setText(f"{len(self.views())} file(s) open. Nothing was executed.")
        else:
            self.state_label.setText("Ready. Nothing you open is ever executed.")

    # Opening

    def views(self) -> list[FileView]:
        return [w for i in range(self.tabs.count()) if isinstance(w := self.tabs.widget(i), FileView)]

    def current_view(self) -> FileView | None:
        widget = self.tabs.currentWidget()
        return widget if isinstance(widget, FileView) else None

    def open_paths(self, paths: Iterable[str]) -> list[FileView]:
        paths = list(paths)
        empty: list[str] = []
        listing: dict[str, list[tuple[str, str]]] = {}
        files = expand_paths([p for p in paths if not provenance_view.is_hf_folder(p)], empty, listing)
        if empty and not files:
            self.notify("Empty folder", empty_folder_words(empty))
        elif empty:
            self.statusBar().showMessage(f"{len(empty)} folder(s) held no files.", 6000)
        # A folder gets a tab of its own (signature state, files and verdicts); a Hugging Face cache
        # is only that tab, each revision scanned once (its files open from it on double-click).
        listed = [p for p in paths if os.path.isdir(p) and p not in empty]
        folders = provenance_view.open_folders(self, listed, start=False)
        if len(files) > MAX_FILES_PER_FOLDER:
            self.notify("Airlock", f"{len(files):,} files found; opening the first {MAX_FILES_PER_FOLDER}. "
                        "Use `airlock scan` for whole trees.")
            files = files[:MAX_FILES_PER_FOLDER]
        opened = []
        for path in files:
            view = FileView(path)
            session.apply_splitters(view)
            view.scan_finished.connect(self._scan_finished)
            view.filter_changed.connect(self._view_filter_changed)
            view.reload_requested.connect(self.reload_view)
            if not is_url(path):  # a remote file has no disk to watch
                self.disk.watch(path)
            index = self.tabs.addTab(view, theme.severity_icon(Severity.INFO), safe_path(view.name, 60))
            self.tabs.setTabToolTip(index, "")
            view.start_scan()
            opened.append(view)
        provenance_view.start_folders(folders, listing, opened)  # each file scanned once, in its tab
        for path in paths:
            if not is_url(path):
                self.add_recent(path)
        if opened or folders:
            self.stack.setCurrentWidget(self.tabs)
            self.tabs.setCurrentWidget(folders[0] if folders else opened[0])
        self._update_actions()
        return opened

    def notify(self, title: str, text: str) -> QMessageBox:
        """A message that does not block the window (the app goes on analysing behind it)."""
        box = QMessageBox(QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, self)
        box.setTextFormat(Qt.TextFormat.PlainText)  # folder names come from the disk
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.notice = box
        return box

    def open_file_dialog(self) -> QFileDialog:
        dialog = QFileDialog(self, "Open model files")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setNameFilters(list(MODEL_FILTERS))
        return dialog

    def open_dialog(self) -> None:
        dialog = self.open_file_dialog()
        if dialog.exec() and dialog.selectedFiles():
            self.open_paths(dialog.selectedFiles())

    def open_url_dialog(self) -> None:
        """A remote file (https://…, hf://org/name[@revision]/path, s3://…), read by range requests only."""
        text, ok = QInputDialog.getText(self, "Open URL", "URL of a model file (https://…, "
                                        "hf://org/name[@revision]/path or s3://bucket/key):")
        url = text.strip()
        if not ok or not url:
            return
        if not is_url(url):
            QMessageBox.information(self, "Airlock",
                                    "Not a URL Airlock reads: use https://, http://, hf:// or s3://.")
            return
        self.open_paths([url])

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a model folder")
        if path:
            self.open_paths([path])

    def _scan_finished(self, view: FileView) -> None:
        self._show_tab_state(view)
        self._update_actions()
        if not any(v.busy for v in self.views()) and not provenance_view.any_busy(self):
            self.all_scans_finished.emit()

    def _show_tab_state(self, view: FileView) -> None:
        index = self.tabs.indexOf(view)
        if index < 0:
            return
        if view.busy:
            self.tabs.setTabIcon(index, theme.severity_icon(Severity.INFO))
            self.tabs.setTabText(index, safe_path(view.name, 60))
            return
        shown = view.banner.verdict  # core's wording (airlock.core.verdict); None when the scan was cancelled
        sev = shown.severity if shown is not None else Severity.HIGH  # not read: never looks clean
        word = shown.word if shown is not None else "CANCELLED"
        self.tabs.setTabIcon(index, theme.severity_icon(sev))
        stale = " · changed on disk" if view.stale is not None else ""
        self.tabs.setTabText(index, f"{safe_path(view.name, 60)} — {word}{stale}")

    # The files on disk

    def _file_changed(self, path: str) -> None:
        for view in self.views():
            if view.path == path and view.check_on_disk():
                self._show_tab_state(view)
        self._update_actions()

    def reload_current_tab(self) -> bool:
        """Analyse the current tab's file again (its "changed on disk" bar; Reload, F5); the selected
        node is selected again where it still exists. False when there is nothing to reload or it is busy."""
        view = self.current_view()
        return view is not None and self.reload_view(view)

    def reload_view(self, view: FileView) -> bool:
        if self.tabs.indexOf(view) < 0 or not session.reload_view(view):
            return False
        self.disk.watch(view.path)
        self._show_tab_state(view)
        self._update_actions()
        return True

    def close_tab(self, index: int) -> None:
        view = self.tabs.widget(index)
        if provenance_view.close_folder_tab(self, index):
            return
        if not isinstance(view, FileView):
            from airlock.gui.diff_view import DiffView

            if isinstance(view, DiffView):  # a diff tab (File ▸ Compare with…)
                self.tabs.removeTab(index)
                view.cancel()
                view.deleteLater()
            return
        if self._search_target is view:
            self.search_timer.stop()
            self._search_target = None
        provenance_view.tab_closing(self, view)
        self.tabs.removeTab(index)
        self.disk.forget(view.path, lambda p: any(v.path == p for v in self.views()))
        view.close_result()
        view.deleteLater()
        release_frozen()
        if not self.tabs.count():
            self.stack.setCurrentWidget(self.welcome)
        self._update_actions()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            view = self.current_view()  # back in the window: was its file changed meanwhile?
            if view is not None and view.check_on_disk():
                self._show_tab_state(view)
                self._update_actions()
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        session.save_window(self)
        pool().cancel_all()
        pool().wait(5000)
        for view in self.views():
            view.close_result()
        super().closeEvent(event)

    # Recent files

    def recent(self) -> list[str]:
        value = QSettings().value("recent", [])
        items = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
        return [_from_setting(p) for p in items if isinstance(p, str)]

    def add_recent(self, path: str) -> None:
        path = os.path.abspath(path)
        items = [path] + [p for p in self.recent() if p != path]
        QSettings().setValue("recent", [_to_setting(p) for p in items[:MAX_RECENT]])

    def clear_recent(self) -> None:
        QSettings().remove("recent")

    def _fill_recent(self) -> None:
        items = [p for p in self.recent() if os.path.exists(p)]
        QSettings().setValue("recent", [_to_setting(p) for p in items])  # missing files are pruned
        self.recent_menu.clear()
        for path in items:
            self.recent_menu.addAction(safe_path(path, 120), functools.partial(self.open_paths, [path]))
        if not items:
            self.recent_menu.addAction("(none)").setEnabled(False)

    # Drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # Search, filter, focus

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _search_changed(self, _text: str) -> None:
        self._search_target = self.current_view()
        self.search_timer.start()  # restarted by every keystroke: nothing runs while typing

    def apply_search(self) -> None:
        """Hand the typed text to the tab it was typed for (its own filter, searched in a worker)."""
        self.search_timer.stop()
        view, self._search_target = self._search_target, None
        if view is not None and self.tabs.indexOf(view) >= 0:
            view.set_filter(self.search.text())

    def find_next(self) -> None:
        view = self.current_view()
        if view is None:
            return
        if self.search_timer.isActive() or view.filter_text != self.search.text().strip():
            self._search_target = view
            self.apply_search()  # Enter does not wait for the pause
        found = view.find_next()
        if found is None and self.search.text().strip():
            more = "" if view.search_done else " yet (still searching)"
            self.statusBar().showMessage(f"No match{more}.", 4000)

    def _risky_toggled(self, on: bool) -> None:
        self.risky_action.setChecked(on)
        view = self.current_view()
        if view is not None:
            view.set_risky_only(on)

    def _show_filter_of(self, view: FileView | None) -> None:
        """The search box and the risky toggle show the current tab's own filter."""
        for widget in (self.search, self.risky_only, self.risky_action):
            widget.blockSignals(True)
        self.search.setText(view.filter_text if view is not None else "")
        on = view.risky_only if view is not None else False
        self.risky_only.setChecked(on)
        self.risky_action.setChecked(on)
        for widget in (self.search, self.risky_only, self.risky_action):
            widget.blockSignals(False)

    def _view_filter_changed(self, view: FileView) -> None:
        if view is self.current_view():
            self.search_timer.stop()
            self._search_target = None
            self._show_filter_of(view)

    def _tab_changed(self, _index: int) -> None:
        if self.search_timer.isActive():
            self.apply_search()  # the text typed belongs to the tab it was typed in
        view = self.current_view()
        self._show_filter_of(view)
        if view is not None and view.check_on_disk():  # where the watcher said nothing
            self._show_tab_state(view)
        self._update_actions()

    def focus_part(self, part: str) -> None:
        view = self.current_view()
        if view is not None:
            {"tree": view.tree, "findings": view.findings, "details": view.details.tabs}[part].setFocus()

    def select_worst_finding(self) -> bool:
        view = self.current_view()
        return view.select_worst_finding() if view is not None else False

    def set_theme(self, choice: str) -> None:
        theme.apply(choice)
        QTimer.singleShot(0, self._repaint_views)

    def _repaint_views(self) -> None:
        for view in self.views():
            view.tree.viewport().update()
            view.findings.viewport().update()

    # Export and about

    def export_safetensors(self) -> None:
        view = self.current_view()
        if view is not None:
            export.ConvertFlow(self, view).start()

    def export_report(self, kind: str) -> None:
        view = self.current_view()
        if view is not None and view.result is not None:
            export.save_report_dialog(self, view.result, kind)

    def show_about(self) -> None:
        from airlock.gui.about import AboutDialog

        AboutDialog(self).exec()
