"""File ▸ Open URL…: a remote file scanned by range requests from a real local HTTP server."""

from __future__ import annotations

import range_server
from PySide6.QtWidgets import QInputDialog, QMessageBox

from airlock.core.findings import Severity
from airlock.gui.demo import hostile_pickle_bytes


def test_open_url_scans_a_remote_file(qtbot, window, tmp_path, monkeypatch):
    root = tmp_path / "served"
    range_server.hf_path(root, "org/name", "main", "hostile.pkl").write_bytes(hostile_pickle_bytes())
    with range_server.serve(root) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("  hf://org/name/hostile.pkl ", True))
        with qtbot.waitSignal(window.all_scans_finished, timeout=60_000):
            window.open_url_action.trigger()
        assert server.requests >= 1
    assert window.tabs.count() == 1
    view = window.views()[0]
    assert view.path == "hf://org/name/hostile.pkl"
    assert view.banner.verdict is not None and view.banner.verdict.severity == Severity.CRITICAL
    assert "hostile.pkl" in window.tabs.tabText(0)
    assert window.recent() == []  # a URL is not a recent local file


def test_open_url_refuses_what_is_not_a_url(qtbot, window, monkeypatch):
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("/etc/passwd", True))
    told = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: told.append(a[2]))
    window.open_url_action.trigger()
    assert window.tabs.count() == 0 and told and "Not a URL" in told[0]
