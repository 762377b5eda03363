"""The demo's ONNX sample: a small image classifier written as protobuf bytes by hand (no onnx import),
so `airlock demo` and the start page's samples show the graph view. One operator comes from a
vendor's custom domain, which loading would need a native library for: the graph highlights it."""

from __future__ import annotations

ONNX_MODEL = "graph_model.onnx"
CUSTOM_DOMAIN = "vendor.ops"

FLOAT, INT, INTS = 1, 2, 7  # AttributeProto.AttributeType


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return _key(field, 2) + _varint(len(raw)) + raw


def _attr_ints(name: str, values: list[int]) -> bytes:
    return _bytes(1, name) + b"".join(_int(8, v) for v in values) + _int(20, INTS)


def _attr_int(name: str, value: int) -> bytes:
    return _bytes(1, name) + _int(3, value) + _int(20, INT)


def _node(op: str, inputs: list[str], outputs: list[str], name: str,
          attrs: tuple[bytes, ...] | list[bytes] = (), domain: str = "") -> bytes:
    body = b"".join(_bytes(1, x) for x in inputs) + b"".join(_bytes(2, x) for x in outputs)
    body += _bytes(3, name) + _bytes(4, op) + b"".join(_bytes(5, a) for a in attrs)
    if domain:
        body += _bytes(7, domain)
    return _bytes(1, body)


def _tensor(name: str, dims: list[int], seed: int) -> bytes:
    from airlock.gui.demo import _floats

    count = 1
    for d in dims:
        count *= d
    body = b"".join(_int(1, d) for d in dims) + _int(2, FLOAT) + _bytes(8, name)
    return _bytes(5, body + _bytes(9, _floats(count, seed, scale=0.1)))


def _value(field: int, name: str, dims: list[int]) -> bytes:
    shape = b"".join(_bytes(1, _int(1, d)) for d in dims)
    tensor_type = _int(1, FLOAT) + _bytes(2, shape)
    return _bytes(field, _bytes(1, name) + _bytes(2, _bytes(1, tensor_type)))


def onnx_model_bytes() -> bytes:
    conv = [_attr_ints("kernel_shape", [3, 3]), _attr_ints("pads", [1, 1, 1, 1])]
    nodes = [
        _node("Conv", ["image", "stem.weight", "stem.bias"], ["stem"], "/stem/Conv", conv),
        _node("Relu", ["stem"], ["stem.act"], "/stem/Relu"),
        _node("MaxPool", ["stem.act"], ["pooled"], "/pool", [_attr_ints("kernel_shape", [2, 2]),
                                                             _attr_ints("strides", [2, 2])]),
        _node("Conv", ["pooled", "block.weight", "block.bias"], ["block"], "/block/Conv", conv),
        _node("FastGelu", ["block"], ["block.act"], "/block/FastGelu", domain=CUSTOM_DOMAIN),
        _node("Add", ["block.act", "pooled"], ["residual"], "/block/Add"),
        _node("GlobalAveragePool", ["residual"], ["features"], "/gap"),
        _node("Flatten", ["features"], ["flat"], "/flatten", [_attr_int("axis", 1)]),
        _node("Gemm", ["flat", "head.weight", "head.bias"], ["logits"], "/head/Gemm",
              [_attr_int("transB", 1)]),
        _node("Softmax", ["logits"], ["probabilities"], "/softmax", [_attr_int("axis", 1)]),
    ]
    weights = [_tensor("stem.weight", [8, 3, 3, 3], 11), _tensor("stem.bias", [8], 12),
               _tensor("block.weight", [8, 8, 3, 3], 13), _tensor("block.bias", [8], 14),
               _tensor("head.weight", [10, 8], 15), _tensor("head.bias", [10], 16)]
    graph = b"".join(nodes) + _bytes(2, "demo_classifier") + b"".join(weights)
    graph += _value(11, "image", [1, 3, 32, 32]) + _value(12, "probabilities", [1, 10])
    opsets = _bytes(8, _bytes(1, "") + _int(2, 17)) + _bytes(8, _bytes(1, CUSTOM_DOMAIN) + _int(2, 1))
    return _int(1, 8) + _bytes(2, "airlock-demo") + _bytes(7, graph) + opsets

