"""Make the screenshots in docs/ from generated inputs, at 1280×800 and 2560×1440.

    pip install -e '.[test]'          # torch writes the checkpoint; nothing here is ever loaded
    python docs/screenshots.py        # offscreen; writes docs/*.png

- screenshot.png (README) and demo-2560x1440.png: `airlock demo`, the worst finding selected;
- gguf-search-*.png: a 151k-token GGUF (tokens, types, merges, a chat template) with an active search;
- torch-tensors-*.png: a clean PyTorch checkpoint, opened on its tensors;
- hex-call-*.png: the hex view of a call (GLOBAL … REDUCE marked) in a hostile pickle.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DOCS = Path(__file__).resolve().parent
SIZES = ((1280, 800), (2560, 1440))


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


class Shooter:
    def __init__(self) -> None:
        from PySide6.QtWidgets import QApplication

        from airlock.gui import theme
        from airlock.gui.main_window import MainWindow

        self.app = QApplication.instance() or QApplication([sys.argv[0]])
        self.app.setOrganizationName("AirlockScreenshots")
        self.app.setApplicationName("AirlockScreenshots")
        theme.apply(theme.LIGHT, remember=False)
        self.window = MainWindow()
        self.window.show()

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
            path = DOCS / f"{name}-{width}x{height}.png"
            if name == "demo" and width == 1280:
                path = DOCS / "screenshot.png"  # the README's
            self.window.grab().save(str(path), "PNG")
            out.append(path)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("demo", "gguf", "torch", "hex"), action="append")
    args = parser.parse_args()
    wanted = set(args.only or ("demo", "gguf", "torch", "hex"))
    work = Path(tempfile.mkdtemp(prefix="airlock-docs-"))
    shooter = Shooter()
    written: list[Path] = []

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

    shooter.window.close()
    for path in written:
        print(f"wrote {path.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
