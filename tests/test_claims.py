"""How a file's name is worded against its content (core/claims.py)."""

import io

import pytest
import torch

from airlock.core.scan import scan_bytes


def test_a_truncated_pth_is_called_a_pytorch_checkpoint_not_torchscript():
    buf = io.BytesIO()
    torch.save({"w": torch.randn(64, 64)}, buf)  # written by torch, read by Airlock
    data = buf.getvalue()
    result = scan_bytes(data[: len(data) // 2], "model.pth")
    words = [f.message for f in result.findings if f.rule == "AIR004"]
    assert words == ["the name says .pth (PyTorch checkpoint) but the content is zip"]
    assert not any("torchscript" in f.message for f in result.findings)
    named = [f.message for f in result.findings if f.rule == "FC001"]
    assert named and named[0].startswith("named .pth, but not valid PyTorch checkpoint")


@pytest.mark.parametrize("ext", [".pt2", ".tflite", ".pte", ".skops", ".cbm"])
def test_a_newer_model_name_over_text_is_high_never_info(ext):
    # Regression: `TFL3junk` named x.tflite read "UTF-8 text", info, exit 0 once these formats had
    # readers of their own: a name that claims a model format and fails it is high (fail closed).
    result = scan_bytes(b"TFL3junk, not a model", f"x{ext}")
    named = [f for f in result.findings if f.rule == "FC001"]
    assert named and named[0].message.startswith(f"named {ext}, but not valid")
    assert result.severity.label == "high"
    result.close()
