"""s3:// scans (airlock.core.remote_s3) against a real S3 server on 127.0.0.1 (moto's, started by
the test): verdicts equal to local scans over the corpus, a big object judged from a few ranges, the
byte budget, a missing object or bucket, and s3fs missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import corpus
import pytest
from range_server import big_safetensors

from airlock.core import api
from airlock.core.limits import Limits

pytest.importorskip("s3fs", reason="the [s3] extra is part of the test extra: pip install -e '.[test]'")
BUCKET = "models"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An s3fs filesystem on the test server, with an empty bucket; the environment points at it."""
    import s3fs

    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", s3_endpoint)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if fs.exists(BUCKET):
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    fs.invalidate_cache()
    return fs


def _verdict(entry: dict[str, Any]) -> tuple[str, str, str, list[str]]:
    return entry["format"], entry["severity"], entry["inspected"], sorted({f["rule"] for f in entry["findings"]})


@pytest.mark.slow
def test_verdicts_equal_local_scans_over_the_corpus(s3: Any, tmp_path: Path) -> None:
    """Every hostile corpus file (and a share of the benign ones) from disk and through s3:// URLs.
    Folder-context formats are left out: a remote file has no folder (see tests/test_remote.py)."""
    fixtures = [f for f in corpus.all_fixtures() if not f.name.endswith((".index.json", ".py", ".onnx"))]
    local_paths, urls = [], []
    for i, fixture in enumerate(fixtures):
        name = f"{i}/{''.join(c if c.isalnum() or c in '._-' else '_' for c in fixture.name.rsplit('/', 1)[-1])}"
        local = tmp_path / name
        local.parent.mkdir(parents=True)
        local.write_bytes(fixture.data)
        s3.pipe(f"{BUCKET}/{name}", fixture.data)
        local_paths.append(str(local))
        urls.append(f"s3://{BUCKET}/{name}")
    local = {r.index: _verdict(r.to_dict()) for r in api.scan_paths(local_paths)}
    remote = {r.index: r.to_dict() for r in api.scan_paths(urls)}
    differ = [(urls[i], local[i], _verdict(remote[i])) for i in local if local[i] != _verdict(remote[i])]
    assert not differ, "\n".join(map(str, differ[:10]))
    assert all(remote[i]["bytes_read"] <= max(len(fixtures[i].data), 1) for i in remote)
    assert sum(e["severity"] == "critical" for e in remote.values()) >= 10


def test_a_big_object_is_judged_from_a_few_ranges(s3: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    big_safetensors(path, 64 * 1024**2)
    s3.put(str(path), f"{BUCKET}/model.safetensors")
    entry = api.scan_file(f"s3://{BUCKET}/model.safetensors").to_dict()
    assert _verdict(entry) == _verdict(api.scan_file(str(path)).to_dict())
    assert entry["inspected"] == "full" and entry["bytes_read"] <= path.stat().st_size // 100


def test_the_byte_budget_is_a_high_finding(s3: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    big_safetensors(path, 8 * 1024**2)
    s3.put(str(path), f"{BUCKET}/model.safetensors")
    entry = api.scan_file(f"s3://{BUCKET}/model.safetensors", limits=Limits(max_remote_bytes=100_000)).to_dict()
    budget = [f for f in entry["findings"] if f["rule"] == "RMT002"]
    assert entry["severity"] == "high" and budget, entry["findings"]
    assert "needs more than 100,000 bytes" in budget[0]["message"] and entry["bytes_read"] <= 100_000


@pytest.mark.parametrize("url", [f"s3://{BUCKET}/missing.pt", "s3://no-such-bucket/model.pt", f"s3://{BUCKET}"])
def test_a_missing_object_is_a_high_finding(s3: Any, url: str) -> None:
    entry = api.scan_file(url).to_dict()
    assert entry["severity"] == "high" and [f["rule"] for f in entry["findings"]] == ["RMT001"], entry


def test_the_cli_scans_s3_urls(s3: Any) -> None:
    s3.pipe(f"{BUCKET}/evil.pkl", b"cposix\nsystem\n(S'echo pwned'\ntR.")
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", f"s3://{BUCKET}/evil.pkl"],
                          capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 1 and "CRITICAL" in proc.stdout, proc.stdout + proc.stderr


def test_without_s3fs_the_file_says_how_to_install_it(tmp_path: Path) -> None:
    # s3fs hidden from a fresh interpreter: the finding names the extra, never a traceback.
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['s3fs'] = None\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "s3://bucket/model.pt"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "pip install 'model-airlock[s3]'" in proc.stdout, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_hostile_objects_are_scanned_with_nothing_run(s3: Any, tmp_path: Path) -> None:
    """The no-execution proof over s3://: every hostile corpus file read from the S3 server under
    tests/noexec_child.py's audit hook (tests/s3_noexec_child.py): no event blocked while scanning,
    the verdicts of a local scan, and the canary proves the hook fires."""
    hostile = [f for f in corpus.hostile() if not f.name.endswith((".index.json", ".py", ".onnx"))]
    warm = [f for f in corpus.benign() if not f.name.endswith((".index.json", ".py"))][:40]
    urls, warm_urls, local = [], [], []
    for group, fixtures, out in (("hostile", hostile, urls), ("warm", warm, warm_urls)):
        for i, fixture in enumerate(fixtures):
            name = f"{group}/{i}/{''.join(c if c.isalnum() or c in '._-' else '_' for c in fixture.name.split('/')[-1])}"
            s3.pipe(f"{BUCKET}/{name}", fixture.data)
            out.append(f"s3://{BUCKET}/{name}")
            if group == "hostile":
                path = tmp_path / "local" / name
                path.parent.mkdir(parents=True)
                path.write_bytes(fixture.data)
                local.append(str(path))
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "audit.jsonl"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"log": str(log), "warmup": warm_urls, "urls": urls, "workdir": str(work)}))
    child = Path(__file__).with_name("s3_noexec_child.py")
    proc = subprocess.run([sys.executable, str(child), str(config)], capture_output=True, cwd=work, timeout=600,
                          env={**os.environ, "HOME": str(work), "TMPDIR": str(work)}, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert not summary["import_problems"]
    violations = [r for r in records if r["phase"] == "scan"]
    assert not violations, "\n".join(json.dumps(v) for v in violations[:20])
    mine = {r.index: _verdict(r.to_dict())[:2] for r in api.scan_paths(local)}
    theirs = [(r["format"], r["severity"]) for r in summary["results"]]
    assert theirs == [mine[i] for i in range(len(local))]
    canary = summary["canary"]
    assert canary.pop("s3-other-host") == "RMT001"  # s3fs sent elsewhere: blocked, a read failure
    assert {r["event"] for r in records if r["phase"] == "canary:s3-other-host"} == {"socket.connect"}
    assert canary == {name: "blocked" for name in ("os.system", "exec", "exec-source", "compile", "ast.parse",
                                                   "import", "open-write", "socket", "subprocess")}
