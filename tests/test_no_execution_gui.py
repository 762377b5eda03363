"""The no-execution proof for the desktop app's open path (issue 9).

A fresh interpreter imports Airlock, the GUI and every format dependency, opens one benign file
per format plus a hostile pickle in the main window (warm-up: tree, findings, the decompiled view
of the worst finding, one review decision and history look-up), then installs tests/noexec_child.py's
blocking audit hook, opens the hostile corpus in the same window, building, laying out and drawing the
graph of every file that has one and showing a page of values of a few tensors of each (the Values
tab), records review decisions about some of it in the Review menu's worker, then opens a Hugging Face
cache holding a hostile pickle as a folder tab (the approvals database is the one file it may write).
Nothing may spawn, exec, compile, open a file for writing or
import a new module; the canary shows the hook is live.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import corpus
import pytest
from provenance.hf_fake import build as hf_build

from airlock.core.scan import scan_bytes

# The fast lane (`python -m pytest -m "not slow"`) skips it; CI runs everything.
pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent

CHILD = r"""
import json, os, sys, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
sys.path.insert(0, sys.argv[2])
import noexec_child as nx

config = json.load(open(sys.argv[1]))
problems = nx.import_everything()
isolated = nx.patch_isolation(config["log"])
from PySide6.QtCore import QCoreApplication, QEventLoop, QSettings, QThreadPool
from PySide6.QtWidgets import QApplication

app = QApplication([])
QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, config["workdir"])
QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, config["workdir"])
from airlock.gui.main_window import MainWindow

window = MainWindow()
window.show()
window.start_warm_up()  # matplotlib's background import (otherwise 1.5 s after start-up) before the hook


def open_all(paths):
    loop = QEventLoop()
    window.all_scans_finished.connect(loop.quit)
    views = window.open_paths(paths)
    loop.exec()
    window.all_scans_finished.disconnect(loop.quit)
    # Let the detail workers the selection started (decompiled view) finish too.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        app.processEvents()
        if QThreadPool.globalInstance().waitForDone(50):
            app.processEvents()
            break
    return views


from airlock.gui import review
from airlock.gui.workers import FunctionWorker, pool


def in_worker(fn, *args):
    # Review > Approve/Reject/Show History run these functions in a pool worker: so does this.
    box = {}
    worker = FunctionWorker(fn, *args, plain=True)
    worker.signals.returned.connect(lambda r: box.setdefault("returned", r))
    worker.signals.errored.connect(lambda m: box.setdefault("errored", m))
    pool().start(worker)
    deadline = time.monotonic() + 120
    while not box and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    return box


def draw_graphs(views):
    # The Graph tab's work, as its worker does it (build and lay out each graph), then one paint.
    from airlock.core.graph import build_and_lay_out
    from airlock.gui.graph_canvas import text_metrics

    _, char_width, line_height = text_metrics()
    drawn = 0
    for view in views:
        graph = view.graph_view
        for source in (graph.sources if graph is not None else []):
            laid = build_and_lay_out(source, char_width, line_height)
            graph.canvas.set_graph(laid.graph, laid.layout, laid.sizes)
            graph.canvas.grab()
            drawn += 1
    return drawn


def show_values(views):
    # The Values tab's work: select a few tensors and initializers per file, let their pages decode.
    from airlock.core.tree import INITIALIZER, TENSOR

    shown = 0
    for view in views:
        if view.result is None:
            continue
        picked = [n for n in view.result.root.walk() if n.kind in (TENSOR, INITIALIZER)][:6]
        for node in picked:
            view.select_node(node)
            view.details.show_values()
            QThreadPool.globalInstance().waitForDone(20000)
            app.processEvents()
            if view.details.values.page is not None:
                view.details.values.table.grab()
                # A cell's right-click menu: its value, index and offset, and its bytes in Hex.
                view.details.values.build_cell_menu(0, 0)
                view.details.values.show_in_hex(0, 0)
                shown += 1
    return shown


