"""The main window: open files (drop, File ▸ Open, recent, command line), one tab per file."""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Iterable

from PySide6.QtCore import QSettings, QTimer, Signal
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
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QTabWidget,
    QToolBar,
    QWidget,
)

from airlock.core.findings import Severity
from airlock.core.text import safe_path
from airlock.gui import export, session, theme
from airlock.gui.file_view import FileView
from airlock.gui.start_page import StartPage
from airlock.gui.workers import pool, release_frozen

MIN_WIDTH, MIN_HEIGHT = 1280, 800
MAX_RECENT = 12
MAX_FILES_PER_FOLDER = 200


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files for the given paths: a folder contributes the files below it (sorted)."""
    from airlock.core.scan import iter_files

    out: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            out.extend(real for _, real in iter_files(path))
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
        self.risky_only = QCheckBox("Show only risky")
        self.risky_only.toggled.connect(self._risky_toggled)
        self._build_actions()
        from airlock.gui import review

        review.install(self)  # Review ▸ Approve… / Reject… / Show History, and each file's Review tab
        self._update_actions()
        self.statusBar().showMessage("Ready. Nothing you open is ever executed.")

    # Menus and toolbar

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_action = file_menu.addAction("&Open…", self.open_dialog)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_folder_action = file_menu.addAction("Open &Folder…", self.open_folder_dialog)
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
        ready = view is not None and view.result is not None
        self.reload_action.setEnabled(view is not None and not view.busy)
        for act in self.report_actions:
            act.setEnabled(ready)
        self.export_st_action.setEnabled(ready and view is not None and export.can_convert(view))
        busy = sum(1 for v in self.views() if v.busy)
        if busy:
            self.statusBar().showMessage(f"{len(self.views())} file(s) open · analysing {busy}…")
        elif self.views():
            self.statusBar().showMessage(f"{len(self.views())} file(s) open. Nothing was executed.")

    # Opening

    def views(self) -> list[FileView]:
        return [w for i in range(self.tabs.count()) if isinstance(w := self.tabs.widget(i), FileView)]

    def current_view(self) -> FileView | None:
        widget = self.tabs.currentWidget()
        return widget if isinstance(widget, FileView) else None

    def open_paths(self, paths: Iterable[str]) -> list[FileView]:
        paths = list(paths)
        files = expand_paths(paths)
        if len(files) > MAX_FILES_PER_FOLDER:
            QMessageBox.information(self, "Airlock", f"{len(files):,} files found; opening the first "
                                    f"{MAX_FILES_PER_FOLDER}. Use `airlock scan` for whole trees.")
            files = files[:MAX_FILES_PER_FOLDER]
        opened = []
        for path in files:
            view = FileView(path)
            session.apply_splitters(view)
            view.scan_finished.connect(self._scan_finished)
            index = self.tabs.addTab(view, theme.severity_icon(Severity.INFO), safe_path(view.name, 60))
            self.tabs.setTabToolTip(index, "")
            view.start_scan()
            opened.append(view)
        for path in paths:
            self.add_recent(path)
        if opened:
            self.stack.setCurrentWidget(self.tabs)
            self.tabs.setCurrentWidget(opened[0])
            view = opened[0]
            view.proxy.set_risky_only(self.risky_only.isChecked())
        self._update_actions()
        return opened

    def open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open model files")
        if paths:
            self.open_paths(paths)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a model folder")
        if path:
            self.open_paths([path])

    def _scan_finished(self, view: FileView) -> None:
        index = self.tabs.indexOf(view)
        if index >= 0:
            shown = view.banner.verdict  # None when the scan was cancelled
            sev = shown.severity if shown is not None else Severity.HIGH  # not read: never looks clean
            word = shown.word if shown is not None else "CANCELLED"
            self.tabs.setTabIcon(index, theme.severity_icon(sev))
            self.tabs.setTabText(index, f"{safe_path(view.name, 60)} — {word}")
        if view is self.current_view():
            view.set_risky_only(self.risky_only.isChecked())
            if self.search.text():
                view.set_filter(self.search.text())
        self._update_actions()
        if not any(v.busy for v in self.views()):
            self.all_scans_finished.emit()

    def close_tab(self, index: int) -> None:
        view = self.tabs.widget(index)
        if not isinstance(view, FileView):
            return
        self.tabs.removeTab(index)
        view.close_result()
        view.deleteLater()
        release_frozen()
        if not self.tabs.count():
            self.stack.setCurrentWidget(self.welcome)
        self._update_actions()

    def reload_current_tab(self) -> bool:
        """Read the current tab's file again (it may have changed on disk); the selection is kept."""
        view = self.current_view()
        if view is None or not session.reload_view(view):
            return False
        self._update_actions()
        return True

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

    def _search_changed(self, text: str) -> None:
        view = self.current_view()
        if view is not None and view.result is not None:
            view.set_filter(text)

    def find_next(self) -> None:
        view = self.current_view()
        if view is None:
            return
        found = view.find_next(self.search.text())
        if found is None and self.search.text().strip():
            self.statusBar().showMessage("No further match.", 4000)

    def _risky_toggled(self, on: bool) -> None:
        self.risky_action.setChecked(on)
        view = self.current_view()
        if view is not None and view.result is not None:
            view.set_risky_only(on)

    def _tab_changed(self, _index: int) -> None:
        view = self.current_view()
        if view is not None and view.result is not None:
            view.set_filter(self.search.text())
            view.set_risky_only(self.risky_only.isChecked())
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
