"""A file changed, truncated, replaced or deleted after it was read: its tab says so and offers Reload."""

import os

import pytest
import torch
from safetensors.torch import save_file

from airlock.core.findings import Severity
from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.on_disk import describe_change


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.randn(256, 256)}, str(path))  # mapped (over 64 KiB), written by the library
    return path


def test_a_truncated_file_turns_its_tab_stale_and_stops_reading_it(qtbot, open_and_wait, window, weights):
    (view,) = open_and_wait(window, [weights])
    assert view.result.severity <= Severity.INFO and view.stale is None
    with open(weights, "r+b") as fh:
        fh.truncate(1000)
    qtbot.waitUntil(lambda: view.stale is not None, timeout=10_000)  # QFileSystemWatcher
    assert view.stale.startswith("it was truncated")
    assert view.stale_bar.isVisibleTo(view)
    assert "Changed on disk — it was truncated" in view.stale_bar.label.text()
    assert "Reload" in view.stale_bar.button.text()
    assert window.tabs.tabText(0).endswith("changed on disk")
    assert not view.splitter.isEnabled()  # nothing there reads the file any more
    assert view.details.hex.text.toPlainText() == ""
    tensor = next(n for n in view.result.root.walk(expand_lazy=True) if n.kind == "tensor")
    assert view.select_node(tensor) is False
    assert not window.export_st_action.isEnabled() and not any(a.isEnabled() for a in window.report_actions)


def test_reload_reads_the_file_again(qtbot, open_and_wait, window, weights):
    (view,) = open_and_wait(window, [weights])
    weights.write_bytes(hostile_pickle_bytes())  # a pickle now sits under a .safetensors name
    qtbot.waitUntil(lambda: view.stale is not None, timeout=10_000)
    with qtbot.waitSignal(window.all_scans_finished, timeout=60_000):
        view.stale_bar.button.click()  # the bar's Reload: MainWindow.reload_view
    assert view.stale is None and not view.stale_bar.isVisibleTo(view) and view.splitter.isEnabled()
    assert view.result.severity == Severity.CRITICAL
    assert window.tabs.tabText(0) == "model.safetensors — CRITICAL"
    # Replaced by a rename: still watched afterwards.
    tmp = weights.with_suffix(".new")
    save_file({"w": torch.zeros(300, 300)}, str(tmp))
    os.replace(tmp, weights)
    qtbot.waitUntil(lambda: view.stale is not None, timeout=10_000)
    window.reload_current_tab()
    qtbot.waitUntil(lambda: not view.busy and view.result is not None, timeout=60_000)
    assert view.result.severity <= Severity.INFO


def test_a_deleted_file_is_noticed_when_its_tab_comes_back(qtbot, open_and_wait, window, weights, tmp_path):
    other = tmp_path / "other.pkl"
    other.write_bytes(hostile_pickle_bytes())
    first, second = open_and_wait(window, [weights, other])
    window.tabs.setCurrentWidget(second)
    window.disk.watcher.removePath(str(weights))  # as if the watcher had said nothing (a network share)
    weights.unlink()
    window.tabs.setCurrentWidget(first)
    assert first.stale == "it was deleted or can no longer be read"


def test_change_words():
    assert describe_change((10, 1), (10, 1)) is None
    assert describe_change((10, 1), (4, 2)) == "it was truncated (10 B → 4 B)"
    assert describe_change((10, 1), (20, 2)) == "it grew (10 B → 20 B)"
    assert describe_change((10, 1), (10, 2)) == "it was rewritten (same size, new modification time)"
    assert describe_change((10, 1), None) == "it was deleted or can no longer be read"