warm_views = open_all(config["warmup"])
draw_graphs(warm_views)
show_values(warm_views)
open_all([config["hf_warmup"]])
db = config["review_db"]
in_worker(review.record_decision, config["warmup"][-1], "approve", "warm-up", "proof", True, db)
in_worker(review.look_up_history, config["warmup"][-1], db)
guard = nx.install(config["log"], "gui", isolated)
guard.outputs = [db, db + "-wal", db + "-shm", db + "-journal"]  # the approvals database: its only writes
views = open_all(config["files"])
graphs = draw_graphs(views)
values = show_values(views)
# A Hugging Face cache holding a hostile pickle opens as one folder tab: scanned through core's
# scan_paths in a worker, each snapshot's signature state checked in another.
open_all([config["hf_cache"]])
from airlock.gui.provenance_view import folder_views

hf_files = sum(len(v.file_items()) for v in folder_views(window))
decided = [in_worker(review.record_decision, path, "reject", "hostile", "proof", False, db)
           for path in config["files"][:10]]
looked_up = [in_worker(review.look_up_history, path, db) for path in config["files"][:10]]
reviewed = sum("returned" in box for box in decided + looked_up)
guard.phase = "canary"
caught = nx.canary(config["workdir"])
print(json.dumps({"opened": len(views), "tabs": window.tabs.count(), "canary": caught, "reviewed": reviewed,
                  "graphs": graphs, "values": values, "hf_files": hf_files,
                  "import_problems": problems}))
sys.stdout.flush()
os._exit(0)  # skip interpreter teardown: Qt's exit path is not what this proves
"""


def test_opening_hostile_files_in_the_window_runs_nothing(tmp_path):
    warm, scan, work = tmp_path / "warmup", tmp_path / "scan", tmp_path / "work"
    for folder in (warm, scan, work):
        folder.mkdir()
    by_format = {}
    for fixture in corpus.benign():
        result = scan_bytes(fixture.data, fixture.name.rsplit("/", 1)[-1])
        by_format.setdefault(result.format, fixture.data)
        result.close()
    warmup = []
    for i, (fmt, data) in enumerate(sorted(by_format.items())):
        path = warm / f"{i}_{fmt}"
        path.write_bytes(data)
        warmup.append(str(path))
    hostile = corpus.hostile()
    warm_hostile = warm / "hostile.pkl"
    warm_hostile.write_bytes(next(f.data for f in hostile if f.name.endswith(".pkl")))
    warmup.append(str(warm_hostile))
    files = []
    # The window opens a tab per file: keep it bounded, but open every Python file and notebook (their
    # code view and cell tree are part of the open path).
    # So is every ONNX and TorchScript file: their graphs are built, laid out and drawn (the Graph tab).
    # And every malformed SafeTensors and GGUF file: a page of their tensors' values is decoded.
    graphs = ("code_files/", "onnx_files/", "torchscript_files/", "safetensors_files/", "gguf_files/")
    opened = list(hostile[:60]) + [f for f in hostile[60:] if f.name.startswith(graphs)]
    for i, fixture in enumerate(opened):
        path = scan / f"{i:03d}_{fixture.name.rsplit('/', 1)[-1]}"
        path.write_bytes(fixture.data)
        files.append(str(path))
    hf_build(warm / "hub")
    hf_paths = hf_build(scan / "hub")
    log = tmp_path / "audit.jsonl"
    config = {"log": str(log), "warmup": warmup, "files": files, "workdir": str(work),
              "review_db": str(work / "approvals.sqlite3"), "hf_warmup": str(warm / "hub"),
              "hf_cache": str(hf_paths["storage"].parent)}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "HOME": str(work), "TMPDIR": str(work), "XDG_CONFIG_HOME": str(work),
           "XDG_CACHE_HOME": str(work), "MPLCONFIGDIR": str(work)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "config.json"), str(TESTS)],
                          capture_output=True, cwd=work, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    violations = [r for r in records if r["phase"] == "gui"]
    assert not summary["import_problems"], summary["import_problems"]
    assert summary["opened"] == len(files)
    assert summary["hf_files"] == 2 * 8  # the warm-up cache's tab and the hostile one's: every file listed
    assert summary["reviewed"] == 20  # 10 rejections recorded and 10 histories looked up, under the hook
    assert summary["graphs"] >= 10  # the ONNX and TorchScript files' graphs were drawn under the hook
    assert summary["values"] >= 5, summary  # so were pages of tensor values (the Values tab)
    assert not violations, "\n".join(json.dumps(v) for v in violations[:20])
    assert set(summary["canary"].values()) == {"blocked"}, summary["canary"]
