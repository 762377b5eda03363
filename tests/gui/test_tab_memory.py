"""Closing tabs gives back what they held: trees, models, caches, workers and figures (gc, not RSS)."""

import gc
import io
import weakref

import pytest
import torch
from PySide6.QtCore import QCoreApplication, QEvent
from safetensors.torch import save_file

from airlock.core.scan import ScanResult
from airlock.core.tree import Node
from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.details.pane import TAB_TENSOR
from airlock.gui.file_view import FileView
from airlock.gui.main_window import MainWindow
from airlock.gui.search import ResultsModel
from airlock.gui.tree_model import NodeTreeModel


def make_files(folder, count):
    paths = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            path = folder / f"hostile_{i}.pkl"
            path.write_bytes(hostile_pickle_bytes())
        elif kind == 1:
            path = folder / f"weights_{i}.safetensors"
            save_file({"w": torch.randn(64, 32), "b": torch.zeros(32)}, str(path))  # the real library
        else:
            path = folder / f"ckpt_{i}.pt"
            buf = io.BytesIO()
            torch.save({"w": torch.randn(16, 8)}, buf)  # written by torch, read by Airlock
            path.write_bytes(buf.getvalue())
        paths.append(str(path))
    return paths


def live(kind, paths=None):
    gc.unfreeze()  # the app freezes finished trees (workers.GC_PAUSE): frozen objects are not listed
    gc.collect()
    found = [o for o in gc.get_objects() if type(o) is kind]  # type(), not isinstance: no proxies asked
    if paths is not None and kind is ScanResult:
        found = [o for o in found if o.path in paths]
    return found


@pytest.mark.slow
def test_closing_20_tabs_frees_their_trees_models_and_figures(qtbot, tmp_path):
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    paths = make_files(tmp_path, 20)
    with qtbot.waitSignal(window.all_scans_finished, timeout=120_000):
        views = window.open_paths(paths)
    assert len(views) == 20
    names = {p.rsplit("/", 1)[-1] for p in paths}
    refs = []
    for view in views:  # use each tab the way a reviewer does: details, a filter, a histogram
        window.tabs.setCurrentWidget(view)
        view.select_worst_finding()
        view.set_filter("w")
        qtbot.waitUntil(lambda v=view: v.search_done, timeout=30_000)
        refs += [weakref.ref(view), weakref.ref(view.model), weakref.ref(view.results)]
        tensor = next((n for n in view.result.root.walk(expand_lazy=True) if n.kind == "tensor"), None)
        if tensor is not None:
            view.select_node(tensor)
            assert view.details.tabs.currentIndex() == TAB_TENSOR
            qtbot.waitUntil(lambda v=view: v.details.tensor.stats is not None, timeout=30_000)
            refs.append(weakref.ref(view.details.tensor._figure))
    assert [r for r in refs if type(r()).__name__ == "Figure"]  # histograms were drawn
    assert len(live(ScanResult, paths)) == 20
    del views, view, tensor
    while window.tabs.count():
        window.close_tab(0)
    qtbot.wait(50)  # deleteLater runs in the event loop
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    assert live(ScanResult, paths) == []
    assert not [n for n in live(Node) if n.label in names]  # no file's root node survives
    assert not [m for m in live(NodeTreeModel) if getattr(m, "root", None) is not None]
    assert [r for r in refs if r() is not None] == []
    # This test's tabs (an earlier test's window may still hold a wrapper of its own, deleted in C++).
    assert not [v for v in live(FileView) if getattr(v, "path", None) in paths]
    assert not live(ResultsModel)
    window.close()
