"""Hostile and mutated files for the differential harness: real writers plus byte-level mutations.

Payloads are harmless markers (`os.system("echo AIRLOCK_MARKER")`); the loader child blocks them
anyway. Mutations are the ones scanner bypasses came from: zip header fields (flags, method,
CRCs, names in the local header only or the central directory only, counts), pickle opcodes
(replaced, dropped, doubled), stacked pickles, and truncation at every kind of boundary.
Everything is deterministic for a given seed.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import random
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import corpus  # noqa: E402

MARKER = corpus.MARKER
FIXTURE_PREFIXES = ("pickle_files", "numpy_files", "joblib_files", "torch_files", "safetensors_files",
                    "keras_files", "onnx_files", "gguf_files", "convert_files")
LOADABLE_PREFIXES = ("pickle", "numpy", "joblib", "torch")


class Payload:
    """Pickles as os.system(MARKER) (posix.system on Linux) through __reduce__, as attacks do."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (MARKER,)


def _torch_seeds() -> dict[str, bytes]:
    import torch

    state = {"w": torch.ones(2, 3), "evil": Payload()}
    out = {}
    for name, kwargs in (("torch_zip_reduce.pt", {}), ("torch_legacy_reduce.pt", {"_use_new_zipfile_serialization": False})):
        buf = io.BytesIO()
        torch.save(state, buf, **kwargs)
        out[name] = buf.getvalue()
    out["pickle_prefix_before_torch_zip.pt"] = corpus.call("os", "system", MARKER) + _clean_torch_zip()
    return out


def _clean_torch_zip() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    return buf.getvalue()


def _numpy_seeds() -> dict[str, bytes]:
    import numpy as np

    out = {}
    for name, arr in (("object_array.npy", np.array([Payload(), 1], dtype=object)),
                      ("structured_object_field.npy", np.array([(1, Payload())], dtype=[("a", "<i4"), ("b", "O")]))):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, ok=np.arange(3), evil=np.array([Payload()], dtype=object))
    out["npz_object_member.npz"] = buf.getvalue()
    return out


def _joblib_seeds() -> dict[str, bytes]:
    import joblib
    import numpy as np

    out = {}
    for name, compress in (("plain", 0), ("zlib", ("zlib", 3)), ("gzip", ("gzip", 3)), ("bz2", ("bz2", 3)),
                           ("xz", ("xz", 3)), ("lzma", ("lzma", 3)), ("lz4", ("lz4", 3))):
        buf = io.BytesIO()
        joblib.dump({"coef": np.arange(4.0), "evil": Payload()}, buf, compress=compress)
        out[f"joblib_{name}.joblib"] = buf.getvalue()
    return out


def hostile_seeds() -> dict[str, bytes]:
    seeds = {f.name.replace("/", "__"): f.data for f in corpus.hostile()}
    for writer in (_torch_seeds, _numpy_seeds, _joblib_seeds):
        seeds.update(writer())
    return seeds


def benign_seeds() -> dict[str, bytes]:
    return {f.name.replace("/", "__"): f.data for f in corpus.benign()}


# Zip surgery on the raw records (zipfile would refuse to write most of these).

def _records(data: bytes, sig: bytes) -> list[int]:
    out, pos = [], data.find(sig)
    while pos != -1:
        out.append(pos)
        pos = data.find(sig, pos + 1)
    return out


