"""Screenshots of the graph view, the values table and the start page, at 1280×800 and 2560×1440.

    QT_QPA_PLATFORM=offscreen python docs/make_screenshots.py [--out docs]

Every input is generated here: a small residual network exported by torch.onnx.export (torch comes
with the test extras) with one operator moved to a vendor's custom domain, the demo's sample files,
and a GGUF file with quantised tensors for the values table. Settings go to a temporary folder, so
the user's recent files never appear.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

SIZES = ((1280, 800), (2560, 1440))


def residual_export(path: Path) -> Path:
    import onnx
    import torch

    class Block(torch.nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1)
            self.norm1 = torch.nn.BatchNorm2d(channels)
            self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)
            self.norm2 = torch.nn.BatchNorm2d(channels)

        def forward(self, x):
            y = torch.relu(self.norm1(self.conv1(x)))
            return torch.relu(x + self.norm2(self.conv2(y)))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.blocks = torch.nn.Sequential(Block(16), Block(16))
            self.head = torch.nn.Linear(16, 10)

        def forward(self, x):
            y = self.blocks(torch.relu(self.stem(x)))
            return torch.softmax(self.head(y.mean((2, 3))), dim=-1)

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False,
                          input_names=["image"], output_names=["probabilities"])
    model = onnx.load(str(path))
    relu = [n for n in model.graph.node if n.op_type == "Relu"][2]
    relu.op_type, relu.domain = "FastGelu", "vendor.ops"  # needs a native library: highlighted
    model.opset_import.append(onnx.helper.make_opsetid("vendor.ops", 1))
    onnx.save(model, str(path))
    return path


def quantised_gguf(path: Path) -> Path:
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter, quants

    rng = np.random.default_rng(5)
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("values-demo")
    weights = rng.normal(0, 0.05, (64, 256)).astype(np.float32)
    q8 = quants.quantize(weights, GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_q.weight", q8, raw_shape=q8.shape, raw_dtype=GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.ffn_norm.weight", np.linspace(0.5, 1.5, 256, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def settle(app, seconds: float = 0.3) -> None:
    from airlock.gui.workers import pool

    deadline = time.monotonic() + 120
    while pool().busy and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="airlock-shots-"))

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication([sys.argv[0]])
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    app.setOrganizationName("Airlock")
    app.setApplicationName("Airlock")
    from airlock.gui import theme
    from airlock.gui.demo import write_demo_files
    from airlock.gui.main_window import MainWindow

    theme.apply(theme.LIGHT, remember=False)
    (work / "samples").mkdir()
    samples = write_demo_files(str(work / "samples"))
    network = residual_export(work / "resnet_small.onnx")
    gguf = quantised_gguf(work / "values_demo.gguf")
    QSettings().setValue("recent", [str(network), str(work / "samples"), *samples[:3]])
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for width, height in SIZES:
        suffix = f"{width}x{height}"
        # The start page
        window = MainWindow()
        window.resize(width, height)
        window.show()
        settle(app)
        written.append(_save(window, args.out / f"start-page-{suffix}.png"))
        # The graph view: the highlighted operator selected
        (view,) = window.open_paths([str(network)])
        settle(app)
        graph = view.graph_view
        tabs = graph.parentWidget().parentWidget()
        tabs.setCurrentWidget(graph)
        settle(app)
        index = graph.next_risky()
        graph.canvas.centerOn(graph.canvas.layout_.x[index], graph.canvas.layout_.y[index])
        settle(app)
        written.append(_save(window, args.out / f"graph-view-{suffix}.png"))
        # The values table: a quantised GGUF tensor, dequantised on the fly
        _values_shot(app, window, gguf)
        written.append(_save(window, args.out / f"values-table-{suffix}.png"))
        window.close()
    for path in written:
        print(path)
    return 0


def _values_shot(app, window, gguf: Path):
    """Open the GGUF file and show its quantised tensor's values."""
    (view,) = window.open_paths([str(gguf)])
    settle(app)
    node = next(n for n in view.result.root.walk(expand_lazy=True)
                if n.attrs.get("name") == "blk.0.attn_q.weight")
    view.select_node(node)
    view.details.show_values()
    settle(app, 0.6)
    return view


def _save(window, path: Path) -> Path:
    window.grab().save(str(path), "PNG")
    return path


if __name__ == "__main__":
    sys.exit(main())
