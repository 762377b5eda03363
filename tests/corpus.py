"""A registry of generated hostile and benign files that any test can reuse.

Every entry is a `Fixture(name, data, min_severity)`: a plain 3-tuple, so `name, data, sev = f`
works. Hostile entries expect at least `high`; benign entries expect less than `high` and carry
their lowest expected severity (usually `NONE`).

Sources, all generated at run time (no committed binaries):
- this module's own seeds: pickles built opcode by opcode, pickles of ordinary objects made with the
  real `pickle`, and one benign file per container format written by its real writer (torch.save,
  numpy.save, joblib.dump, safetensors, GGUFWriter, onnx.helper, h5py), so every format a helper
  registers is fuzzed from a valid file;
- every `tests/fixtures/*.py` module that other areas keep: a module-level `corpus()` (or
  `hostile()` / `benign()`) returning such triples is picked up automatically. A module that
  fails to import is listed in `load_errors()` and shown in the robustness summary, never hidden.

Heavy writers are imported inside the functions, and everything is cached per process.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import importlib
import io
import lzma
import pickle
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from airlock.core.findings import Severity

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

MARKER = "echo AIRLOCK_MARKER"  # the only command a hostile fixture ever names


class Fixture(NamedTuple):
    name: str
    data: bytes
    min_severity: Severity


# A tiny pickle assembler: each function returns the bytes of one opcode.

def PROTO(n: int) -> bytes:
    return b"\x80" + bytes([n])


def GLOBAL(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def INST(module: str, name: str) -> bytes:
    return b"i" + f"{module}\n{name}\n".encode()


def STR(s: str) -> bytes:  # SHORT_BINUNICODE or BINUNICODE
    raw = s.encode("utf-8", "surrogatepass")
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def STRING(s: str) -> bytes:  # protocol 0 quoted STRING
    return b"S" + repr(s).encode() + b"\n"


def BINPUT(i: int) -> bytes:
    return b"q" + bytes([i])


def BINGET(i: int) -> bytes:
    return b"h" + bytes([i])


def BININT1(i: int) -> bytes:
    return b"K" + bytes([i])


def EXT1(code: int) -> bytes:
    return b"\x82" + bytes([code])


def FRAME(n: int) -> bytes:
    return b"\x95" + struct.pack("<Q", n)


MARK, STOP, TUPLE, TUPLE1, TUPLE2, EMPTY_TUPLE = b"(", b".", b"t", b"\x85", b"\x86", b")"
REDUCE, BUILD, OBJ, NEWOBJ, STACK_GLOBAL, MEMOIZE = b"R", b"b", b"o", b"\x81", b"\x93", b"\x94"
DUP, POP, EMPTY_DICT, EMPTY_LIST, SETITEM, APPEND, NONE = b"2", b"0", b"}", b"]", b"s", b"a", b"N"


def asm(*ops: bytes) -> bytes:
    return b"".join(ops)


def call(module: str, name: str, *args: str, proto: int = 2) -> bytes:
    """module.name(*args) through GLOBAL + REDUCE, the plainest dangerous pickle."""
    head = PROTO(proto) if proto >= 2 else b""
    return asm(head, GLOBAL(module, name), MARK, *(STR(a) if proto >= 2 else STRING(a) for a in args),
               TUPLE, REDUCE, STOP)


# Hostile pickles, one per mechanism (the pickle area's own corpus covers every THREATS bullet).

def _hostile_pickles() -> dict[str, bytes]:
    sys_call = call("os", "system", MARKER)
    return {
        "reduce_os_system_p0.pkl": call("os", "system", MARKER, proto=0),
        "reduce_os_system_p2.pkl": sys_call,
        "reduce_posix_system.pkl": call("posix", "system", MARKER),
        "reduce_subprocess_check_output.pkl": asm(
            PROTO(2), GLOBAL("subprocess", "check_output"), MARK, MARK, STR("echo"), STR("AIRLOCK_MARKER"),
            b"l", TUPLE, REDUCE, STOP),
        "reduce_builtins_eval.pkl": call("builtins", "eval", "print('AIRLOCK_MARKER')"),
        "reduce_py2_builtin_exec.pkl": call("__builtin__", "exec", "print('AIRLOCK_MARKER')", proto=0),
        "stack_global_memo.pkl": asm(
            PROTO(4), STR("os"), MEMOIZE, STR("system"), MEMOIZE, BINGET(0), BINGET(1), STACK_GLOBAL,
            STR(MARKER), TUPLE1, REDUCE, STOP),
        "stack_global_dup.pkl": asm(
            PROTO(4), STR("posix"), DUP, BINPUT(0), POP, BINGET(0), STR("system"), STACK_GLOBAL,
            STR(MARKER), TUPLE1, REDUCE, STOP),
        "dotted_name_walk.pkl": asm(
            PROTO(4), STR("logging"), STR("os.system"), STACK_GLOBAL, STR(MARKER), TUPLE1, REDUCE, STOP),
        "getattr_chain.pkl": asm(
            PROTO(2), GLOBAL("builtins", "getattr"), GLOBAL("builtins", "__import__"), STR("os"), TUPLE1,
            REDUCE, STR("system"), TUPLE2, REDUCE, STR(MARKER), TUPLE1, REDUCE, STOP),
        "inst_os_system.pkl": asm(MARK, STRING(MARKER), INST("os", "system"), STOP),
        "obj_os_system.pkl": asm(MARK, GLOBAL("os", "system"), STRING(MARKER), OBJ, STOP),
        "newobj_popen_reference.pkl": asm(
            PROTO(2), GLOBAL("subprocess", "Popen"), EMPTY_TUPLE, NEWOBJ, STOP),
        "build_planted_setstate.pkl": asm(
            PROTO(2), GLOBAL("argparse", "Namespace"), EMPTY_TUPLE, NEWOBJ, NONE, EMPTY_DICT,
            STR("__setstate__"), GLOBAL("os", "system"), SETITEM, TUPLE2, BUILD, STR(MARKER), BUILD, STOP),
        "ext1_unregistered.pkl": asm(PROTO(2), EXT1(7), STR(MARKER), TUPLE1, REDUCE, STOP),
        "stacked_payload_second.pkl": pickle.dumps({"weights": [1, 2, 3]}, protocol=2) + sys_call,
        "truncated_after_reduce.pkl": sys_call[:-1],
        "no_stop_frame.pkl": asm(PROTO(4), FRAME(64)) + sys_call[2:-1],
        "benign_prefix_then_payload.pkl": asm(
            PROTO(2), *(BININT1(i % 256) + POP for i in range(5000)), sys_call[2:]),
        "gzip_wrapped.pkl.gz": gzip.compress(sys_call, mtime=0),
        "bz2_wrapped.pkl.bz2": bz2.compress(sys_call),
        "xz_wrapped.pkl.xz": lzma.compress(sys_call),
        "zlib_wrapped.pkl": zlib.compress(sys_call),
        "pickle_named_safetensors.safetensors": sys_call,
        "pickle_named_txt.txt": sys_call,
        "pickle_prefix_zip_polyglot.bin": sys_call + _zip({"archive/data.pkl": pickle.dumps({}, 2)}),
    }


def _benign_pickles() -> dict[str, bytes]:
    import argparse
    import collections
    import datetime
    import functools as ft
    import pathlib

    objects = {
        "dict": {"lr": 0.1, "steps": [1, 2, 3], "name": "os.system is just a string"},
        "namespace": argparse.Namespace(lr=0.01, epochs=3),
        "path": pathlib.PurePosixPath("/tmp/model"),
        "defaultdict": collections.defaultdict(list, {"a": [1]}),
        "ordereddict": collections.OrderedDict(a=1, b=2),
        "partial": ft.partial(collections.OrderedDict, a=1),
        "misc": (datetime.datetime(2024, 1, 2, 3, 4, 5), slice(1, 9, 2), {1, 2}, bytearray(b"xy"), 1 + 2j),
    }
    out = {f"benign_{k}_p{p}.pkl": pickle.dumps(v, protocol=p) for k, v in objects.items() for p in (0, 2, 4, 5)}
    out["dangerous_names_as_data.pkl"] = pickle.dumps({"os": "system", "cmd": "subprocess.Popen"}, 4)
    return out


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            zf.writestr(info, data)
    return buf.getvalue()


# One valid file per container format, written by the format's real writer.

def _torch_files() -> dict[str, bytes]:
    import torch

    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3, dtype=torch.bfloat16),
             "step": 3}
    out = {}
    for name, kwargs in (("torch_zip.pt", {}), ("torch_legacy.pt", {"_use_new_zipfile_serialization": False})):
        buf = io.BytesIO()
        torch.save(state, buf, **kwargs)
        out[name] = buf.getvalue()
    return out


def _numpy_files() -> dict[str, bytes]:
    import numpy as np

    out = {}
    for name, arr in (("array_f32.npy", np.arange(12, dtype=np.float32).reshape(3, 4)),
                      ("array_structured.npy", np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]))):
        buf = io.BytesIO()
        np.save(buf, arr)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, a=np.ones(4), b=np.arange(3))
    out["arrays.npz"] = buf.getvalue()
    return out


def _joblib_files() -> dict[str, bytes]:
    import joblib
    import numpy as np

    out = {}
    for name, compress in (("dump.joblib", 0), ("dump_zlib.joblib", ("zlib", 3)), ("dump_lz4.joblib", ("lz4", 3))):
        buf = io.BytesIO()
        joblib.dump({"coef": np.arange(5.0), "n": 3}, buf, compress=compress)
        out[name] = buf.getvalue()
    return out


def _safetensors_files() -> dict[str, bytes]:
    import numpy as np
    from safetensors.numpy import save

    return {"model.safetensors": save({"model.layers.0.w": np.ones((2, 3), dtype=np.float16),
                                       "model.layers.0.b": np.arange(3, dtype=np.int64)},
                                      metadata={"format": "pt"})}


def _gguf_files() -> dict[str, bytes]:
    import tempfile

    import gguf
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_uint32("llama.context_length", 128)
        writer.add_string("tokenizer.chat_template", "{% for m in messages %}{{ m['content'] }}{% endfor %}")
        writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a"])
        writer.add_tensor("blk.0.w", np.ones((4, 8), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return {"tiny.gguf": path.read_bytes()}


def _onnx_files() -> dict[str, bytes]:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return {"model.onnx": model.SerializeToString()}


def _keras_files() -> dict[str, bytes]:
    import json

    import h5py

    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Dense", "config": {"name": "d", "units": 2}, "module": "keras.layers"}]}}
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "3.0.0"
        f.create_group("model_weights")
    keras_zip = _zip({"metadata.json": b'{"keras_version": "3.0.0"}', "config.json": json.dumps(config).encode(),
                      "model.weights.h5": b""})
    return {"model.h5": buf.getvalue(), "model.keras": keras_zip}


def _torch_hostile() -> dict[str, bytes]:
    """A real torch.save zip whose data.pkl is replaced by a payload (torch's loader runs it)."""
    clean = _torch_files()["torch_zip.pt"]
    with zipfile.ZipFile(io.BytesIO(clean)) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    pkl = next(n for n in members if n.endswith("/data.pkl"))
    members[pkl] = call("os", "system", MARKER)
    return {"torch_zip_payload.pt": _zip(members)}


def _numpy_hostile() -> dict[str, bytes]:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + call("os", "system", MARKER)
    return {"object_array_payload.npy": npy}


_BENIGN_WRITERS: dict[str, Callable[[], dict[str, bytes]]] = {
    "torch": _torch_files, "numpy": _numpy_files, "joblib": _joblib_files,
    "safetensors": _safetensors_files, "gguf": _gguf_files, "onnx": _onnx_files, "keras": _keras_files,
}
_HOSTILE_WRITERS: dict[str, Callable[[], dict[str, bytes]]] = {
    "pickle": _hostile_pickles, "torch": _torch_hostile, "numpy": _numpy_hostile,
}
_errors: list[str] = []


def _run(writers: dict[str, Callable[[], dict[str, bytes]]], severity: Severity) -> list[Fixture]:
    out = []
    for area, writer in writers.items():
        try:
            files = writer()
        except Exception as exc:  # noqa: BLE001 - a missing writer library is reported, not fatal
            _errors.append(f"corpus writer {area}: {type(exc).__name__}: {exc}")
            continue
        out += [Fixture(f"{area}/{name}", data, severity) for name, data in files.items()]
    return out


def _from_fixture_modules(kind: str) -> list[Fixture]:
    """Entries from tests/fixtures/*.py modules that expose corpus()/hostile()/benign()."""
    out: list[Fixture] = []
    for path in sorted((TESTS / "fixtures").glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"fixtures.{path.stem}")
        except Exception as exc:  # noqa: BLE001 - shown in the summary, never hidden
            _errors.append(f"fixtures.{path.stem}: {type(exc).__name__}: {exc}")
            continue
        # corpus() first: some modules also have hostile()/benign() helpers of another shape.
        maker = getattr(module, "corpus", None) or getattr(module, kind, None)
        if maker is None:
            continue
        entries: Iterable[Any] = maker()
        for entry in entries:
            if not (isinstance(entry, tuple) and len(entry) == 3 and isinstance(entry[1], bytes | bytearray)):
                _errors.append(f"fixtures.{path.stem}.{maker.__name__}: entry {str(entry)[:80]} is not "
                               "(name, bytes, severity)")
                break
            name, data, severity = entry
            is_hostile = Severity(severity) >= Severity.HIGH
            if is_hostile == (kind == "hostile"):
                out.append(Fixture(f"{path.stem}/{name}", bytes(data), Severity(severity)))
    return out


@functools.cache
def hostile() -> tuple[Fixture, ...]:
    """Files a real loader would act on dangerously: each must scan `high` or worse."""
    own = [Fixture(f"pickle/{n}", d, Severity.HIGH) for n, d in _hostile_pickles().items()]
    return tuple(own + _run({k: v for k, v in _HOSTILE_WRITERS.items() if k != "pickle"}, Severity.HIGH)
                 + _from_fixture_modules("hostile"))


@functools.cache
def benign() -> tuple[Fixture, ...]:
    """Ordinary files: each must scan below `high`. Also the fuzzers' seeds for every format."""
    own = [Fixture(f"pickle/{n}", d, Severity.NONE) for n, d in _benign_pickles().items()]
    return tuple(own + _run(_BENIGN_WRITERS, Severity.NONE) + _from_fixture_modules("benign"))


def all_fixtures() -> tuple[Fixture, ...]:
    return hostile() + benign()


def load_errors() -> list[str]:
    all_fixtures()
    return list(_errors)
