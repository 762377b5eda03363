"""The no-execution proof (DESIGN.md): scanning hostile files runs nothing of theirs.

A fresh interpreter (tests/noexec_child.py) imports Airlock and every format dependency, scans
one benign file per format and runs `airlock scan --jobs 2` once (imports and lazy codec imports
fire exec/compile/import events), then installs an audit hook that blocks and records any process
spawn other than Airlock's own workers, exec, compile, socket, file opened for writing, file system
change or new import. It then scans the whole hostile corpus (tests/corpus.py, which includes every
tests/fixtures/* module) plus mutated copies, file by file and as folders through the CLI with two
worker processes. A canary at the end proves the hook does catch os.system, exec, compile, an
import, a file write, a socket and subprocess.Popen.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus

from airlock.core.scan import scan_bytes

CHILD = Path(__file__).with_name("noexec_child.py")
MUTATIONS = 120


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-/" else "_" for c in name)


def _write(root: Path, name: str, data: bytes) -> Path:
    path = root / _safe_name(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _mutants(files: list[tuple[str, bytes]], count: int) -> list[tuple[str, bytes]]:
    """Deterministic truncations and byte flips: error paths can import or run things too."""
    rng = random.Random(20240901)
    out = []
    for i in range(count):
        name, data = rng.choice(files)
        if not data:
            continue
        if i % 2:
            cut = rng.randrange(len(data))
            out.append((f"mutants/{i}_cut{cut}_{name}", data[:cut]))
        else:
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
            out.append((f"mutants/{i}_flip_{name}", bytes(buf)))
    return out


class _Summary:
    lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("-", "no-execution proof")
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("noexec")
    warm_dir, scan_dir, work = root / "warmup", root / "scan", root / "work"
    work.mkdir()
    by_format: dict[str, tuple[str, bytes]] = {}
    for fixture in corpus.benign():
        result = scan_bytes(fixture.data, fixture.name.rsplit("/", 1)[-1])
        by_format.setdefault(result.format, (fixture.name, fixture.data))
        result.close()
    warmup = [str(_write(warm_dir, name, data)) for name, data in by_format.values()]
    hostile = [(f.name, f.data) for f in corpus.hostile()]
    everything = hostile + _mutants(hostile + [(f.name, f.data) for f in corpus.benign()], MUTATIONS)
    files = [str(_write(scan_dir, name, data)) for name, data in everything]
    log = root / "audit.jsonl"
    config = {"log": str(log), "warmup": warmup, "warmup_dir": str(warm_dir), "files": files,
              "folders": [str(scan_dir / "pickle"), str(scan_dir)], "workdir": str(work)}
    (root / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "HOME": str(work), "TMPDIR": str(work)}
    proc = subprocess.run([sys.executable, str(CHILD), str(root / "config.json")], capture_output=True,
                          cwd=work, env=env, timeout=600, check=False)
    assert proc.returncode == 0, f"child failed ({proc.returncode}): {proc.stderr.decode()[-4000:]}"
    summary: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    summary.update(records=records, n_files=len(files), n_hostile=len(hostile), formats=sorted(by_format))
    return summary


def test_nothing_runs_while_scanning(proof: dict[str, Any], request: pytest.FixtureRequest) -> None:
    violations = [r for r in proof["records"] if r["phase"].startswith("scan")]
    flagged = sum(r["severity"] in ("high", "critical") for r in proof["results"])
    _Summary.lines = [
        f"files scanned under the hook: {len(proof['results'])} ({proof['n_hostile']} hostile, "
        f"{proof['n_files'] - proof['n_hostile']} mutated), high or critical: {flagged}",
        f"warm-up formats: {', '.join(proof['formats'])}; warm-up {proof['warmup_s']} s, scans {proof['scan_s']} s",
        f"CLI runs under the hook: {proof['cli']}",
        f"violations: {len(violations)}; canary: {proof['canary']}",
    ]
    request.config.pluginmanager.register(_Summary(), "noexec-summary")
    assert not proof["import_problems"], proof["import_problems"]
    assert len(proof["results"]) == proof["n_files"]
    assert not violations, "\n".join(json.dumps(v) for v in violations[:20])


def test_cli_scanned_every_file_with_workers(proof: dict[str, Any]) -> None:
    cli = proof["cli"]
    assert cli["files in scan"] == proof["n_files"]
    assert cli["files in pickle"] >= 20
    assert {cli[k] for k in cli if k.startswith(("json", "sarif"))} == {1}  # hostile files: exit 1


def test_canary_proves_the_hook_fires(proof: dict[str, Any]) -> None:
    assert proof["canary"] == {name: "blocked" for name in
                               ("os.system", "exec", "exec-source", "compile", "import", "open-write", "socket", "subprocess")}
    caught = {r["event"] for r in proof["records"] if r["phase"] == "canary"}
    assert {"os.system", "exec", "compile", "import", "open", "socket.__new__", "subprocess.Popen"} <= caught
