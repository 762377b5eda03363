"""The start page (recent files and folders, samples, drop target, formats), Reload (F5) and the
window layout remembered between runs."""

import os
import pickle

from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QSplitter

from airlock.core.findings import Severity
from airlock.gui import session
from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.demo_onnx import ONNX_MODEL
from airlock.gui.main_window import MainWindow
from airlock.gui.start_page import PATH_ROLE, StartPage, supported_formats


def recent_rows(page: StartPage):
    return [(page.recent.item(i).text(), page.recent.item(i).data(PATH_ROLE), bool(page.recent.item(i).flags()))
            for i in range(page.recent.count())]


def test_start_page_is_shown_first_and_lists_the_formats(window):
    assert window.stack.currentWidget() is window.welcome
    names = [name for name, _ in supported_formats()]
    assert "ONNX (with a graph view)" in names and "SafeTensors" in names and "GGUF" in names
    assert "inert" not in names and "not-inspected" not in names
    table = window.welcome.formats
    shown = [(table.topLevelItem(i).text(0), table.topLevelItem(i).text(1)) for i in range(table.topLevelItemCount())]
    assert shown[0] == ("PyTorch checkpoint (zip)", ".pt .pth .bin .ckpt .pt.tar .model")  # model formats first
    assert ("SafeTensors", ".safetensors") in shown and len(shown) == len(names)
    assert window.welcome.recent.item(0).text() == "Files and folders you open appear here."
    assert not window.welcome.clear_recent.isEnabled()


def test_recent_files_and_folders_persist_and_open_again(qtbot, open_and_wait, window, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "a.pkl").write_bytes(pickle.dumps({"a": 1}))
    single = tmp_path / "b.pkl"
    single.write_bytes(pickle.dumps([1, 2]))
    gone = tmp_path / "gone.pkl"
    gone.write_bytes(b"")
    open_and_wait(window, [gone])
    open_and_wait(window, [folder, single])
    gone.unlink()
    # a new window (a new run) sees them: they live in QSettings
    again = MainWindow()
    qtbot.addWidget(again)
    rows = recent_rows(again.welcome)
    assert [path for _, path, _ in rows] == [str(single), str(folder), str(gone)]
    assert rows[1][0].startswith("models    ")
    assert rows[2][0].endswith("(missing)") and rows[2][2] is False  # shown greyed, cannot be opened
    with qtbot.waitSignal(again.all_scans_finished, timeout=60_000):
        again.welcome._recent_activated(again.welcome.recent.item(1))
    assert [v.name for v in again.views()] == ["a.pkl"]
    again.welcome._clear_recent()
    assert again.recent() == [] and QSettings().value("recent") is None
    again.close()


def test_open_samples_opens_every_demo_file_with_the_onnx_graph(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with qtbot.waitSignal(window.all_scans_finished, timeout=180_000):
        paths = window.welcome.open_samples()
    assert all(p.startswith(str(tmp_path)) for p in paths)
    views = {v.name: v for v in window.views()}
    assert set(views) == {os.path.basename(p) for p in paths}
    graph_tab = views[ONNX_MODEL].graph_view
    assert graph_tab is not None
    assert views[ONNX_MODEL].severity == Severity.MEDIUM  # the custom operator


def test_dropping_on_the_start_page_opens_the_files(qtbot, window, tmp_path):
    path = tmp_path / "hostile.pkl"
    path.write_bytes(hostile_pickle_bytes())
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    page = window.welcome
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.all_scans_finished, timeout=60_000):
        page.dropEvent(event)
    assert event.isAccepted()
    assert window.stack.currentWidget() is window.tabs
    assert window.views()[0].severity == Severity.CRITICAL


def test_reload_reads_the_file_again_and_keeps_the_selection(qtbot, open_and_wait, window, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"epoch": 1}, protocol=2))
    (view,) = open_and_wait(window, [path])
    assert view.severity < Severity.MEDIUM
    first_root = view.result.root
    node = next(n for n in first_root.walk(expand_lazy=True) if n.kind == "opcode")
    view.select_node(node)
    trail = session.node_trail(node)
    path.write_bytes(hostile_pickle_bytes())  # changed on disk since it was opened
    assert window.reload_action.shortcut().toString() == "F5"
    with qtbot.waitSignal(window.all_scans_finished, timeout=60_000):
        assert window.reload_current_tab()
        assert not window.reload_action.isEnabled()  # busy: a second F5 waits
    assert view.result.root is not first_root
    assert view.severity == Severity.CRITICAL
    assert window.tabs.tabText(0) == "model.pkl — CRITICAL"
    kept = view.current_node()
    assert kept is not None and session.node_trail(kept)[:1] == trail[:1]
    assert window.reload_action.isEnabled()


