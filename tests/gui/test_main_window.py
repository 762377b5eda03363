"""The main window: drop files, jump from findings to nodes and bytes, stay responsive, export."""

import json
import os
import pickle
import subprocess
import sys

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent, QImage
from PySide6.QtWidgets import QApplication, QLabel

from airlock.core.findings import Severity
from airlock.gui import theme
from airlock.gui.app import Screenshot
from airlock.gui.demo import hostile_pickle_bytes, safetensors_bytes
from airlock.gui.details.pane import TAB_DECOMPILED, TAB_HEX
from airlock.gui.export import html_report, report_text
from airlock.gui.tree_model import NODE_ROLE


def search_and_wait(qtbot, win, view, text):
    """Type `text` as a user would, and wait for the tab's search to finish (results drained)."""
    with qtbot.waitSignal(view.search_finished, timeout=60_000):
        win.search.setText(text)
        win.apply_search()
    qtbot.waitUntil(lambda: not view._pending, timeout=10_000)


@pytest.fixture
def hostile(tmp_path):
    path = tmp_path / "hostile.pkl"
    path.write_bytes(hostile_pickle_bytes())
    return path


def test_default_size_is_at_least_1280x800(window):
    assert window.width() >= 1280 and window.height() >= 800


def test_drop_a_file_opens_a_tab_with_its_verdict(qtbot, window, hostile, tmp_path):
    clean = tmp_path / "model.safetensors"
    clean.write_bytes(safetensors_bytes())
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(hostile)), QUrl.fromLocalFile(str(clean))])
    event = QDropEvent(QPointF(100, 100), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.all_scans_finished, timeout=60_000):
        window.dropEvent(event)
    assert event.isAccepted()
    assert window.tabs.count() == 2
    assert window.tabs.tabText(0) == "hostile.pkl — CRITICAL"
    assert window.tabs.tabText(1).startswith("model.safetensors — ")
    view = window.views()[0]
    assert view.banner.severity == Severity.CRITICAL
    assert view.banner.label.textFormat() == Qt.TextFormat.PlainText
    assert view.banner.label.text().startswith("CRITICAL — loading this file runs code: calls os.system(")
    assert str(hostile) in window.recent()


def test_dropping_a_folder_opens_every_file_in_it(qtbot, open_and_wait, window, tmp_path):
    folder = tmp_path / "repo"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.pkl").write_bytes(pickle.dumps({"a": 1}))
    (folder / "sub" / "b.pkl").write_bytes(hostile_pickle_bytes())
    open_and_wait(window, [folder])
    assert sorted(v.name for v in window.views()) == ["a.pkl", "b.pkl"]


def test_selecting_a_finding_selects_its_node_and_bytes(qtbot, open_and_wait, window, hostile):
    (view,) = open_and_wait(window, [hostile])
    finding = view.findings.findings[0]
    assert finding.severity == Severity.CRITICAL
    view.tree.collapseAll()
    view.findings.select_row(0)
    current = view.tree.currentIndex()
    assert current.data(NODE_ROLE) is finding.node
    assert view.tree.isExpanded(current.parent())  # revealed
    start = finding.node.attrs["call_start"]  # the call whole: its GLOBAL through its REDUCE
    assert view.details.hex.marked == (start, finding.offset + 1 - start)
    assert view.details.tabs.currentIndex() == TAB_HEX
    assert view.details.tabs.isTabVisible(TAB_DECOMPILED)
    qtbot.waitUntil(lambda: "system(" in view.details.decompiled.text.toPlainText(), timeout=10_000)


def test_finding_on_a_node_hidden_by_the_filter_clears_the_filter(qtbot, open_and_wait, window, hostile):
    (view,) = open_and_wait(window, [hostile])
    search_and_wait(qtbot, window, view, "no such text anywhere")
    model = view.tree.model()
    assert model is view.results and model.rowCount(model.index(0, 0)) == 0
    assert "showing 0 of" in view.filter_bar.label.text()
    view.findings.select_row(0)
    assert view.tree.currentIndex().data(NODE_ROLE) is view.findings.findings[0].node
    assert view.tree.model() is view.model and not view.filter_bar.isVisibleTo(view)
    assert window.search.text() == ""  # the box shows the tab's filter: none now


