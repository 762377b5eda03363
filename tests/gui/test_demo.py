"""The demo files are what they claim: checked with the real loaders (tests may load benign files)."""

import os
import subprocess
import sys

import numpy as np
import torch
from PySide6.QtGui import QImage
from safetensors.numpy import load_file

from airlock.core.findings import Severity
from airlock.core.scan import scan_file
from airlock.gui.demo import (
    CLEAN_CHECKPOINT,
    GGUF_MODEL,
    HOSTILE_PICKLE,
    HOSTILE_TEMPLATE,
    SAFETENSORS_MODEL,
    write_demo_files,
)
from airlock.gui.demo_onnx import ONNX_MODEL


def test_demo_files(tmp_path):
    paths = {os.path.basename(p): p for p in write_demo_files(str(tmp_path))}
    assert set(paths) == {CLEAN_CHECKPOINT, HOSTILE_PICKLE, GGUF_MODEL, SAFETENSORS_MODEL, ONNX_MODEL}

    state = torch.load(paths[CLEAN_CHECKPOINT], weights_only=True)  # benign: torch accepts it
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "encoder.weight": (16, 8), "encoder.bias": (16,), "head.weight": (4, 16)}
    assert 0.005 < float(state["encoder.weight"].std()) < 0.05

    arrays = load_file(paths[SAFETENSORS_MODEL])
    assert arrays["model.norm.weight"].tolist() == [1.0] * 32
    assert arrays["model.embed_tokens.weight"].shape == (64, 32)

    from gguf import GGUFReader

    reader = GGUFReader(paths[GGUF_MODEL])
    field = reader.fields["tokenizer.chat_template"]
    assert bytes(field.parts[-1]).decode() == HOSTILE_TEMPLATE
    assert np.asarray(reader.tensors[0].data).shape == (32, 16)

    import onnx

    model = onnx.load(paths[ONNX_MODEL])
    onnx.checker.check_model(model)  # a valid model, written by hand as protobuf
    assert [n.op_type for n in model.graph.node][:3] == ["Conv", "Relu", "MaxPool"]

    for name, path in paths.items():
        result = scan_file(path)
        try:
            if name == HOSTILE_PICKLE:
                assert result.severity == Severity.CRITICAL
            if name in (CLEAN_CHECKPOINT, SAFETENSORS_MODEL):
                assert result.severity < Severity.MEDIUM, [f.message for f in result.findings]
            if name == ONNX_MODEL:  # its custom operator domain, and nothing else
                assert [f.rule for f in result.findings] == ["ONX002"]
        finally:
            result.close()


def test_demo_screenshot_command(tmp_path):
    out = tmp_path / "demo.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "airlock.gui.launcher", "demo", "--screenshot", str(out)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "sample files written to" in proc.stderr
    image = QImage(str(out))
    assert image.width() >= 1280 and image.height() >= 800
