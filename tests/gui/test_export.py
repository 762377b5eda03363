"""Export to SafeTensors: confirmation, progress, cancel and summary (fake and real converter)."""

import threading
import time

import pytest
import torch
from fixtures import gguf_files

from airlock.gui.demo import CLEAN_CHECKPOINT, hostile_pickle_bytes, write_demo_files
from airlock.gui.export import ConvertFlow, can_convert, summary_text
from airlock.gui.main_window import MainWindow


class FakeReport:
    outputs = ["/tmp/out.safetensors"]
    tensors = 3
    bytes = 1234
    seconds = 0.5
    verified = True
    verification = "bytes and safetensors header agree"
    skipped = [("epoch", "not a tensor")]


def slow_convert(release):
    calls = []

    def convert(input_path, output_path, *, allow_critical, overwrite, progress, cancelled):
        calls.append((input_path, output_path, allow_critical))
        for i in range(200):
            if cancelled():
                from airlock.core.errors import Cancelled

                raise Cancelled("cancelled")
            progress(i / 200, f"tensor {i}")
            if i == 10:
                release.wait(10)
            time.sleep(0.002)
        return FakeReport()

    return convert, calls


@pytest.fixture
def window_with(qtbot, tmp_path):
    def make(data, name):
        path = tmp_path / name
        path.write_bytes(data)
        win = MainWindow()
        qtbot.addWidget(win)
        with qtbot.waitSignal(win.all_scans_finished, timeout=60_000):
            (view,) = win.open_paths([str(path)])
        return win, view

    return make


def test_progress_then_summary(qtbot, window_with, tmp_path):
    win, view = window_with(hostile_pickle_bytes(), "ckpt.pt")
    release = threading.Event()
    release.set()
    convert, calls = slow_convert(release)
    asked = []
    flow = ConvertFlow(win, view, convert_fn=convert, quiet=True,
                       ask_output=lambda s: asked.append(s) or str(tmp_path / "o.safetensors"),
                       confirm_critical=lambda verdict: True)
    with qtbot.waitSignal(flow.done, timeout=30_000) as blocker:
        assert flow.start()
    assert blocker.args[0] == "ok"
    assert asked == [str(tmp_path / "ckpt.safetensors")]
    assert calls == [(str(tmp_path / "ckpt.pt"), str(tmp_path / "o.safetensors"), True)]
    assert flow.fraction > 0.9  # the bar followed the converter's progress
    text = summary_text(blocker.args[1])
    assert "3 tensor(s)" in text and "Verification: passed" in text and "epoch" in text


def test_cancel_stops_the_converter(qtbot, window_with, tmp_path):
    win, view = window_with(b"\x80\x02}q\x00.", "ckpt.pt")
    release = threading.Event()
    convert, _ = slow_convert(release)
    flow = ConvertFlow(win, view, convert_fn=convert, quiet=True,
                       ask_output=lambda s: str(tmp_path / "o.safetensors"))
    with qtbot.waitSignal(flow.done, timeout=30_000) as blocker:
        flow.start()
        qtbot.waitUntil(lambda: flow.dialog.value() > 0 and flow.fraction > 0, timeout=10_000)
        from PySide6.QtWidgets import QPushButton

        (button,) = flow.dialog.findChildren(QPushButton)
        assert button.text() == "Cancel"
        button.click()  # the user's cancel, through the dialog's own signal
        release.set()
    assert blocker.args[0] == "cancelled"
    assert flow.worker.is_cancelled


def test_critical_file_needs_confirmation(qtbot, window_with, tmp_path):
    win, view = window_with(hostile_pickle_bytes(), "ckpt.pt")
    convert, calls = slow_convert(threading.Event())
    flow = ConvertFlow(win, view, convert_fn=convert, quiet=True, ask_output=lambda s: str(tmp_path / "o"),
                       confirm_critical=lambda verdict: "os.system" in verdict and False)
    with qtbot.waitSignal(flow.done, timeout=5_000) as blocker:
        assert not flow.start()
    assert blocker.args[0] == "declined"
    assert calls == []


def export_with_the_real_converter(qtbot, win, view, out):
    """Run the window's Export to SafeTensors flow into `out`; its `done` signal's blocker once it is ok."""
    flow = ConvertFlow(win, view, quiet=True, ask_output=lambda s: str(out))
    with qtbot.waitSignal(flow.done, timeout=60_000) as blocker:
        flow.start()
    assert blocker.args[0] == "ok", blocker.args[1]
    return blocker


def test_real_converter_on_the_demo_checkpoint(qtbot, tmp_path):
    paths = write_demo_files(str(tmp_path))
    ckpt = next(p for p in paths if p.endswith(CLEAN_CHECKPOINT))
    win = MainWindow()
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.all_scans_finished, timeout=60_000):
        (view,) = win.open_paths([ckpt])
    assert can_convert(view), view.result.format
    assert win.export_st_action.isEnabled()
    out = tmp_path / "out.safetensors"
    blocker = export_with_the_real_converter(qtbot, win, view, out)
    from safetensors.torch import load_file

    loaded = load_file(str(out))
    expected = torch.load(ckpt, weights_only=True)
    assert list(loaded) == list(expected) or sorted(loaded) == sorted(expected)
    for key, tensor in expected.items():
        assert torch.equal(loaded[key], tensor)
    assert blocker.args[1].verified is True


def test_a_quantized_gguf_exports_dequantized(qtbot, window_with, tmp_path):
    """The only complete SafeTensors form of a quantized GGUF is F32: the app never writes the norms alone."""
    import gguf
    import numpy as np

    weights = np.linspace(-2, 2, 4 * 64, dtype=np.float32).reshape(4, 64)
    src = gguf_files.write_tensors(tmp_path / "q.gguf", {"norm": np.linspace(-1, 1, 32, dtype=np.float32),
                                                         "w": weights}, {"w": "Q8_0"})
    quantized = gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0)
    win, view = window_with(src.read_bytes(), "model.gguf")
    assert can_convert(view)
    out = tmp_path / "out.safetensors"
    export_with_the_real_converter(qtbot, win, view, out)
    from safetensors.numpy import load_file

    loaded = load_file(str(out))
    assert sorted(loaded) == ["norm", "w"]
    np.testing.assert_array_equal(loaded["w"], gguf.quants.dequantize(quantized, gguf.GGMLQuantizationType.Q8_0))