def test_find_next_reaches_into_lazy_opcode_lists(qtbot, open_and_wait, window, hostile):
    (view,) = open_and_wait(window, [hostile])
    search_and_wait(qtbot, window, view, "STACK_GLOBAL")  # protocol 2 has none: nothing found
    window.find_next()
    assert window.statusBar().currentMessage() == "No match."
    search_and_wait(qtbot, window, view, "REDUCE")
    window.find_next()
    assert view.current_node().kind == "call"  # its attrs say opcode REDUCE
    window.find_next()
    node = view.current_node()
    assert node.kind == "opcode" and node.label == "REDUCE"
    assert node.parent.is_lazy  # the opcode list was never expanded by hand
    window.find_next()
    assert view.current_node().kind == "call"  # wraps around to the first match


def test_show_only_risky_hides_the_rest(qtbot, open_and_wait, window, hostile):
    (view,) = open_and_wait(window, [hostile])
    with qtbot.waitSignal(view.search_finished, timeout=60_000):
        window.risky_action.setChecked(True)
    qtbot.waitUntil(lambda: not view._pending, timeout=10_000)
    assert window.risky_only.isChecked() and view.risky_only
    model = view.tree.model()
    root = model.index(0, 0)
    pickle_index = model.index(0, 0, root)
    assert model.rowCount(pickle_index) == 1  # only "calls"
    assert "risky only" in view.filter_bar.label.text()


@pytest.mark.slow
def test_the_event_loop_keeps_running_while_a_large_file_scans(qtbot, window, tmp_path):
    # Behaviour only: the scan runs in a worker, so the GUI thread keeps handling events (timer
    # ticks) until the result arrives; scanning on the GUI thread would deliver none meanwhile. How
    # long the window may stall is a benchmark row (benchmarks/gui_scan_stall.py), not a test.
    path = tmp_path / "big.pkl"
    path.write_bytes(pickle.dumps([{"w": float(i), "k": i} for i in range(150_000)], protocol=4))
    ticks: list[bool] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(window.current_view() is not None
                                               and window.current_view().result is None))
    timer.start()
    with qtbot.waitSignal(window.all_scans_finished, timeout=120_000):
        window.open_paths([str(path)])
    timer.stop()
    assert window.current_view().result is not None
    assert sum(ticks) >= 3, "the GUI thread handled no events while the scan ran"


def test_worker_threads_hand_the_gil_back_to_the_gui_quickly(window):
    # Painting calls into Python dozens of times; each call waits up to the switch interval for a
    # busy worker to drop the GIL (5 ms by default froze a first paint for 0.3-0.4 s).
    from airlock.gui.workers import GUI_SWITCH_INTERVAL_S, pool

    pool()
    assert sys.getswitchinterval() <= GUI_SWITCH_INTERVAL_S < 0.005


def test_recent_files_are_persisted_and_missing_ones_pruned(qtbot, open_and_wait, window, hostile, tmp_path):
    gone = tmp_path / "gone.pkl"
    gone.write_bytes(b"N.")
    open_and_wait(window, [gone, hostile])
    gone.unlink()
    assert str(gone) in window.recent()
    window._fill_recent()
    assert window.recent() == [str(hostile)]
    assert [a.text() for a in window.recent_menu.actions()] == [str(hostile)]


def test_reports_escape_hostile_names(qtbot, open_and_wait, window, tmp_path):
    name = "evil<script>alert(1)<\u202e>.pkl"
    path = tmp_path / name
    path.write_bytes(hostile_pickle_bytes())
    (view,) = open_and_wait(window, [path])
    page = html_report(view.result)
    assert "<script>" not in page and "&lt;script&gt;" in page and "\u202e" not in page
    assert "CRITICAL" in page and "PKL" in page
    doc = json.loads(report_text(view.result, "json"))
    assert doc["files"][0]["severity"] == "critical"
    sarif = json.loads(report_text(view.result, "sarif"))
    assert sarif["runs"][0]["results"]