def zip_mutants(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    local, central, eocd = _records(data, b"PK\x03\x04"), _records(data, b"PK\x01\x02"), _records(data, b"PK\x05\x06")
    if not local or not central:
        return
    # (record kind, offset of the field in the record, width)
    fields = {"flags": (6, 8, 2), "method": (8, 10, 2), "crc": (14, 16, 4), "csize": (18, 20, 4),
              "usize": (22, 24, 4), "namelen": (26, 28, 2), "extralen": (28, 30, 2)}
    for field, (loff, coff, width) in fields.items():
        for where, records, off in (("local", local, loff), ("central", central, coff)):
            rec = rng.choice(records)
            if rec + off + width > len(data):
                continue
            fmt = "<H" if width == 2 else "<I"
            value = {"flags": rng.choice((0x1, 0x8, 0x20, 0x40, 0x800, 0x2000)),
                     "method": rng.choice((0, 8, 12, 14, 99)), "crc": rng.choice((0, 0xDEADBEEF)),
                     "csize": rng.choice((0, 0xFFFFFFFF, 1)), "usize": rng.choice((0, 0xFFFFFFFF, 1)),
                     "namelen": rng.choice((0, 1, 0xFFFF)), "extralen": rng.choice((0, 4, 0xFFFF))}[field]
            if field == "flags":
                value |= struct.unpack_from("<H", data, rec + off)[0]
            yield (f"zip_{where}_{field}_{value:#x}",
                   data[:rec + off] + struct.pack(fmt, value) + data[rec + off + width:])
    # A name changed in one directory only (torch reads one, zipfile the other).
    for where, records, name_at in (("local", local, 30), ("central", central, 46)):
        rec = rng.choice(records)
        pos = rec + name_at + rng.randrange(4)
        if pos < len(data):
            yield f"zip_{where}_name_byte", data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:]
    if eocd:
        at = eocd[-1] + 8
        yield "zip_eocd_count", data[:at] + struct.pack("<HH", 0, 0) + data[at + 4:]
    for cut in rng.sample(sorted(set(local + central + eocd)), min(3, len(local + central + eocd))):
        yield f"zip_cut_{cut}", data[:cut]


def pickle_mutants(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    try:
        ops = [(pos, op.name) for op, _arg, pos in pickletools.genops(data)]
    except Exception:  # noqa: BLE001 - a stream pickletools cannot read is mutated by bytes only
        ops = []
    codes = [bytes([op.code.encode("latin-1")[0]]) for op in pickletools.opcodes]
    for _ in range(3 if ops else 0):
        pos, name = rng.choice(ops)
        new = rng.choice(codes)
        yield f"op_{name}_to_{new.hex()}@{pos}", data[:pos] + new + data[pos + 1:]
    if len(ops) > 2:
        pos, name = rng.choice(ops[1:-1])
        nxt = next(p for p, _ in ops if p > pos)
        yield f"op_drop_{name}@{pos}", data[:pos] + data[nxt:]
        yield f"op_double_{name}@{pos}", data[:nxt] + data[pos:nxt] + data[nxt:]
        cut_pos, cut_name = rng.choice(ops)
        yield f"cut_before_{cut_name}@{cut_pos}", data[:cut_pos]


def mutants(name: str, data: bytes, rng: random.Random, per_seed: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    if data[:4] == b"PK\x03\x04" or b"PK\x05\x06" in data[-4096:]:
        out += list(zip_mutants(data, rng))
    out += list(pickle_mutants(data, rng))
    benign = pickle.dumps({"lr": 0.1}, protocol=2)
    out += [("stacked_after_benign", benign + data), ("stacked_before_benign", data + benign)]
    for _ in range(2):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
        out.append(("flips", bytes(buf)))
    rng.shuffle(out)
    return [(f"{name}~{label}", blob) for label, blob in out[:per_seed]]


def files(per_seed: int, sample: int | None, seed: int = 1234) -> list[tuple[str, bytes, str]]:
    """(name, bytes, origin) with origin 'hostile', 'benign' or 'mutant'.

    `sample` caps how many seeds of each kind are used (None: all of them); the ones written
    here (torch, numpy, joblib with real writers) are always in.
    """
    rng = random.Random(seed)
    hostile, benign = list(hostile_seeds().items()), list(benign_seeds().items())
    if sample is not None:
        # The sample favours files the real loaders can open (pickle, torch, numpy, joblib).
        own = [s for s in hostile if not s[0].startswith(FIXTURE_PREFIXES)]
        rest = [s for s in hostile if s[0].startswith(LOADABLE_PREFIXES)]
        hostile = own + rng.sample(rest, min(sample, len(rest)))
        mine = [s for s in benign if not s[0].startswith(FIXTURE_PREFIXES)]
        theirs = [s for s in benign if s[0].startswith(LOADABLE_PREFIXES) and s not in mine]
        benign = [s for s in mine if not s[0].startswith("pickle__")] + rng.sample(theirs, min(sample // 2, len(theirs)))
    out = [(n, d, "hostile") for n, d in hostile]
    out += [(n, d, "benign") for n, d in benign]
    for name, data, _ in list(out):
        if data:
            out += [(n, d, "mutant") for n, d in mutants(name, data, rng, per_seed)]
    return out
