"""Every element type Airlock meets, in one table: names, sizes, and how each format spells it.

A format reader, the converter, the statistics and (later) `airlock diff` and the values table
all ask this module what a dtype is: how many bytes an element (or a GGML block) takes, what
numpy calls it, and how SafeTensors, torch, ONNX and GGUF write it. `code` is Airlock's name
for a type: the SafeTensors spelling where SafeTensors has one (F32, BF16, F8_E4M3), GGML's for
its block-quantised types (Q4_K), and a name in the same style for the rest (C128, QI8, U4).

Nothing here imports numpy or gguf: a scan of a pickle must not pay for them. The GGML block
sizes are written out (tests/test_dtypes.py compares them with the installed gguf package).
"""

from __future__ import annotations

import re

# Kinds of element.
FLOAT, INT, UINT, BOOL, COMPLEX = "float", "int", "uint", "bool", "complex"
QUANT = "quant"  # GGML block-quantised: `block` elements share `block_bytes` bytes
QINT = "qint"  # torch's quantised storages: the integers without their scale and zero point
STRING = "string"  # ONNX string tensors: no fixed size


class DType:
    """One element type. A plain class, not a NamedTuple or dataclass: this module loads with the
    first SafeTensors, torch or ONNX file a scan reads, and those build their classes with exec."""

    __slots__ = ("bits", "block", "code", "ggml", "kind", "numpy", "onnx", "onnx_name", "quant_bytes",
                 "safetensors", "torch")

    def __init__(self, code: str, kind: str, bits: int, numpy: str | None = None, torch: str | None = None,
                 onnx: int | None = None, onnx_name: str | None = None, ggml: int | None = None,
                 safetensors: bool = False, block: int = 1, quant_bytes: int = 0) -> None:
        self.code = code
        self.kind = kind
        self.bits = bits  # per element; for QUANT types, 0 (see block / block_bytes)
        self.numpy = numpy  # numpy's type string without byte order ("f4"), when numpy has the type
        self.torch = torch  # torch dtype name ("float32")
        self.onnx = onnx  # TensorProto.DataType
        self.onnx_name = onnx_name  # how Airlock shows an ONNX type ("float8e4m3fn")
        self.ggml = ggml  # GGMLQuantizationType
        self.safetensors = safetensors  # a SafeTensors header may name it (the safetensors library's enum)
        self.block = block  # elements per block (GGML quantised types), else 1
        self.quant_bytes = quant_bytes  # bytes per block of a QUANT type

    def __repr__(self) -> str:
        return f"DType({self.code})"

    @property
    def block_bytes(self) -> int:
        """Bytes per unit read: a GGML block, one element, or 0 for sub-byte and string types."""
        if self.kind == QUANT:
            return self.quant_bytes
        return self.bits // 8 if self.bits % 8 == 0 else 0

    @property
    def itemsize(self) -> int | None:
        """Bytes per element, when an element is a whole number of bytes."""
        return self.bits // 8 if self.kind != QUANT and self.bits and self.bits % 8 == 0 else None

    @property
    def writable(self) -> bool:
        """The converter writes it: a SafeTensors type of whole bytes per element."""
        return self.safetensors and self.itemsize is not None

    def nbytes(self, numel: int) -> int | None:
        """Bytes of `numel` elements (blocks rounded up), or None for strings."""
        if self.kind == QUANT:
            return -(-numel // self.block) * self.quant_bytes
        if not self.bits:
            return None
        return -(-numel * self.bits // 8)


def _q(code: str, ggml: int, block: int, nbytes: int) -> DType:
    return DType(code, QUANT, 0, ggml=ggml, block=block, quant_bytes=nbytes)


TABLE: tuple[DType, ...] = (
    DType("F64", FLOAT, 64, "f8", "float64", 11, "float64", 28, True),
    DType("F32", FLOAT, 32, "f4", "float32", 1, "float32", 0, True),
    DType("F16", FLOAT, 16, "f2", "float16", 10, "float16", 1, True),
    DType("BF16", FLOAT, 16, None, "bfloat16", 16, "bfloat16", 30, True),
    DType("F8_E4M3", FLOAT, 8, None, "float8_e4m3fn", 17, "float8e4m3fn", None, True),
    DType("F8_E4M3FNUZ", FLOAT, 8, None, "float8_e4m3fnuz", 18, "float8e4m3fnuz", None, True),
    DType("F8_E5M2", FLOAT, 8, None, "float8_e5m2", 19, "float8e5m2", None, True),
    DType("F8_E5M2FNUZ", FLOAT, 8, None, "float8_e5m2fnuz", 20, "float8e5m2fnuz", None, True),
    DType("F8_E8M0", FLOAT, 8, None, "float8_e8m0fnu", 24, "float8e8m0", None, True),
    DType("F6_E2M3", FLOAT, 6, safetensors=True),
    DType("F6_E3M2", FLOAT, 6, safetensors=True),
    DType("F4", FLOAT, 4, None, None, 23, "float4e2m1", None, True),
    # torch's float4_e2m1fn_x2: two e2m1 values per byte, and the shape counts the bytes.
    DType("F4X2", FLOAT, 8, None, "float4_e2m1fn_x2"),
    DType("I64", INT, 64, "i8", "int64", 7, "int64", 27, True),
    DType("I32", INT, 32, "i4", "int32", 6, "int32", 26, True),
    DType("I16", INT, 16, "i2", "int16", 5, "int16", 25, True),
    DType("I8", INT, 8, "i1", "int8", 3, "int8", 24, True),
    DType("I4", INT, 4, None, None, 22, "int4"),
    DType("I2", INT, 2, None, None, 26, "int2"),
    DType("U64", UINT, 64, "u8", "uint64", 13, "uint64", None, True),
    DType("U32", UINT, 32, "u4", "uint32", 12, "uint32", None, True),
    DType("U16", UINT, 16, "u2", "uint16", 4, "uint16", None, True),
    DType("U8", UINT, 8, "u1", "uint8", 2, "uint8", None, True),
    DType("U4", UINT, 4, None, None, 21, "uint4"),
    DType("U2", UINT, 2, None, None, 25, "uint2"),
    DType("BOOL", BOOL, 8, "b1", "bool", 9, "bool", None, True),
    DType("C128", COMPLEX, 128, "c16", "complex128", 15, "complex128"),
    DType("C64", COMPLEX, 64, "c8", "complex64", 14, "complex64", None, True),
    DType("C32", COMPLEX, 32, None, "complex32"),
    DType("QI8", QINT, 8, None, "qint8"),
    DType("QU8", QINT, 8, None, "quint8"),
    DType("QI32", QINT, 32, None, "qint32"),
    DType("QU4X2", QINT, 8, None, "quint4x2"),
    DType("QU2X4", QINT, 8, None, "quint2x4"),
    DType("STRING", STRING, 0, None, None, 8, "string"),
    # GGML's block-quantised types (gguf.GGML_QUANT_SIZES: elements per block, bytes per block).
    _q("Q4_0", 2, 32, 18), _q("Q4_1", 3, 32, 20), _q("Q5_0", 6, 32, 22), _q("Q5_1", 7, 32, 24),
    _q("Q8_0", 8, 32, 34), _q("Q8_1", 9, 32, 40), _q("Q2_K", 10, 256, 84), _q("Q3_K", 11, 256, 110),
    _q("Q4_K", 12, 256, 144), _q("Q5_K", 13, 256, 176), _q("Q6_K", 14, 256, 210), _q("Q8_K", 15, 256, 292),
    _q("IQ2_XXS", 16, 256, 66), _q("IQ2_XS", 17, 256, 74), _q("IQ3_XXS", 18, 256, 98),
    _q("IQ1_S", 19, 256, 50), _q("IQ4_NL", 20, 32, 18), _q("IQ3_S", 21, 256, 110), _q("IQ2_S", 22, 256, 82),
    _q("IQ4_XS", 23, 256, 136), _q("IQ1_M", 29, 256, 56), _q("TQ1_0", 34, 256, 54), _q("TQ2_0", 35, 256, 66),
    _q("MXFP4", 39, 32, 17), _q("NVFP4", 40, 64, 36), _q("Q1_0", 41, 128, 18),
)

BY_CODE: dict[str, DType] = {d.code: d for d in TABLE}
BY_ONNX: dict[int, DType] = {d.onnx: d for d in TABLE if d.onnx is not None}
BY_GGML: dict[int, DType] = {d.ggml: d for d in TABLE if d.ggml is not None}
BY_TORCH: dict[str, DType] = {d.torch: d for d in TABLE if d.torch is not None}
BY_NUMPY: dict[str, DType] = {d.numpy: d for d in TABLE if d.numpy is not None}

# torch's typed storage classes (legacy checkpoints and `_rebuild_tensor_v2`) → the element type.
# UntypedStorage holds bytes; `_rebuild_tensor_v3` names the dtype beside it.
TORCH_STORAGES: dict[str, DType] = {name: BY_CODE[code] for name, code in (
    ("FloatStorage", "F32"), ("DoubleStorage", "F64"), ("HalfStorage", "F16"),
    ("BFloat16Storage", "BF16"), ("LongStorage", "I64"), ("IntStorage", "I32"), ("ShortStorage", "I16"),
    ("CharStorage", "I8"), ("ByteStorage", "U8"), ("BoolStorage", "BOOL"), ("ComplexFloatStorage", "C64"),
    ("ComplexDoubleStorage", "C128"), ("QInt8Storage", "QI8"), ("QUInt8Storage", "QU8"),
    ("QInt32Storage", "QI32"), ("QUInt4x2Storage", "QU4X2"), ("QUInt2x4Storage", "QU2X4"),
    ("UntypedStorage", "U8"),
)}

# Other spellings met in files and in torch's own reprs (upper-cased for lookup).
_ALIASES = {"FLOAT": "F32", "HALF": "F16", "DOUBLE": "F64", "LONG": "I64", "INT": "I32", "SHORT": "I16",
            "CHAR": "I8", "BYTE": "U8"}
_NUMPY_STYLE = re.compile(r"^([<>|=]?)([fiubc])(\d{1,2})$")


def _spellings() -> dict[str, DType]:
    out: dict[str, DType] = {}
    for d in TABLE:
        for name in (d.torch, d.onnx_name):
            if name:
                out.setdefault(name.upper(), d)
    for alias, code in _ALIASES.items():
        out[alias] = BY_CODE[code]
    out.update(BY_CODE)  # a code is itself
    return out


_BY_SPELLING = _spellings()


def get(code: str) -> DType | None:
    return BY_CODE.get(code)


def parse(text: str) -> tuple[DType, bool] | None:
    """(dtype, big_endian) for a spelling from any format: SafeTensors "F32", torch "torch.bfloat16",
    numpy "<f4" / "float16" / "|b1", ONNX "float8e4m3fn", GGUF "Q4_K". None when unknown (also for
    numpy's object and string types, which hold no numbers)."""
    raw = text.strip()
    m = _NUMPY_STYLE.match(raw)
    if m:
        order, kind, size = m.groups()
        d = BY_NUMPY.get(kind + size)
        return (d, order == ">" and (d.itemsize or 1) > 1) if d is not None else None
    upper = raw.upper().removeprefix("TORCH.")
    d = _BY_SPELLING.get(upper)
    return (d, False) if d is not None else None


# Views in the shapes older call sites use.

def safetensors_bits() -> dict[str, int]:
    """SafeTensors dtype code → bits per element: what a SafeTensors header may name."""
    return {d.code: d.bits for d in TABLE if d.safetensors}


def writable_sizes() -> dict[str, int]:
    """SafeTensors dtype code → bytes per element, for the types the converter writes."""
    return {d.code: d.block_bytes for d in TABLE if d.writable}


def onnx_names() -> dict[int, tuple[str, int]]:
    """ONNX TensorProto.DataType → (name, bits per element; 0 for strings)."""
    return {code: (d.onnx_name or d.code.lower(), d.bits) for code, d in BY_ONNX.items()}


def ggml_plain() -> dict[int, str]:
    """GGML types that are plain arrays (one element per unit) → dtype code."""
    return {t: d.code for t, d in BY_GGML.items() if d.kind != QUANT}