def test_follow_trail_stops_where_the_tree_changed():
    from airlock.core.tree import FILE, GROUP, Node

    root = Node(FILE, "f")
    a = root.child(GROUP, "a")
    b = a.child(GROUP, "b")
    assert session.follow_trail(root, session.node_trail(b)) is b
    assert session.follow_trail(root, [(0, "a"), (0, "renamed")]) is a
    assert session.follow_trail(root, [(5, "x")]) is root


def test_window_geometry_and_splitters_are_remembered(qtbot, tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps([1]))
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    first.resize(960, 640)  # the offscreen screen is 800×800: restoreGeometry keeps a window on it
    with qtbot.waitSignal(first.all_scans_finished, timeout=60_000):
        (view,) = first.open_paths([str(path)])
    view.splitter.setSizes([300, 400])
    wanted = view.splitter.sizes()
    first.close()
    assert session.saved_splitters()[0] == wanted
    second = MainWindow()
    qtbot.addWidget(second)
    assert session.restore_window(second)
    second.show()
    assert (second.width(), second.height()) == (960, 640)  # not the default 1280×800
    with qtbot.waitSignal(second.all_scans_finished, timeout=60_000):
        (again,) = second.open_paths([str(path)])
    # The same split; Qt rescales it to the pane's height in this window. Waited for: a bar of the
    # finished scan may still be shown for an event-loop turn (seen in CI: the pane 20 px shorter).
    def same_split() -> bool:
        got = again.splitter.sizes()
        return abs(got[0] / sum(got) - wanted[0] / sum(wanted)) < 0.03

    qtbot.waitUntil(same_split, timeout=10_000)
    assert all(isinstance(s, QSplitter) for s in session.splitters(again))
    second.close()


def test_bad_saved_layout_is_ignored(qtbot):
    QSettings().setValue(session.SPLITTERS, ["not", "sizes"])
    QSettings().setValue(session.GEOMETRY, "garbage")
    assert session.saved_splitters() == []
    win = MainWindow()
    qtbot.addWidget(win)
    assert session.restore_window(win) is False


def test_every_formats_extensions_are_shown_whole_at_both_window_sizes(qtbot, window):
    """Extensions wrap onto more lines, never end in "…": in a narrow window, at 1280×800 and at 2560×1440 each row
    is tall enough for its extensions wrapped in the width of their column."""
    from PySide6.QtGui import QFontMetrics

    table = window.welcome.formats
    assert table.wordWrap() and table.textElideMode() == Qt.TextElideMode.ElideNone
    wrapped = {}
    for size in ((600, 600), (1280, 800), (2560, 1440)):  # 600: as narrow as the window goes
        window.resize(*size)
        qtbot.waitUntil(lambda s=size: window.width() == max(s[0], window.minimumWidth()))
        qtbot.wait(50)  # the rows are laid out again once the columns have their new widths
        metrics = QFontMetrics(table.font())
        width = table.columnWidth(1)
        wrapped_rows = 0
        for i in range(table.topLevelItemCount()):
            item = table.topLevelItem(i)
            rect = table.visualItemRect(item)
            needed = metrics.boundingRect(0, 0, width - 8, 10_000, int(Qt.TextFlag.TextWordWrap), item.text(1))
            assert rect.height() >= needed.height(), (size, item.text(0), rect.height(), needed.height())
            wrapped_rows += needed.height() > metrics.height()
        wrapped[size] = wrapped_rows
        assert width > 100
    assert wrapped[(600, 600)] >= 1  # a narrow window: some extensions need two lines, and got them


def test_a_recent_entrys_menu_opens_it_or_copies_its_path(qtbot, open_and_wait, window, tmp_path):
    from PySide6.QtGui import QGuiApplication

    path = tmp_path / "r.pkl"
    path.write_bytes(pickle.dumps({"r": 1}))
    open_and_wait(window, [path])
    page = StartPage(window)
    qtbot.addWidget(page)
    item = page.recent.item(0)
    menu = page.recent_menu(item)
    assert [a.text() for a in menu.actions()] == ["Open", "Copy Path"]
    menu.actions()[1].trigger()
    assert QGuiApplication.clipboard().text() == str(path)
