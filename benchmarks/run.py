"""Airlock's benchmark: whole-process wall time and peak RSS against peers and physical floors.

Every figure is the median of several runs of a fresh process, measured in this run, and shown as
a ratio against the baseline measured in the same run: machines here are noisy, absolute seconds
are not comparable between runs.

    pip install '.[test,bench]'    # a regular install: an editable one adds an import hook (~10 ms)
    python benchmarks/run.py                     # defaults sized for 2 cores / 24 GiB
    python benchmarks/run.py --scale 0.1 --runs 3   # a quick look

Inputs are generated in a temporary folder (deleted afterwards unless --keep). torch (test extra)
is used only to write the checkpoints and for the torch conversion baseline. A peer that is not
installed stops the benchmark with a message (use --no-peers to measure Airlock and floors only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PEERS = {
    "picklescan": lambda path: ["picklescan", "-p", str(path)],
    "modelscan": lambda path: ["modelscan", "-p", str(path)],
    "modelaudit": lambda path: ["modelaudit", "scan", str(path)],
}
PEER_ENV = {"PROMPTFOO_DISABLE_TELEMETRY": "1", "NO_COLOR": "1"}  # modelaudit waits on telemetry otherwise


@dataclass
class Measure:
    seconds: float
    peak_mb: float
    runs: list[float] = field(default_factory=list)
    error: str | None = None

    def cell(self) -> str:
        if self.error:
            return f"failed ({self.error})"
        return f"{self.seconds:.3f} s, {self.peak_mb:.0f} MB"


class Cmd:
    """One command to time: what to run, its environment, exit codes that count as success, and
    what to do (untimed) before each run."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, ok_codes: tuple[int, ...] = (0, 1),
                 before=None) -> None:
        self.cmd, self.env, self.ok_codes, self.before = cmd, env, ok_codes, before


