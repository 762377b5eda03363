"""GUI tests run headless (offscreen) and never touch the user's settings."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QSettings


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory, qapp):
    """QSettings go to a temporary folder, so recent files and the theme start empty."""
    folder = tmp_path_factory.mktemp("settings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    qapp.setOrganizationName("AirlockTests")
    qapp.setApplicationName("AirlockTests")
    QSettings().clear()
    yield


@pytest.fixture(autouse=True)
def idle_pool():
    """Leave no worker running into the next test."""
    yield
    from airlock.gui.workers import pool

    pool().cancel_all()
    pool().wait(10_000)


@pytest.fixture
def window(qtbot):
    """The main window, shown (offscreen) and closed after the test."""
    from airlock.gui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


@pytest.fixture
def open_and_wait(qtbot):
    """open_and_wait(window, paths) opens the files in `window` and returns their tabs once every scan is
    done (the window's all_scans_finished signal)."""

    def open_paths(win, paths, timeout: int = 120_000):
        with qtbot.waitSignal(win.all_scans_finished, timeout=timeout):
            views = win.open_paths([str(p) for p in paths])
        return views

    return open_paths
