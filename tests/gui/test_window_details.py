"""The window's smaller defects of issue 19, each with the real component: empty folders, export (cancel
without a traceback, file modes from the umask, Show in Folder, ONNX and sharded checkpoints), the
File ▸ Open filter, and a status bar that does not go blank."""

import io
import os

import pytest
import torch
from fixtures import convert_files, onnx_files
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QDesktopServices

from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.export import ConvertFlow, can_convert, write_report
from airlock.gui.main_window import MODEL_FILTERS


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield 0o644
    os.umask(old)


def checkpoint(path, megabytes=1):
    buf = io.BytesIO()
    n = megabytes * 2**20 // 4
    torch.save({"w": torch.arange(n, dtype=torch.float32), "b": torch.ones(8)}, buf)  # written by torch
    path.write_bytes(buf.getvalue())
    return path


def export(qtbot, win, view, output, **flow_options):
    flow = ConvertFlow(win, view, quiet=True, ask_output=lambda _suggested: str(output),
                       confirm_critical=lambda _verdict: True, **flow_options)
    with qtbot.waitSignal(flow.done, timeout=120_000) as blocker:
        assert flow.start()
    return flow, blocker.args


def test_an_empty_folder_says_so(qtbot, window, tmp_path):
    empty = tmp_path / "empty" / "nested"
    empty.mkdir(parents=True)
    assert window.open_paths([str(tmp_path / "empty")]) == []
    box = window.notice
    assert box is not None and box.isVisible()
    assert "Nothing to open" in box.text() and "there is no file in it" in box.text()
    assert window.tabs.count() == 0


def test_cancelling_an_export_prints_no_traceback(qtbot, open_and_wait, window, tmp_path, capfd):
    (view,) = open_and_wait(window, [checkpoint(tmp_path / "big.pt", megabytes=64)])
    out = tmp_path / "big.safetensors"
    flow = ConvertFlow(window, view, quiet=True, ask_output=lambda _s: str(out), confirm_critical=lambda _v: True)
    with qtbot.waitSignal(flow.done, timeout=120_000) as blocker:
        assert flow.start()  # the real converter
        flow.worker.signals.progress.connect(lambda *_: flow.cancel())  # at its first progress report
    assert blocker.args[0] == "cancelled"
    assert not out.exists()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Cancelled" not in err
    assert "nothing was written" in flow.summary.text()


def test_exported_files_get_the_umask_mode_and_a_show_in_folder_button(qtbot, open_and_wait, window, tmp_path, umask_022):
    (view,) = open_and_wait(window, [checkpoint(tmp_path / "model.pt")])
    out = tmp_path / "model.safetensors"
    flow, (status, _report) = export(qtbot, window, view, out)  # the real converter
    assert status == "ok" and out.is_file()
    assert os.stat(out).st_mode & 0o777 == umask_022  # not the 0600 of a temporary file
    # Show in Folder: the summary's button opens the folder through Qt's URL handlers.
    opened = UrlCatcher()
    QDesktopServices.setUrlHandler("file", opened, "catch")
    try:
        assert flow.show_folder is not None and flow.show_folder.text() == "Show in Folder"
        flow.show_folder.click()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert opened.urls == [QUrl.fromLocalFile(str(tmp_path)).toString()]
    # Reports too.
    report_path = tmp_path / "model.airlock.json"
    write_report(view.result, "json", str(report_path))
    assert os.stat(report_path).st_mode & 0o777 == umask_022


class UrlCatcher(QObject):
    def __init__(self):
        super().__init__()
        self.urls = []

    @Slot(QUrl)
    def catch(self, url):
        self.urls.append(url.toString())


def test_export_is_offered_for_onnx_and_sharded_checkpoints(qtbot, open_and_wait, window, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(onnx_files.matmul().SerializeToString())
    folder = tmp_path / "sharded"
    folder.mkdir()
    index = convert_files.sharded(folder, [{"a": torch.ones(4)}, {"b": torch.zeros(3)}])
    onnx_view, index_view = open_and_wait(window, [onnx_path, index])
    for view in (onnx_view, index_view):
        window.tabs.setCurrentWidget(view)
        assert can_convert(view) and window.export_st_action.isEnabled(), view.name
    _, (status, report) = export(qtbot, window, onnx_view, tmp_path / "m.safetensors")
    assert status == "ok" and report.tensors == 1
    asked = []
    flow = ConvertFlow(window, index_view, quiet=True, confirm_critical=lambda _v: True,
                       ask_output=lambda suggested: asked.append(suggested) or suggested)
    with qtbot.waitSignal(flow.done, timeout=120_000) as blocker:
        assert flow.start()
    assert asked == [str(folder / "model.safetensors")]  # the whole checkpoint, as `airlock convert` names it
    assert blocker.args[0] == "ok" and blocker.args[1].tensors == 2


def test_file_open_offers_model_types_first(window):
    dialog = window.open_file_dialog()
    filters = dialog.nameFilters()
    assert filters == list(MODEL_FILTERS)
    assert filters[0].startswith("Model files (") and "*.safetensors" in filters[0] and "*.gguf" in filters[0]
    assert filters[-1] == "All files (*)"
    assert dialog.fileMode() == dialog.FileMode.ExistingFiles


def test_the_status_bar_keeps_its_state_after_a_message(qtbot, open_and_wait, window, tmp_path):
    path = tmp_path / "h.pkl"
    path.write_bytes(hostile_pickle_bytes())
    open_and_wait(window, [path])
    assert window.state_label.text() == "1 file(s) open. Nothing was executed."
    window.statusBar().showMessage("No match.", 20)
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == "", timeout=5_000)
    assert window.state_label.isVisible() and window.state_label.text() == "1 file(s) open. Nothing was executed."
