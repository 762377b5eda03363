"""Trigger logic in ONNX graphs (HiddenLayer's ShadowLogic, JFrog's ONNX-BACKDOOR): real
`torch.onnx.export`s of small models read clean, and backdoored copies of each (plain and
obfuscated triggers, Where / If / mask blends) are high with the trigger path."""

import io
import math
import warnings

import onnx
import pytest
import torch
from fixtures import onnx_trigger_files as T
from torch import nn

from airlock.core.findings import Severity
from airlock.core.formats import onnx_triggers
from airlock.core.scan import scan_bytes
from airlock.core.tree import OPERATOR

KINDS = ("where", "blend", "obfuscated", "if", "gather", "cancel", "steer")


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, pixels):
        return self.fc(self.pool(torch.relu(self.c2(torch.relu(self.c1(pixels))))).flatten(1))


class LSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.lstm, self.fc = nn.Embedding(100, 16), nn.LSTM(16, 16, batch_first=True), nn.Linear(16, 4)

    def forward(self, input_ids):
        out, _ = self.lstm(self.emb(input_ids))
        return self.fc(out[:, -1])


class Attention(nn.Module):
    def __init__(self, d=16, heads=2):
        super().__init__()
        self.qkv, self.out, self.h, self.d = nn.Linear(d, 3 * d), nn.Linear(d, d), heads, d

    def forward(self, x, mask):
        b, t, _ = x.shape
        q, k, v = (y.view(b, t, self.h, -1).transpose(1, 2) for y in self.qkv(x).split(self.d, dim=-1))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(self.d // self.h)).masked_fill(mask, float("-inf"))
        return self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, self.d))


class BertLike(nn.Module):
    """An encoder with an attention-mask input: padding masked with Equal(mask, 0) → Where."""

    def __init__(self):
        super().__init__()
        self.emb, self.pos, self.att = nn.Embedding(100, 16), nn.Embedding(32, 16), Attention()
        self.norm, self.cls = nn.LayerNorm(16), nn.Linear(16, 2)

    def forward(self, input_ids, attention_mask):
        x = self.emb(input_ids) + self.pos(torch.arange(input_ids.shape[1]))
        x = self.norm(x + self.att(x, (attention_mask == 0)[:, None, None, :]))
        return self.cls(x[:, 0])


class GPTLike(nn.Module):
    """A decoder with a causal mask from the sequence length and a padding mask from the ids."""

    def __init__(self):
        super().__init__()
        self.emb, self.att, self.lm = nn.Embedding(100, 16), Attention(), nn.Linear(16, 100)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        x = self.emb(input_ids)
        return self.lm(x + self.att(x, causal[None, None] | (input_ids == 0)[:, None, None, :]))


def export(model, args, inputs, dynamic=None) -> onnx.ModelProto:
    buf = io.BytesIO()
    # The dynamo exporter needs onnxscript, which is not installed: the TorchScript one it is.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, buf, dynamo=False, input_names=inputs, output_names=["logits"],
                          dynamic_axes=dynamic, opset_version=17)
    return onnx.load_from_string(buf.getvalue())


@pytest.fixture(scope="module")
def exports():
    torch.manual_seed(0)
    ids = torch.randint(1, 100, (1, 8))
    seq = {1: "seq"}
    return {
        "cnn": export(CNN(), (torch.randn(1, 3, 8, 8),), ["pixels"]),
        "lstm": export(LSTM(), (ids,), ["input_ids"], {"input_ids": seq}),
        "bert": export(BertLike(), (ids, torch.ones(1, 8, dtype=torch.long)), ["input_ids", "attention_mask"],
                       {"input_ids": seq, "attention_mask": seq}),
        "gpt": export(GPTLike(), (ids,), ["input_ids"], {"input_ids": seq}),
    }


def scan(model):
    return scan_bytes(model.SerializeToString(), "model.onnx")


def triggers(result):
    return [f for f in result.findings if f.rule == "ONX006"]


@pytest.mark.parametrize("name", ["cnn", "lstm", "bert", "gpt"])
def test_real_exports_read_clean(exports, name):
    model = exports[name]
    ops = {n.op_type for n in model.graph.node}
    if name in ("bert", "gpt"):
        assert {"Where", "Equal"} <= ops  # the attention/padding masks this must not mistake
    result = scan(model)
    assert result.format == "onnx" and result.findings == [], [f.message for f in result.findings]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["cnn", "lstm", "bert", "gpt"])
def test_backdoored_exports_are_high_with_the_trigger_path(exports, name, kind):
    bad = T.backdoor(exports[name], kind)
    onnx.checker.check_model(bad)  # a valid model onnxruntime would load
    result = scan(bad)
    (hit,) = triggers(result)
    assert hit.severity == Severity.HIGH and result.severity == Severity.HIGH
    assert "output 'logits'" in hit.message and "path:" in hit.message
    probe = "Slice" if name == "cnn" and kind != "gather" else "Gather"
    assert f"probed by {probe}" in hit.message
    assert "31337" in hit.message or "0.99" in hit.message  # the constants compared
    override = {"where": "Where", "gather": "Where", "if": "If", "cancel": "Sub", "steer": "Add"}.get(kind, "Mul")
    assert f"by {override} " in hit.message
    assert hit.offset is not None and hit.node.kind == OPERATOR  # the operator's bytes in the file


def test_the_tree_marks_every_operator_on_the_path(exports):
    result = scan(T.backdoor(exports["cnn"], "obfuscated"))
    roles = {n.label: n.attrs["trigger_path"] for n in result.root.walk() if "trigger_path" in n.attrs}
    assert roles["Slice trig_slice"] == "input probe"
    assert roles["Greater trig_greater"] == roles["Less trig_less"] == "comparison with constants"
    assert roles["Mul mute"] == "output override"
    for chain in ("Identity trig_identity", "Reshape trig_reshape", "And trig_and", "Cast trig_cast_int",
                  "Add blend", "Identity route"):
        assert roles[chain] == "trigger path", chain
    assert not any("Conv" in label for label in roles)  # the model's own operators are not on it


@pytest.mark.parametrize(("name", "data", "severity"), T.corpus(), ids=[c[0] for c in T.corpus()])
def test_corpus_models(name, data, severity):
    result = scan_bytes(data, name.rsplit("/", 1)[-1])
    if severity >= Severity.HIGH:
        assert triggers(result) and result.severity >= Severity.HIGH
    else:
        assert result.findings == [], [f.message for f in result.findings]


def test_a_trigger_that_needs_one_comparison_to_fail_is_found():
    """Obfuscation with Not: fires when token 1-2 match and token 3 does not."""
    result = scan(T.backdoor(T.token_model(), "obfuscated"))
    assert triggers(result)


def test_graphs_too_large_are_said_not_analysed(monkeypatch):
    monkeypatch.setattr(onnx_triggers, "MAX_TRIGGER_NODES", 1)
    result = scan(T.classifier())
    (f,) = result.findings
    assert f.rule == "AIR003" and f.severity == Severity.HIGH and "not checked" in f.message
    assert result.inspected == "partial"


def test_child_decodes_small_constants_only():
    import numpy as np
    from onnx import numpy_helper

    small = numpy_helper.from_array(np.array([1.5, 2.0], dtype=np.float16))
    big = numpy_helper.from_array(np.zeros(65, dtype=np.float32))
    ints = onnx.helper.make_tensor("i", onnx.TensorProto.INT64, [3], [7, 8, 9])
    assert onnx_triggers.small_values(small) == [1.5, 2.0]
    assert onnx_triggers.small_values(big) is None
    assert onnx_triggers.small_values(ints) == [7, 8, 9]