def test_theme_switch_and_about(qtbot, window):
    window.set_theme(theme.DARK)
    assert theme.is_dark()
    window.set_theme(theme.LIGHT)
    assert not theme.is_dark()
    from airlock.gui.about import AboutDialog, about_text, licence_text

    assert "pickle" in about_text()
    assert "LGPL-3.0" in licence_text() and "Apache License 2.0" in licence_text()
    dialog = AboutDialog(window)
    qtbot.addWidget(dialog)
    assert all(label.textFormat() == Qt.TextFormat.PlainText for label in dialog.findChildren(QLabel)
               if label.text().startswith("Airlock"))


def test_screenshot_object_selects_the_worst_finding_and_saves(qtbot, open_and_wait, window, hostile, tmp_path):
    open_and_wait(window, [hostile])
    out = tmp_path / "shot.png"
    shot = Screenshot(window, str(out), timeout_s=30)
    shot._show_worst()
    view = window.current_view()
    assert view.tree.currentIndex().data(NODE_ROLE) is view.findings.findings[0].node
    assert shot.save()
    image = QImage(str(out))
    assert image.width() >= 1280 and image.height() >= 800


def test_the_screenshot_waits_for_the_columns_to_be_fitted(qtbot, open_and_wait, window, hostile, tmp_path,
                                                          monkeypatch):
    """Showing the worst finding expands rows and schedules a column fit: the picture is taken after it
    (taken before, Name kept Qt's default widths around it and was squeezed to a few letters)."""
    import airlock.gui.app as app_module
    from airlock.gui import columns
    from airlock.gui.workers import pool

    exits = []  # _poll ends the command's event loop once saved; here that would end the next test's wait

    class App:
        @staticmethod
        def exit(code=0):
            exits.append(code)

    monkeypatch.setattr(app_module, "QCoreApplication", App)

    open_and_wait(window, [hostile])
    view = window.current_view()
    shot = Screenshot(window, str(tmp_path / "shot.png"), timeout_s=30)
    shot._show_worst()
    qtbot.waitUntil(lambda: not pool().busy and not view.columns_pending(), timeout=30_000)
    view.tree.collapseAll()
    view.tree.expand(view.tree.model().index(0, 0))  # rows shown: a fit is scheduled
    assert view.columns_pending()
    shot._stage = "details"
    shot._poll()
    assert shot.saved is None  # not yet: the columns are still to be fitted
    qtbot.waitUntil(lambda: not view.columns_pending(), timeout=10_000)
    shot._poll()
    assert shot.saved is True and exits == [0]
    assert view.tree.header().sectionSize(0) >= columns.NAME_MIN


def test_screenshot_command_line(tmp_path, hostile):
    out = tmp_path / "cli.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.run([sys.executable, "-m", "airlock.gui.launcher", "--screenshot", str(out), str(hostile)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(out))
    assert image.width() >= 1280 and image.height() >= 800
    assert QApplication.instance() is not None


@pytest.mark.skipif(sys.platform == "win32", reason="file names are UTF-16 there, not bytes")
def test_a_file_name_that_is_not_utf8(qtbot, open_and_wait, window, tmp_path):
    """Tab title, tree and info line show the undecodable bytes escaped; recent files keep the file."""
    raw = os.path.join(os.fsencode(tmp_path), b"bad\xffname.pkl")
    with open(raw, "wb") as fh:
        fh.write(hostile_pickle_bytes())
    (view,) = open_and_wait(window, [os.fsdecode(raw)])
    index = window.tabs.indexOf(view)
    assert window.tabs.tabText(index).startswith("bad\\xffname.pkl — ")
    root = view.tree.model().index(0, 0)
    assert root.data() == "bad\\xffname.pkl"
    assert "bad\\xffname.pkl" in view.info.text()
    assert view.result.severity == Severity.CRITICAL
    doc = json.loads(report_text(view.result, "json"))
    assert doc["files"][0]["path_bytes_b64"]
    page = html_report(view.result)
    assert "bad\\xffname.pkl" in page and "\udcff" not in page
    window._fill_recent()
    assert window.recent() == [os.fsdecode(raw)]  # still there: the name survived the settings file
    assert [a.text() for a in window.recent_menu.actions()] == [str(tmp_path) + "/bad\\xffname.pkl"]
