"""Make every screenshot in docs/ from generated inputs, at 1280×800 and 2560×1440.

    pip install -e '.[test]'          # torch and onnx write the inputs; nothing here is ever loaded
    python docs/screenshots.py        # offscreen; writes docs/*.png  [--only NAME ...] [--out DIR]

- start-page-*.png: the start page, with recent files;
- screenshot.png (README) and demo-2560x1440.png: `airlock demo`, the worst finding selected;
- gguf-search-*.png: a 151k-token GGUF (tokens, types, merges, a chat template) with an active search;
- torch-tensors-*.png: a clean PyTorch checkpoint, opened on its tensors;
- hex-call-*.png: the hex view of a call (GLOBAL … REDUCE marked) in a hostile pickle;
- graph-view-*.png: a small residual network exported by torch.onnx.export, with one operator moved to a
  vendor's custom domain (highlighted and selected);
- values-table-*.png: a Q8_0 GGUF tensor, dequantised on the fly in the values table.

Settings go to a temporary folder, so the user's recent files and theme are never read or changed.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DOCS = Path(__file__).resolve().parent
SIZES = ((1280, 800), (2560, 1440))
SHOTS = ("start", "demo", "gguf", "torch", "hex", "graph", "values")


def big_gguf(path: Path, vocab: int = 151_000) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("qwen-like-demo")
    writer.add_context_length(32768)
    writer.add_tokenizer_model("gpt2")
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    writer.add_token_list([f"Ġtok{i}" for i in range(vocab - len(specials))] + specials)
    writer.add_token_types([1] * vocab)
    writer.add_token_merges([f"Ġ t{i}" for i in range(vocab - 500)])
    writer.add_chat_template("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
                             "{{ message['content'] }}<|im_end|>\n{% endfor %}"
                             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    rng = np.random.default_rng(7)
    for i in range(24):
        writer.add_tensor(f"blk.{i}.attn_q.weight", rng.normal(0, 0.02, (896, 64)).astype(np.float16))
        down = rng.normal(0, 0.02, (4864 // 8, 896 // 8)).astype(np.float16)
        writer.add_tensor(f"blk.{i}.ffn_down.weight", down)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def torch_checkpoint(path: Path) -> None:
    import torch  # noqa: TID251 - writes the docs' input (the test extra); Airlock never needs it

    torch.manual_seed(0)
    state = {}
    for i in range(2):
        layer = f"model.layers.{i}"
        state[f"{layer}.self_attn.q_proj.weight"] = torch.randn(896, 896, dtype=torch.bfloat16) * 0.02
        state[f"{layer}.mlp.down_proj.weight"] = torch.randn(896, 4864, dtype=torch.bfloat16) * 0.02
        state[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(896)
    state["model.embed_tokens.weight"] = torch.randn(1000, 896) * 0.02
    buf = io.BytesIO()
    torch.save({"state_dict": state, "epoch": 3, "step": 12_000}, buf)  # torch writes it; Airlock reads it
    path.write_bytes(buf.getvalue())


def residual_export(path: Path) -> None:
    import onnx
    import torch  # noqa: TID251 - writes the docs' input (the test extra); Airlock never needs it

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
    model = onnx.load(str(path))  # onnx's own protobuf reader, on the file written just above
    relu = [n for n in model.graph.node if n.op_type == "Relu"][2]
    relu.op_type, relu.domain = "FastGelu", "vendor.ops"  # needs a native library: highlighted
    model.opset_import.append(onnx.helper.make_opsetid("vendor.ops", 1))
    onnx.save(model, str(path))


def quantised_gguf(path: Path) -> None:
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


class Shooter:
    def __init__(self, out: Path, settings: Path) -> None:
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication

        self.app = QApplication.instance() or QApplication([sys.argv[0]])
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(settings))
        self.app.setOrganizationName("Airlock")
        self.app.setApplicationName("Airlock")
        from airlock.gui import theme

        theme.apply(theme.LIGHT, remember=False)
        self.out = out
        self.window = self.new_window()

    def new_window(self):
        from airlock.gui.main_window import MainWindow

        window = MainWindow()
        window.show()
        return window

    def wait(self, condition, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit("screenshots: timed out waiting for the window")
            self.app.processEvents()
            time.sleep(0.01)

    def settle(self) -> None:
        from airlock.gui.workers import pool

        self.wait(lambda: not pool().busy)
        for _ in range(20):
            self.app.processEvents()
            time.sleep(0.01)

    def open(self, paths: list[str]) -> list:
        views = self.window.open_paths(paths)
        self.wait(lambda: not any(v.busy for v in views))
        self.settle()
        return views

    def close_all(self) -> None:
        while self.window.tabs.count():
            self.window.close_tab(0)

    def shoot(self, name: str, arrange) -> list[Path]:
        out = []
        for width, height in SIZES:
            self.window.resize(width, height)
            self.settle()
            arrange()
            self.settle()
            path = self.out / f"{name}-{width}x{height}.png"
            if name == "demo" and width == 1280:
                path = self.out / "screenshot.png"  # the README's
            self.window.grab().save(str(path), "PNG")
            out.append(path)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=SHOTS, action="append")
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the PNG files (default: docs/)")
    args = parser.parse_args()
    wanted = set(args.only or SHOTS)
    work = Path(tempfile.mkdtemp(prefix="airlock-docs-"))
    args.out.mkdir(parents=True, exist_ok=True)
    shooter = Shooter(args.out, work / "settings")
    written: list[Path] = []

    if "start" in wanted:
        from PySide6.QtCore import QSettings

        from airlock.gui.demo import write_demo_files

        (work / "samples").mkdir()
        samples = write_demo_files(str(work / "samples"))
        network = work / "resnet_small.onnx"
        residual_export(network)
        QSettings().setValue("recent", [str(network), str(work / "samples"), *samples[:3]])
        shooter.window.close()
        shooter.window = shooter.new_window()  # the start page reads the recent files when it is made
        written += shooter.shoot("start-page", lambda: None)

    if "demo" in wanted:
        from airlock.gui.demo import write_demo_files

        (work / "demo").mkdir()
        views = shooter.open(write_demo_files(str(work / "demo")))
        worst = max(views, key=lambda v: int(v.severity))

        def demo() -> None:
            shooter.window.tabs.setCurrentWidget(worst)
            worst.select_worst_finding()

        written += shooter.shoot("demo", demo)
        shooter.close_all()

    if "gguf" in wanted:
        path = work / "qwen-like-151k.gguf"
        big_gguf(path)
        (view,) = shooter.open([str(path)])

        def search() -> None:
            shooter.window.search.setText("im_start")
            shooter.window.apply_search()
            shooter.wait(lambda: view.search_done and not view._pending)
            view.tree.setCurrentIndex(view.tree.model().index(0, 0))  # from the top: the same match each size
            shooter.window.find_next()

        written += shooter.shoot("gguf-search", search)
        shooter.close_all()

    if "torch" in wanted:
        path = work / "pytorch_model.pt"
        torch_checkpoint(path)
        (view,) = shooter.open([str(path)])

        def tensors() -> None:
            from airlock.core.tree import TENSOR

            first = next((n for n in view.result.root.walk(expand_lazy=True) if n.kind == TENSOR), None)
            if first is not None:
                view.select_node(first)

        written += shooter.shoot("torch-tensors", tensors)
        shooter.close_all()

    if "hex" in wanted:
        from airlock.gui.demo import hostile_pickle_bytes

        path = work / "hostile_model.pkl"
        path.write_bytes(hostile_pickle_bytes())
        (view,) = shooter.open([str(path)])

        def hex_call() -> None:
            view.select_worst_finding()

        written += shooter.shoot("hex-call", hex_call)
        shooter.close_all()

    if "graph" in wanted:
        network = work / "resnet_small.onnx"
        if not network.exists():
            residual_export(network)
        (view,) = shooter.open([str(network)])

        def graph() -> None:
            graph = view.graph_view
            graph.parentWidget().parentWidget().setCurrentWidget(graph)
            shooter.settle()
            index = graph.next_risky()
            graph.canvas.centerOn(graph.canvas.layout_.x[index], graph.canvas.layout_.y[index])

        written += shooter.shoot("graph-view", graph)
        shooter.close_all()

    if "values" in wanted:
        path = work / "values_demo.gguf"
        quantised_gguf(path)
        (view,) = shooter.open([str(path)])

        def values() -> None:
            node = next(n for n in view.result.root.walk(expand_lazy=True)
                        if n.attrs.get("name") == "blk.0.attn_q.weight")
            view.select_node(node)
            view.details.show_values()

        written += shooter.shoot("values-table", values)
        shooter.close_all()

    shooter.window.close()
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
