"""Tensor statistics are computed in a worker: selecting a tensor returns at once with a progress bar, the
numbers arrive later through the event loop, and selecting elsewhere (or closing the tab) cancels them."""

import threading

import torch
from safetensors.torch import save_file

from airlock.core.scan import scan_file
from airlock.core.tree import TENSOR
from airlock.gui.details.pane import DetailsPane


def tensors(result):
    return {n.label: n for n in result.root.walk(expand_lazy=True) if n.kind == TENSOR}


def test_selecting_a_tensor_does_not_compute_on_the_gui_thread(qtbot, tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.randn(400, 300), "b": torch.randn(10)}, str(path))  # the real writer
    result = scan_file(path)
    pane = DetailsPane()
    qtbot.addWidget(pane)
    pane.set_source(result.source)
    seen = []
    read = result.source.read
    result.source.read = lambda offset, n: (seen.append(threading.get_ident()), read(offset, n))[1]
    try:
        view = pane.tensor
        pane.show_node(tensors(result)["a"])
        assert view.stats is None and view.bar.isVisibleTo(view)  # returned before any statistics exist
        assert "Computing statistics" in view.summary.text()
        assert view.worker is not None
        # Waited for by its result: the worker may finish before a waitSignal here could connect.
        qtbot.waitUntil(lambda: view.stats is not None, timeout=30_000)
        assert view.stats["elements"] == 120_000
        assert seen and threading.get_ident() not in seen  # the tensor's bytes were read by the worker

        # A newer selection makes the running computation stale: it is cancelled, its result dropped.
        pane.show_node(tensors(result)["b"])
        first = view.worker
        pane.show_node(tensors(result)["a"])
        assert first is not None and first.is_cancelled and view.worker is not first
        qtbot.waitUntil(lambda: view.stats is not None and view.stats["elements"] == 120_000, timeout=30_000)
    finally:
        pane.release()
        result.close()
