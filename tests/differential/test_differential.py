"""Differential testing against the real loaders: whenever pickle.load, torch.load,
numpy.load(allow_pickle=True) or joblib.load reaches a dangerous call on a file, Airlock must
have rated that file `high` or `critical`.

Files come from tests/differential/generate.py (real writers with marker payloads, the hostile
corpus, benign files, and their mutants). The loaders run in tests/differential/loader_child.py:
a throw-away process per file, temporary HOME and working folder, and an audit hook that records
and blocks each dangerous event before it happens (process spawn, exec/compile, sockets, file
writes and changes, native library loads). Counts are printed in the terminal summary.

`AIRLOCK_DIFF_PER_SEED=12 python -m pytest tests/differential -m slow` runs the long version
(every corpus seed, 12 mutants each); without the variable it is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import generate
import pytest

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes

LOADERS = ["pickle", "torch", "numpy", "joblib", "torch_weights_only"]
CHILD = Path(__file__).with_name("loader_child.py")
PROCESSES = 2  # loader supervisors working side by side (CI has two cores)
WARM_UP = ("pickle__benign_dict_p2", "torch__", "numpy__", "joblib__")  # primes each loader's lazy imports
TIMEOUT_S = 2  # per loader and file; payloads that sleep or loop are cut off here


class Summary:
    lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("-", "differential testing against the real loaders")
        for line in self.lines:
            terminalreporter.write_line(line)


def _file_name(i: int, name: str) -> str:
    seed = name.split("~", 1)[0]
    ext = "".join(c for c in Path(seed).suffix if c.isalnum() or c == ".")[:12]
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80]
    return f"{i:05d}_{stem}{ext}"


def run_differential(tmp: Path, per_seed: int, sample: int | None) -> dict[str, Any]:
    data_dir, home, work = tmp / "files", tmp / "home", tmp / "work"
    for d in (data_dir, home, work):
        d.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(work), "XDG_CACHE_HOME": str(home)}
    # Started first: importing torch in them overlaps with generating the files here.
    procs = [subprocess.Popen([sys.executable, str(CHILD)], cwd=work, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
             for _ in range(PROCESSES)]
    files = generate.files(per_seed, sample)
    warm = []
    for name, data, origin in files:
        if origin == "benign" and name.startswith(WARM_UP):
            path = data_dir / f"warm_{_file_name(len(warm), name)}"
            path.write_bytes(data)
            warm += [[loader, str(path)] for loader in LOADERS]
    for proc in procs:
        assert proc.stdin is not None and proc.stdout is not None
        assert json.loads(proc.stdout.readline()).get("ready"), "the loader process did not start"
        proc.stdin.write(json.dumps({"warm": warm}) + "\n")
        proc.stdin.flush()
    for proc in procs:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()).get("warm")
    rows = []
    try:
        for batch in range(0, len(files), PROCESSES):
            pending = []
            for i, proc in enumerate(procs):  # one file per loader process, then read them all back
                if batch + i >= len(files):
                    break
                name, data, origin = files[batch + i]
                path = data_dir / _file_name(batch + i + 1, name)
                path.write_bytes(data)
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"loaders": LOADERS, "path": str(path), "timeout": TIMEOUT_S}) + "\n")
                proc.stdin.flush()
                pending.append((proc, name, data, origin, path))
            for proc, name, data, origin, path in pending:
                result = scan_bytes(data, path.name)  # while the loaders run
                findings = [(f.rule, f.severity.label, f.message[:160]) for f in result.findings]
                severity = result.severity
                result.close()
                assert proc.stdout is not None
                reply = json.loads(proc.stdout.readline())
                rows.append({"name": name, "file": path.name, "origin": origin, "size": len(data),
                             "airlock": severity, "findings": findings, "loaders": reply})
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=60)
            if proc.stdout is not None:
                proc.stdout.close()
    return {"rows": rows, "files": len(files)}


def _dangerous(reply: dict[str, Any], loaders: list[str]) -> dict[str, list[Any]]:
    return {k: reply[k]["events"] for k in loaders if k in reply and reply[k]["events"]}


def analyse(rows: list[dict[str, Any]]) -> dict[str, Any]:
    reached = [r for r in rows if _dangerous(r["loaders"], LOADERS)]
    disagree = [r for r in reached if r["airlock"] < Severity.HIGH]
    weights_only = [r for r in rows if _dangerous(r["loaders"], ["torch_weights_only"])]
    died = [r for r in rows if "error" in r["loaders"]]
    over = [r for r in rows if r["airlock"] >= Severity.HIGH and not _dangerous(r["loaders"], LOADERS)]
    return {"reached": reached, "disagree": disagree, "weights_only": weights_only, "died": died, "over": over}


def _describe(row: dict[str, Any]) -> str:
    loaders = {k: events[:2] for k, events in _dangerous(row["loaders"], LOADERS).items()}
    return (f"{row['name']} ({row['size']} bytes, file {row['file']}): loaders reached {loaders}; "
            f"Airlock said {row['airlock'].label} {row['findings'][:4]}")


def _report(result: dict[str, Any], verdict: dict[str, Any], request: pytest.FixtureRequest, label: str) -> None:
    rows = result["rows"]
    per_loader = {k: sum(1 for r in rows if r["loaders"].get(k, {}).get("events")) for k in LOADERS}
    Summary.lines += [
        f"[{label}] files tried: {len(rows)} ({sum(r['origin'] == 'mutant' for r in rows)} mutants); "
        f"a real loader reached a dangerous call: {len(verdict['reached'])} "
        f"(per loader: {per_loader}); Airlock high/critical on those: "
        f"{len(verdict['reached']) - len(verdict['disagree'])}; disagreements: {len(verdict['disagree'])}",
        f"[{label}] Airlock high/critical where no loader reached a dangerous call (malformed, "
        f"unproven or unreached payloads): {len(verdict['over'])}; loader process died: {len(verdict['died'])}",
    ]
    Summary.lines += [f"[{label}] DISAGREEMENT: {_describe(r)}" for r in verdict["disagree"][:30]]
    if "differential-summary" not in [n for n, _ in request.config.pluginmanager.list_name_plugin()]:
        request.config.pluginmanager.register(Summary(), "differential-summary")


def _check(verdict: dict[str, Any]) -> None:
    assert verdict["reached"], "no generated file reached a dangerous call: the harness is broken"
    assert not verdict["weights_only"], "torch.load(weights_only=True) reached a dangerous call: " + \
        "; ".join(_describe(r) for r in verdict["weights_only"][:5])
    assert not verdict["disagree"], "\n".join(_describe(r) for r in verdict["disagree"][:30])


@pytest.mark.slow
def test_airlock_flags_every_file_a_real_loader_would_run(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    result = run_differential(tmp_path, per_seed=1, sample=16)
    verdict = analyse(result["rows"])
    _report(result, verdict, request, "default")
    _check(verdict)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AIRLOCK_DIFF_PER_SEED"),
                    reason="the long differential run (10+ minutes) is opt-in: set AIRLOCK_DIFF_PER_SEED=12")
def test_differential_long(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    result = run_differential(tmp_path, per_seed=int(os.environ.get("AIRLOCK_DIFF_PER_SEED", "12")), sample=None)
    verdict = analyse(result["rows"])
    _report(result, verdict, request, "long")
    _check(verdict)