def measure_together(cmds: dict[str, Cmd], runs: int) -> dict[str, Measure]:
    """Median wall time and median peak RSS of each command as a fresh process, over `runs` rounds.

    The commands take turns (one run of each per round), so that a drift of the machine during the
    measurement (page cache, a noisy neighbour) weighs on all of them alike. Peak RSS comes from GNU
    time, which forks the command from its own small process: a child forked straight from this
    script would count this script's pages (torch, numpy) as its own.
    """
    gnu_time = shutil.which("time") or "/usr/bin/time"
    if not os.path.exists(gnu_time):
        raise SystemExit("benchmark: GNU time is needed for peak RSS (apt-get install time)")
    times: dict[str, list[float]] = {name: [] for name in cmds}
    peaks: dict[str, list[float]] = {name: [] for name in cmds}
    errors: dict[str, str] = {}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        for _ in range(runs):
            for name, c in cmds.items():
                if name in errors:
                    continue
                if c.before is not None:
                    c.before()
                start = time.perf_counter()
                proc = subprocess.run([gnu_time, "-q", "-f", "%M", "-o", report.name, *c.cmd],
                                      env={**os.environ, **(c.env or {})}, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
                elapsed = time.perf_counter() - start
                if proc.returncode not in c.ok_codes:
                    last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
                    errors[name] = f"exit {proc.returncode}: {last}"
                    continue
                report.seek(0)
                lines = [line for line in report.read().split() if line.isdigit()]
                times[name].append(elapsed)
                peaks[name].append(int(lines[-1]) / 1024 if lines else float("nan"))  # KiB
    return {name: Measure(0, 0, error=errors[name]) if name in errors else
            Measure(statistics.median(times[name]), statistics.median(peaks[name]), times[name])
            for name in cmds}


def measure(cmd: list[str], runs: int, **options) -> Measure:
    return measure_together({"one": Cmd(cmd, **options)}, runs)["one"]


# Inputs ---------------------------------------------------------------------------------------------

def make_torch_zip(path: Path, total_bytes: int, tensors: int, legacy: bool = False) -> None:
    import torch

    per = max(total_bytes // tensors // 4, 1)
    state = {f"model.layers.{i}.weight": torch.ones(per, dtype=torch.float32) for i in range(tensors)}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)


def make_safetensors(path: Path, total_bytes: int, tensors: int) -> None:
    """Written by hand (header + zero-filled data via truncate) so that a 4 GB file costs no RAM."""
    per = max(total_bytes // tensors // 4 * 4, 4)
    header, offset = {}, 0
    for i in range(tensors):
        header[f"model.layers.{i}.weight"] = {"dtype": "F32", "shape": [per // 4], "data_offsets": [offset, offset + per]}
        offset += per
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        fh.truncate(8 + len(raw) + offset)
    # A sparse file reads back as zeros; fill it so the disk really holds the bytes.
    with open(path, "r+b") as fh:
        fh.seek(8 + len(raw))
        chunk = b"\x01" * (8 << 20)
        left = offset
        while left:
            n = min(left, len(chunk))
            fh.write(chunk[:n])
            left -= n


def make_gguf(path: Path, vocab: int, tensors: int) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"tok{i}" for i in range(vocab)])
    writer.add_token_types([1] * vocab)
    writer.add_chat_template("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    for i in range(tensors):
        writer.add_tensor(f"blk.{i}.attn_q.weight", np.ones((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def make_onnx(path: Path, tensors: int) -> None:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones((256, 256), dtype=np.float32), f"w{i}") for i in range(tensors)]
    nodes = [helper.make_node("Add", ["x", "w0"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [256, 256])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [256, 256])], inits)
    model = helper.make_model(graph)
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=0)


def make_small_onnx_models(folder: Path, count: int) -> None:
    """`count` small models (a MatMul, a 16×16 initializer, a few KB each), all different."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        w = numpy_helper.from_array(np.full((16, 16), i, dtype=np.float32), "w")
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name=f"mm{i}")], f"g{i}",
                                  [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16])],
                                  [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 16])], [w])
        onnx.save_model(helper.make_model(graph), str(folder / f"model_{i:02d}.onnx"))


def make_onnx_inline(path: Path, total_bytes: int) -> None:
    """One model whose weights are inside the protobuf (no external data): `total_bytes` of them."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    rows = max(total_bytes // (2 * 1024 * 4), 1)
    inits = [numpy_helper.from_array(np.ones((rows, 1024), dtype=np.float32), f"w{i}") for i in range(2)]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"]), helper.make_node("Add", ["h", "w1"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [rows, rows])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [rows, 1024])], inits)
    onnx.save_model(helper.make_model(graph), str(path))


def make_small_pickles(folder: Path, count: int) -> None:
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        data = {"step": i, "lr": 0.001, "names": [f"layer{j}" for j in range(20)], "shape": (3, 224, 224)}
        (folder / f"state_{i:04d}.pkl").write_bytes(pickle.dumps(data, protocol=4))


# Floors ---------------------------------------------------------------------------------------------

FLOOR_ZIP = """
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.endswith('.pkl'):
            z.read(name)
"""
FLOOR_HEADER = """
import sys, mmap
with open(sys.argv[1], 'rb') as fh:
    m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    n = int.from_bytes(m[:8], 'little')
    bytes(m[8:8 + min(n, 1 << 28)])
"""
FLOOR_LEGACY = """
import sys
with open(sys.argv[1], 'rb') as fh:
    fh.read(1 << 20)
"""
GGUF_READER = """
import sys
from gguf import GGUFReader
GGUFReader(sys.argv[1])
"""
TORCH_CONVERT = """
import sys, torch
from safetensors.torch import save_file
state = torch.load(sys.argv[1], weights_only=True)
save_file({k: v.contiguous() for k, v in state.items()}, sys.argv[2])
"""
FLOOR_AST = """
import ast, os, sys
for name in sorted(os.listdir(sys.argv[1])):
    with open(os.path.join(sys.argv[1], name), 'rb') as fh:
        data = fh.read()
    try:
        ast.parse(data)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
"""
OPEN_TREE = """
import sys
from airlock.core.scan import scan_file
result = scan_file(sys.argv[1])
count = sum(1 for _ in result.root.walk())
print(count)
"""


FLOOR_ONNX = """
import sys, os, onnx
paths = [os.path.join(sys.argv[1], n) for n in sorted(os.listdir(sys.argv[1]))] if os.path.isdir(sys.argv[1]) else sys.argv[1:]
for p in paths:
    onnx.load(p, load_external_data=False)
"""
# The same scan with a fresh parser process for every file (before issue 23: 24 s for 30 files).
CHILD_PER_FILE = """
import sys
from airlock.core import isolate
isolate.MAX_REQUESTS = 1
from airlock.core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def isolation_rows(work: Path, runs: int, peers: dict, row) -> None:
    """ONNX (and HDF5) parse in a confined child process; a scan reuses one child for its files.
    Targets (issue 23): 30 small ONNX files under 5 s; one 2 MB ONNX file under 0.5 s."""
    folder = work / "onnx_small_30"
    if not folder.exists():
        make_small_onnx_models(folder, 30)
    model = work / "model_2mb.onnx"
    if not model.exists():
        make_onnx_inline(model, 2 * 1024 * 1024)
    for task, path in (("scan 30 small ONNX files (one folder)", folder),
                       (f"scan one {model.stat().st_size / 2**20:.1f} MB ONNX file", model)):
        cmds = {"airlock": Cmd(airlock_cmd("scan", "--format", "json", str(path))),
                "a parser process per file": Cmd([sys.executable, "-c", CHILD_PER_FILE, "scan", "--format", "json",
                                                  str(path)]),
                "floor: onnx.load, not isolated": Cmd([sys.executable, "-c", FLOOR_ONNX, str(path)])}
        for name, cmd in peers.items():
            cmds[name] = Cmd(cmd(path), env=PEER_ENV, ok_codes=tuple(range(0, 5)))
        base = measure_together(cmds, runs)
        if path == model:
            del base["a parser process per file"]  # one file: the same thing
        row(task, base.pop("airlock"), base)
    warm_row(work, model, runs, row)


def warm_row(work: Path, model: Path, runs: int, row) -> None:
    """"One 2 MB ONNX file in under 0.5 s warm": the time a file costs once the scan's parser process is up,
    as (a scan of 41 copies - a scan of 1) / 40, beside onnx.load measured the same way (not isolated)."""
    folder = work / "onnx_2mb_x41"
    if not folder.exists():
        folder.mkdir()
        for i in range(41):
            os.link(model, folder / f"copy_{i:02d}.onnx")
    one = folder / "copy_00.onnx"
    got = measure_together({
        "airlock x41": Cmd(airlock_cmd("scan", "--format", "json", "--jobs", "1", str(folder))),
        "airlock x1": Cmd(airlock_cmd("scan", "--format", "json", "--jobs", "1", str(one))),
        "onnx.load x41": Cmd([sys.executable, "-c", FLOOR_ONNX, str(folder)]),
        "onnx.load x1": Cmd([sys.executable, "-c", FLOOR_ONNX, str(one)])}, runs)
    if any(m.error for m in got.values()):
        row("scan one 2 MB ONNX file, warm parser process", got["airlock x41"], got)
        return

    def per_file(name: str) -> Measure:
        many, single = got[f"{name} x41"], got[f"{name} x1"]
        return Measure(max(many.seconds - single.seconds, 0.0) / 40, many.peak_mb)

    row(f"scan one {model.stat().st_size / 2**20:.1f} MB ONNX file, warm parser process (per file, 41 in one "
        "scan)", per_file("airlock"), {"floor: onnx.load per file, not isolated": per_file("onnx.load")})


def copy_python_sources(folder: Path, count: int) -> None:
    """The first `count` .py files of this Python's standard library (sorted, tests included: they
    hold the odd encodings and syntax), copied flat: real code, not generated text."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)[:count]):
        shutil.copyfile(src, folder / f"{i:04d}_{src.name}")


def code_rows(work: Path, runs: int, peers: dict, row) -> None:
    """Python code (issue 22): 1,000 files read with ast and checked, against ast.parse alone over the
    same files (target: under 5 s). Both one process; Airlock with --jobs 1, one core against one core."""
    folder = work / "python_1000"
    if not folder.exists():
        copy_python_sources(folder, 1000)
    size = sum(p.stat().st_size for p in folder.iterdir())
    found = measure_together({
        "airlock": Cmd(airlock_cmd("scan", "--format", "json", "--jobs", "1", str(folder))),
        "airlock --jobs 2": Cmd(airlock_cmd("scan", "--format", "json", "--jobs", "2", str(folder))),
        "ast.parse only": Cmd([sys.executable, "-c", FLOOR_AST, str(folder)])}, runs)
    row(f"scan 1,000 Python files ({size / 2**20:.1f} MiB, --jobs 1)", found.pop("airlock"), found)


# Chat templates (issue 14): one attribute chain of N links took 18-30 s (10k) and > 60 s (20k),
# quadratic. The floor is jinja2's parser alone over the same text (Airlock parses with it too).

FLOOR_JINJA_PARSE = """
import sys
from jinja2 import Environment
Environment().parse(open(sys.argv[1], encoding="utf-8").read())
"""


def template_rows(work: Path, runs: int, peers: dict, row) -> None:
    """A chat_template.jinja holding one attribute chain of 10,000 and 20,000 links: Airlock's whole
    scan against jinja2's parse alone (target: within a few times the parse, linear in the links)."""
    folder = work / "templates"
    folder.mkdir(parents=True, exist_ok=True)
    for links in (10_000, 20_000):
        path = folder / f"chain-{links}" / "chat_template.jinja"
        path.parent.mkdir(exist_ok=True)
        path.write_text("{% for message in messages %}{{ x" + ".__class__" * links + " }}{% endfor %}")
        both = measure_together({"airlock": Cmd(airlock_cmd("scan", "--format", "json", str(path))),
                                 "jinja2 parse only": Cmd([sys.executable, "-c", FLOOR_JINJA_PARSE, str(path)],
                                                          ok_codes=(0,))}, runs)
        row(f"template: {links:,}-link attribute chain ({path.stat().st_size / 1e3:.0f} KB)", both.pop("airlock"),
            both)


# Bombs (issue 14): each kind expanding to ~2 GB, made by tests/fixtures/bomb_files.py (streaming).

BOMB_BYTES = 2_000_000_000
VLEN_BYTES = 300_000_000  # the HDF5 case: a 300 MB variable-length model_config
BOMB_TARGET_S, BOMB_TARGET_MB = 10.0, 300.0
FULL_READ = """
import bz2, gzip, lzma, os, shutil, sys, zipfile
kind, path = sys.argv[1], sys.argv[2]
sink = open(os.devnull, "wb")
if kind == "zip":
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            with zf.open(name) as fh:
                shutil.copyfileobj(fh, sink, 1 << 20)
elif kind == "hdf5":
    import h5py
    with h5py.File(path, "r") as f:
        len(f.attrs["model_config"])
else:
    if kind == "lz4":
        import lz4.frame
        fh = lz4.frame.open(path)
    elif kind == "gzip2":
        fh = gzip.open(gzip.open(path))
    else:
        fh = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}[kind](path)
    shutil.copyfileobj(fh, sink, 1 << 20)
"""
BOMB_READER = {"torch zip, deflated data.pkl": "zip", "gzip pickle": "gzip", "bz2 pickle": "bz2",
               "xz pickle": "xz", "lz4 pickle": "lz4", "gzip in gzip": "gzip2", "npz object array": "zip",
               ".keras, deflated weights.h5": "zip", "HDF5 variable-length model_config": "hdf5"}


def bomb_rows(work: Path, runs: int, peers: dict, row) -> None:
    """Scan each bomb: median time and peak RSS against the stdlib decompressing it whole (the
    floor a loader pays). The task names the verdict, which must be high (exit 1), and whether the
    targets (under 10 s and 300 MB) are met. Full size whatever --scale says: they must cross the
    decompression budget."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fixtures.bomb_files import BOMBS, SUFFIX, hdf5_vlen_config

    folder = work / "bombs"
    folder.mkdir(parents=True, exist_ok=True)
    makers = {**{kind: (make, BOMB_BYTES, SUFFIX[kind]) for kind, make in BOMBS.items()},
              "HDF5 variable-length model_config": (hdf5_vlen_config, VLEN_BYTES, ".h5")}
    print(f"bombs in {folder} (each expands to ~{BOMB_BYTES / 1e9:g} GB; HDF5: {VLEN_BYTES / 1e6:g} MB) …",
          flush=True)
    for kind, (make, size, suffix) in makers.items():
        path = folder / ("bomb-" + "".join(c if c.isalnum() else "-" for c in kind) + suffix)
        if not path.exists():
            make(path, size)
        check = subprocess.run(airlock_cmd("scan", "--format", "json", str(path)), capture_output=True, text=True)
        try:
            verdict = json.loads(check.stdout)["files"][0]["severity"]
        except (ValueError, KeyError, IndexError):
            verdict = "no report"
        both = measure_together({"airlock": Cmd(airlock_cmd("scan", "--format", "json", str(path))),
                                 "stdlib full read": Cmd([sys.executable, "-c", FULL_READ, BOMB_READER[kind],
                                                          str(path)])}, runs)
        mine = both.pop("airlock")
        met = (verdict in ("high", "critical") and check.returncode == 1 and not mine.error
               and mine.seconds < BOMB_TARGET_S and mine.peak_mb < BOMB_TARGET_MB)
        row(f"bomb: {kind} ({path.stat().st_size / 1e6:.2f} MB file) -> {verdict}, exit {check.returncode}"
            f"{'' if met else ', TARGET MISSED'}", mine, both)
    sevenz_rows(work, runs, row)


# 7z (issue 13): py7zr 1.1.4 hands its writer chunks of up to 128 MB (422 MB resident for a 156 KB archive
# of 1 GiB of zeros). Airlock decodes members itself, keeping a member's head and tail only.
SEVENZ_ZEROS = 1_000_000_000  # under the default 1 GiB budget: every byte is decoded, then the pickle after it
PY7ZR_TEST = """
import py7zr, sys
with py7zr.SevenZipFile(sys.argv[1]) as archive:
    archive.testzip()  # decodes every member and checks its CRC, writing nothing
"""


def sevenz_rows(work: Path, runs: int, row) -> None:
    """A 7z archive of 1 GB of zeros followed by a pickle that calls os.system: Airlock decodes it all
    within the default budget (verdict critical) against py7zr decoding it (testzip)."""
    import py7zr

    path = work / "zeros-then-payload.7z"
    if not path.exists():
        zeros = work / "zeros.bin"
        with open(zeros, "wb") as fh:
            fh.truncate(SEVENZ_ZEROS)  # sparse: nothing written
        try:
            with py7zr.SevenZipFile(path, "w") as archive:
                archive.write(zeros, "zeros.bin")
                archive.writestr(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.", "payload.pkl")
        finally:
            zeros.unlink()
    check = subprocess.run(airlock_cmd("scan", "--format", "json", str(path)), capture_output=True, text=True)
    try:
        verdict = json.loads(check.stdout)["files"][0]["severity"]
    except (ValueError, KeyError, IndexError):
        verdict = "no report"
    both = measure_together({"airlock": Cmd(airlock_cmd("scan", "--format", "json", str(path))),
                             "py7zr testzip": Cmd([sys.executable, "-c", PY7ZR_TEST, str(path)])}, runs)
    row(f"7z: 1 GB of zeros, then a pickle ({path.stat().st_size / 1e3:.0f} KB file) -> {verdict}",
        both.pop("airlock"), both)


# The desktop app (issue 19): the longest event-loop stall while typing in the search box.

def make_big_gguf(path: Path, vocab: int, tensor_bytes: int) -> None:
    """A 95 MB-class GGUF: a Qwen-sized vocabulary (tokens, types, merges), a chat template, ~300 tensors."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"Ġtok{i}" for i in range(vocab)])
    writer.add_token_types([1] * vocab)
    writer.add_token_merges([f"Ġ t{i}" for i in range(max(vocab - 500, 1))])
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                             "{% endfor %}")
    per = max(tensor_bytes // 300 // 4, 1)
    for i in range(300):
        writer.add_tensor(f"blk.{i}.ffn.weight", np.ones((per,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


TYPIST = str(Path(__file__).resolve().with_name("gui_typist.py"))


def measure_typist(path: Path, mode: str, runs: int, text: str = "chat_template") -> Measure:
    """Median longest event-loop gap (as `seconds`) and peak RSS of benchmarks/gui_typist.py runs."""
    return measure_gui_script([TYPIST, str(path), "--mode", mode, "--text", text], runs)


def measure_gui_script(argv: list[str], runs: int) -> Measure:
    """Run a GUI benchmark script (offscreen) `runs` times; its last stdout line is JSON with the
    longest event-loop gap (`max_gap`, s) and `peak_mb`: the median of each."""
    gaps, peaks = [], []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, *argv], env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return Measure(0, 0, error=f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        gaps.append(result["max_gap"])
        peaks.append(result["peak_mb"])
    return Measure(statistics.median(gaps), statistics.median(peaks), gaps)


def gui_rows(work: Path, runs: int, peers: dict, row) -> None:
    """Issue 19's target: no UI stall over 50 ms while typing in the search box, on any file. A typist
    types `chat_template` at 30 ms per key (offscreen) and the longest gap of a 2 ms timer is the row's
    figure (seconds), beside the same typing with the search off (the event loop's own floor) and a
    search run on the GUI thread at every keystroke (what main did: it froze the window per key).
    A last row: the longest stall while a large pickle scans in a worker, beside the same scan with
    Python's default GIL switch interval (what the app had before gui/workers.py shortened it)."""
    del peers
    scale = float(os.environ.get("AIRLOCK_BENCH_SCALE", "1"))
    big = work / "gui_95mb.gguf"
    if not big.exists():
        make_big_gguf(big, int(151_000 * min(scale, 1)) or 1_000, int(95 * 2**20 * scale))
    pickled = work / "gui_150k.pkl"
    if not pickled.exists():
        import pickle  # writing the benchmark's input; Airlock never loads it

        pickled.write_bytes(pickle.dumps([{"w": float(i), "k": i} for i in range(int(150_000 * min(scale, 1)))],
                                         protocol=4))
    for task, path, sync in ((f"GUI: longest stall typing, {big.stat().st_size / 2**20:.0f} MB GGUF", big, True),
                             ("GUI: longest stall typing, 150k-entry pickle", pickled, False)):
        base = {"floor (search off)": measure_typist(path, "floor", runs)}
        if sync:  # node by node on the GUI thread: seconds per key; two keys, one run say enough
            base["filter on the GUI thread per key"] = measure_typist(path, "sync", 1, text="ch")
        row(task, measure_typist(path, "airlock", runs), base)
    row("GUI: longest stall while a 150k-entry pickle scans", measure_scan_stall(pickled, runs),
        {"Python's default switch interval (5 ms)": measure_scan_stall(pickled, runs, switch_interval=0.005)})


SCAN_STALL = str(Path(__file__).resolve().with_name("gui_scan_stall.py"))


def measure_scan_stall(path: Path, runs: int, switch_interval: float | None = None) -> Measure:
    """Median longest event-loop gap (as `seconds`) while benchmarks/gui_scan_stall.py opens `path`."""
    extra = [] if switch_interval is None else ["--switch-interval", str(switch_interval)]
    return measure_gui_script([SCAN_STALL, str(path), *extra], runs)


def remote_rows(work: Path, runs: int, peers: dict, row) -> None:
    """Remote scans (issue 24): a 4 GiB SafeTensors and a 2 GiB torch zip (sparse files) served by a
    local HTTP server honouring Range, scanned through hf:// URLs, against the same scan of the local
    file. The task names the bytes fetched and their share of the file (target: at most 1 %)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import range_server

    gib = 1024**3
    root = work / "served"
    inputs = {"model.safetensors": (4 * gib, range_server.big_safetensors),
              "pytorch_model.bin": (2 * gib, range_server.big_torch_zip)}
    with range_server.serve(root) as server:
        env = {**os.environ, "HF_ENDPOINT": server.endpoint}
        for name, (size, make) in inputs.items():
            path = range_server.hf_path(root, "org/name", "main", name)
            if not path.exists():
                make(path, size)
            url = f"hf://org/name/{name}"
            check = subprocess.run(airlock_cmd("scan", "--format", "json", url), capture_output=True, text=True,
                                   env=env)
            try:
                entry = json.loads(check.stdout)["files"][0]
                read, verdict = int(entry["bytes_read"]), entry["severity"]
            except (ValueError, KeyError, IndexError):
                read, verdict = -1, "no report"
            share = 100 * read / path.stat().st_size
            both = measure_together({"airlock": Cmd(airlock_cmd("scan", "--format", "json", url), env=env),
                                     "local scan": Cmd(airlock_cmd("scan", "--format", "json", str(path)))}, runs)
            mine = both.pop("airlock")
            met = read >= 0 and share <= 1.0 and not mine.error
            row(f"remote {name} ({size / gib:g} GiB) by ranges: {read:,} bytes read ({share:.3f} %), {verdict}"
                f"{'' if met else ', TARGET MISSED'}", mine, both)


TESTS = Path(__file__).resolve().parents[1] / "tests"  # the graph generator the layout tests use
# The graph view (issue 20): lay out a generated 5,000-operator graph (transformer blocks, a residual
# join per block, a mask every block reads), against a topological sort of the same graph, the
# least any layered layout does; and the whole wait for the Graph tab of a 5,000-operator ONNX file
# (scan, build, lay out) against the scan alone.
LAYOUT = """
import sys
sys.path.insert(0, sys.argv[1])
from fixtures.graph_files import transformer_edges
from airlock.core.graph.layout import layered_layout
count, edges = transformer_edges(5000)
layered_layout(count, edges, [120.0] * count, [40.0] * count)
"""
FLOOR_TOPOLOGICAL = """
import sys
sys.path.insert(0, sys.argv[1])
from fixtures.graph_files import transformer_edges
from airlock.core.graph.layout import topological_order
count, edges = transformer_edges(5000)
topological_order(count, edges)
"""
GRAPH_TAB = """
import sys
from airlock.core.api import scan_file
from airlock.core.graph import build_and_lay_out, graph_sources
result = scan_file(sys.argv[1], keep_tree=True).result
laid = build_and_lay_out(graph_sources(result.root)[0], 7.0, 16.0)
assert len(laid.graph.nodes) > 5000
"""
SCAN_ONLY = """
import sys
from airlock.core.api import scan_file
scan_file(sys.argv[1], keep_tree=True).result.close()
"""

# Tensor values (issue 20): the wait for the values table's first page (scan, locate the tensor,
# decode one page) and for an evenly spaced sample over the whole tensor, against the same scan and
# numpy reading a page of values from the offset the tree gives (numpy's import is in both).
VALUES_PAGE = """
import sys
from airlock.core import values
from airlock.core.api import scan_file
from airlock.core.tree import TENSOR
result = scan_file(sys.argv[1], keep_tree=True).result
node = next(n for n in result.root.walk() if n.kind == TENSOR)
read = lambda offset, n: bytes(result.source.read(offset, n))
t = values.describe(node, read)
page = (values.first_page(read, t, file_size=result.size) if sys.argv[2] == "first"
        else values.sample_page(read, t, file_size=result.size))
assert page.values.size >= 1000 and float(page.values[0, 0]) == 1.0
result.close()
"""
# The floor: the same scan, then numpy reading those bytes straight from the file (it knows where).
VALUES_FLOOR = """
import sys
import numpy as np
from airlock.core.api import scan_file
from airlock.core.tree import TENSOR
result = scan_file(sys.argv[1], keep_tree=True).result
node = next(n for n in result.root.walk() if n.kind == TENSOR)
page = np.fromfile(sys.argv[1], dtype="<f4", count=20_000, offset=node.offset)
assert float(page[0]) == 1.0
result.close()
"""


def dask_rows(work: Path, runs: int, peers: dict, row) -> None:
    """The distributed map (issue 24): 1,000 small pickles scanned with `--dask` on a LocalCluster of
    2 process workers (1 thread each; started once, not timed; the workers guarded before the first
    run) against `--jobs 2` on the same machine, in the same rounds. The task names files/s of both."""
    import distributed

    folder = work / "pickles"
    if not folder.exists():
        make_small_pickles(folder, 1000)
    count = sum(1 for _ in folder.iterdir())
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50) as cluster:
        found = measure_together({
            "--dask": Cmd(airlock_cmd("scan", "--format", "jsonl", "--dask", cluster.scheduler_address, str(folder))),
            "--jobs 2": Cmd(airlock_cmd("scan", "--format", "jsonl", "--jobs", "2", str(folder)))}, runs)
    mine, base = found.pop("--dask"), found
    rate = f"{count / mine.seconds:,.0f} files/s" if mine.seconds else "?"
    base_rate = f"{count / base['--jobs 2'].seconds:,.0f}" if base["--jobs 2"].seconds else "?"
    row(f"scan {count:,} small pickles --dask LocalCluster(2) ({rate}; --jobs 2: {base_rate})", mine, base)


def view_rows(work: Path, runs: int, peers: dict, row) -> None:
    """The inspector's views (issue 20): the graph layout, and the first page of a big tensor's values."""
    found = measure_together({"airlock": Cmd([sys.executable, "-c", LAYOUT, str(TESTS)], ok_codes=(0,)),
                              "topological sort only": Cmd([sys.executable, "-c", FLOOR_TOPOLOGICAL, str(TESTS)],
                                                           ok_codes=(0,))}, runs)
    row("lay out a 5,000-operator graph", found.pop("airlock"), found)
    model = work / "graph_5000.onnx"
    if not model.exists():
        import onnx

        sys.path.insert(0, str(TESTS))
        from fixtures.graph_files import transformer_onnx

        onnx.save(transformer_onnx(5000), str(model))
    found = measure_together({"airlock": Cmd([sys.executable, "-c", GRAPH_TAB, str(model)], ok_codes=(0,)),
                              "scan only": Cmd([sys.executable, "-c", SCAN_ONLY, str(model)], ok_codes=(0,))}, runs)
    row("Graph tab of a 5,000-operator ONNX file", found.pop("airlock"), found)
    big = work / "values_one_tensor.safetensors"
    if not big.exists():
        make_big_tensor(big, 512 * 2**20)
    floor = Cmd([sys.executable, "-c", VALUES_FLOOR, str(big)], ok_codes=(0,))
    for mode, task in (("first", "first page of a 512 MiB tensor's values"),
                       ("sample", "1,000 evenly spaced values of it")):
        found = measure_together({"airlock": Cmd([sys.executable, "-c", VALUES_PAGE, str(big), mode], ok_codes=(0,)),
                                  "scan + numpy reads 20,000 values": floor}, runs)
        row(task, found.pop("airlock"), found)


def make_big_tensor(path: Path, total_bytes: int) -> None:
    """One F32 tensor (rows of 4,096) in a SafeTensors file, its bytes really on disk (not sparse)."""
    rows = total_bytes // (4096 * 4)
    raw = json.dumps({"big": {"dtype": "F32", "shape": [rows, 4096], "data_offsets": [0, rows * 4096 * 4]}}).encode()
    raw += b" " * (-len(raw) % 8)
    chunk = b"\x00\x00\x80\x3f" * (2 << 20)  # 1.0f
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        left = rows * 4096 * 4
        while left:
            n = min(left, len(chunk))
            fh.write(chunk[:n])
            left -= n


def diff_rows(work: Path, runs: int, peers: dict, row) -> None:
    """`airlock diff` of two 4 GiB SafeTensors files (×scale) that differ in one value of the last
    tensor (so that `cmp`, which stops at the first difference, reads nearly all of both files too):
    every tensor hashed on both sides (xxh3-128), the changed one compared value by value. Target
    (issue 18): disk read speed, i.e. about `cmp` of the same files; peak RSS under 200 MB."""
    scale = getattr(diff_rows, "scale", 1.0)
    a, b = work / "diff_a.safetensors", work / "diff_b.safetensors"
    if not (a.exists() and b.exists()):
        make_safetensors(a, int(4 * 1024**3 * scale), 300)
        shutil.copyfile(a, b)
        with open(b, "r+b") as fh:  # one float32 of the last tensor set to 1.0
            fh.seek(-4096, os.SEEK_END)
            fh.write(bytes.fromhex("0000803f"))  # 1.0, little-endian
    size = a.stat().st_size / 1024**3
    both = measure_together({"airlock": Cmd(airlock_cmd("diff", "--format", "json", str(a), str(b)), ok_codes=(0,)),
                             "cmp": Cmd(["cmp", "-s", str(a), str(b)], ok_codes=(1,))}, runs)
    row(f"diff two {size:.2f} GiB SafeTensors, one value changed", both.pop("airlock"), both)


def airlock_cmd(*args: str) -> list[str]:
    """The `airlock` command a user runs (the console script beside this interpreter)."""
    script = Path(sys.executable).with_name("airlock")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "airlock.core.cli", *args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every input size")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help="measure Airlock and the floors only")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--only", choices=("all", "hash", "isolation", "code", "bombs", "templates", "gui", "views",
                                           "diff", "remote", "dask"),
                        default="all",
                        help="hash: only the hashing rows (airlock hash against sha256sum); isolation: only "
                             "the ONNX parser process rows; code: only the Python files row; bombs: only the "
                             "decompression-bomb rows; templates: only the chat-template chain rows; gui: only "
                             "the desktop app's typing rows (the figure is the longest event-loop stall, in "
                             "seconds); views: only the graph layout and tensor values rows; diff: only the "
                             "airlock diff row (against cmp); remote: only the remote range-read rows; dask: only "
                             "the --dask LocalCluster row (against --jobs 2)")
    args = parser.parse_args()
    diff_rows.scale = args.scale  # type: ignore[attr-defined]
    if args.only in ("hash", "code", "bombs", "templates", "gui", "views", "diff", "remote", "dask"):
        args.no_peers = True  # no peer reads these inputs

    if not args.no_peers:
        missing = [p for p in PEERS if shutil.which(p) is None]
        if missing:
            print(f"benchmark: peers not installed: {', '.join(missing)}. Install them with "
                  "`pip install '.[test,bench]'`, or pass --no-peers.", file=sys.stderr)
            return 2

    work = Path(args.workdir or tempfile.mkdtemp(prefix="airlock-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.only == "isolation":
        return only_rows(args, work, isolation_rows)
    if args.only == "code":
        return only_rows(args, work, code_rows)
    if args.only == "bombs":
        return only_rows(args, work, bomb_rows)
    if args.only == "templates":
        return only_rows(args, work, template_rows)
    if args.only == "gui":
        os.environ["AIRLOCK_BENCH_SCALE"] = str(args.scale)
        return only_rows(args, work, gui_rows)
    if args.only == "views":
        return only_rows(args, work, view_rows)
    if args.only == "diff":
        return only_rows(args, work, diff_rows)
    if args.only == "remote":
        return only_rows(args, work, remote_rows)
    if args.only == "dask":
        return only_rows(args, work, dask_rows)
    gib = 1024**3
    s = args.scale
    files = {
        "torch_zip": (work / "model_2g.pt", lambda p: make_torch_zip(p, int(2 * gib * s), 500)),
        "torch_legacy": (work / "model_1g_legacy.pt", lambda p: make_torch_zip(p, int(1 * gib * s), 250, legacy=True)),
        "safetensors": (work / "model_4g.safetensors", lambda p: make_safetensors(p, int(4 * gib * s), 300)),
        "safetensors_small": (work / "model_0g1.safetensors", lambda p: make_safetensors(p, int(0.1 * gib * s), 300)),
        "gguf": (work / "vocab_150k.gguf", lambda p: make_gguf(p, int(150_000 * min(s, 1) or 1000), 300)),
        "onnx": (work / "model.onnx", lambda p: make_onnx(p, 50)),
    }
    if args.only == "hash":
        files = {"safetensors": files["safetensors"]}
    print(f"generating inputs in {work} …", flush=True)
    for path, make in files.values():
        if not path.exists():
            make(path)
    hash_dir = work / "hash_folder"  # several large files: `airlock hash` hashes them on several cores
    if not hash_dir.exists():
        hash_dir.mkdir()
        for i in range(4):
            make_safetensors(hash_dir / f"shard-{i}.safetensors", int(1 * gib * s), 10)
    small_dir = work / "pickles"
    if not small_dir.exists():
        make_small_pickles(small_dir, 1000)

    rows: list[dict[str, object]] = []

    def row(task: str, airlock: Measure, baselines: dict[str, Measure]) -> None:
        entry = {"task": task, "airlock": vars(airlock), "baselines": {k: vars(v) for k, v in baselines.items()}}
        rows.append(entry)
        cells = [f"{task:<44}", f"{airlock.cell():<22}"]
        for name, base in baselines.items():
            ratio = f"×{airlock.seconds / base.seconds:.2f}" if base.seconds and not base.error else ""
            cells.append(f"{name}: {base.cell()} {ratio}")
        print(" | ".join(cells), flush=True)

    runs = args.runs
    peers = {} if args.no_peers else PEERS

    # 0. hashing: SHA-256 of one large file and of a folder of large files, against sha256sum
    big = files["safetensors"][0]
    hashes = measure_together({"airlock": Cmd(airlock_cmd("hash", str(big)), ok_codes=(0,)),
                               "sha256sum": Cmd(["sha256sum", str(big)], ok_codes=(0,))}, runs)
    row(f"hash one {big.stat().st_size / gib:.2f} GiB file", hashes["airlock"], {"sha256sum": hashes["sha256sum"]})
    shards = sorted(str(p) for p in hash_dir.iterdir())
    total = sum(os.path.getsize(p) for p in shards) / gib
    hashes = measure_together({"airlock": Cmd(airlock_cmd("hash", str(hash_dir)), ok_codes=(0,)),
                               "airlock --jobs 1": Cmd(airlock_cmd("hash", "--jobs", "1", str(hash_dir)), ok_codes=(0,)),
                               "sha256sum": Cmd(["sha256sum", *shards], ok_codes=(0,))}, runs)
    row(f"hash a folder of {len(shards)} files, {total:.2f} GiB", hashes.pop("airlock"), hashes)
    if args.only == "hash":
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                                         "runs": runs, "scale": s, "rows": rows}, indent=2))
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        return 0

    # 1. scan each large file
    for key, floor in (("torch_zip", FLOOR_ZIP), ("torch_legacy", FLOOR_LEGACY), ("safetensors", FLOOR_HEADER),
                       ("gguf", FLOOR_LEGACY), ("onnx", FLOOR_LEGACY)):
        path = files[key][0]
        size = path.stat().st_size
        cmds = {"airlock": Cmd(airlock_cmd("scan", "--format", "json", str(path))),
                "floor": Cmd([sys.executable, "-c", floor, str(path)])}
        for name, cmd in peers.items():
            cmds[name] = Cmd(cmd(path), env=PEER_ENV, ok_codes=tuple(range(0, 5)))
        base = measure_together(cmds, runs)
        mine = base.pop("airlock")
        if key == "gguf":  # gguf-py's eager reader takes seconds: one run is enough to compare
            base["gguf-py GGUFReader"] = measure([sys.executable, "-c", GGUF_READER, str(path)], 1)
        row(f"scan {key} ({size / gib:.2f} GiB)", mine, base)

    # 2. a directory of 1,000 small pickles
    cmds = {"airlock": Cmd(airlock_cmd("scan", "--format", "json", str(small_dir))),
            "airlock --jobs 1": Cmd(airlock_cmd("scan", "--format", "json", "--jobs", "1", str(small_dir)))}
    for name, cmd in peers.items():
        cmds[name] = Cmd(cmd(small_dir), env=PEER_ENV, ok_codes=tuple(range(0, 5)))
    base = measure_together(cmds, runs)
    row("scan 1,000 small pickles (one folder)", base.pop("airlock"), base)

    # 3. open to a full tree in core: must not grow with tensor data size
    trees = measure_together({"big": Cmd([sys.executable, "-c", OPEN_TREE, str(files["safetensors"][0])]),
                              "small": Cmd([sys.executable, "-c", OPEN_TREE, str(files["safetensors_small"][0])])},
                             runs)
    row("open SafeTensors to full tree, 4 GiB vs 0.1 GiB", trees["big"], {"0.1 GiB": trees["small"]})
    for key in ("torch_zip", "gguf", "onnx"):
        row(f"open {key} to full tree", measure([sys.executable, "-c", OPEN_TREE, str(files[key][0])], runs), {})

    # 4. convert the 2 GiB checkpoint
    src = files["torch_zip"][0]
    out = work / "out.safetensors"

    def clean() -> None:
        # Every copy starts with the page cache's dirty data written back (not timed): otherwise a
        # run pays for flushing the gigabytes the run before it wrote, whichever command it is.
        out.unlink(missing_ok=True)
        os.sync()

    copies = measure_together({
        "verified": Cmd(airlock_cmd("convert", str(src), "-o", str(out), "--overwrite"), before=clean),
        "no-verify": Cmd(airlock_cmd("convert", str(src), "-o", str(out), "--overwrite", "--no-verify"),
                         before=clean),
        "cp": Cmd(["cp", "--reflink=never", str(src), str(out)], before=clean)}, runs)
    torch_path = measure([sys.executable, "-c", TORCH_CONVERT, str(src), str(out)], max(1, runs // 2), before=clean)
    row("convert 2 GiB torch zip (verified)", copies["verified"], {"cp": copies["cp"],
                                                                  "torch.load+save_file": torch_path})
    row("convert 2 GiB torch zip (--no-verify)", copies["no-verify"], {"cp": copies["cp"]})
    clean()

    # 5. the isolated parser process
    isolation_rows(work, runs, peers, row)

    # 6. Python code
    code_rows(work, runs, peers, row)

    # 7. decompression bombs
    bomb_rows(work, runs, peers, row)

    # 8. chat templates
    template_rows(work, runs, peers, row)

    # 9. the desktop app: typing in the search box never stalls the window
    os.environ["AIRLOCK_BENCH_SCALE"] = str(s)
    gui_rows(work, runs, peers, row)

    # 10. the graph view and the values table
    view_rows(work, runs, peers, row)

    # 11. airlock diff against cmp
    diff_rows(work, runs, peers, row)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                                     "runs": runs, "scale": s, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def only_rows(args: argparse.Namespace, work: Path, rows_of) -> int:
    """`--only GROUP`: that group's rows alone, printed and written like a full run."""
    rows: list[dict[str, object]] = []

    def row(task: str, airlock: Measure, baselines: dict[str, Measure]) -> None:
        rows.append({"task": task, "airlock": vars(airlock), "baselines": {k: vars(v) for k, v in baselines.items()}})
        cells = [f"{task:<44}", f"{airlock.cell():<22}"]
        for name, base in baselines.items():
            ratio = f"×{airlock.seconds / base.seconds:.2f}" if base.seconds and not base.error else ""
            cells.append(f"{name}: {base.cell()} {ratio}")
        print(" | ".join(cells), flush=True)

    rows_of(work, args.runs, {} if args.no_peers else PEERS, row)
    out = args.json.with_name(f"results-{args.only}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                               "runs": args.runs, "scale": args.scale, "rows": rows}, indent=2))
    print(f"\nwrote {out}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
