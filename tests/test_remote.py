"""Remote scans (airlock.core.remote) against a real local HTTP server honouring Range.

The server (tests/range_server.py) serves files laid out as org/name/resolve/<rev>/… with HF_ENDPOINT
pointing at it, so hf:// URLs resolve as on the hub. Checked: verdicts equal to local scans over the
whole test corpus; a 4 GiB SafeTensors and a 2 GiB torch zip (sparse files) judged from at most 1 %
of their bytes; the byte budget; servers that ignore Range, send short or wrong ranges, lie about the
size, stall or drop the connection give a clear finding within the timeout, never a hang.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import corpus
import pytest
import range_server
from range_server import RangeServer, big_safetensors, big_torch_zip, hf_path, serve

from airlock.core import api
from airlock.core.limits import Limits
from airlock.core.source import is_url

REPO, REV = "org/name", "main"
GiB = 1024**3


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RangeServer]:
    root = tmp_path / "served"
    root.mkdir()
    with serve(root) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.endpoint)
        yield srv


def _put(server: RangeServer, name: str, data: bytes) -> Path:
    path = hf_path(server.root, REPO, REV, name)
    path.write_bytes(data)
    return path


def _verdict(entry: dict[str, Any]) -> tuple[str, str, str, list[str]]:
    return entry["format"], entry["severity"], entry["inspected"], sorted({f["rule"] for f in entry["findings"]})


def _without_onx005(verdict: tuple[str, str, str, list[str]]) -> tuple[str, str, str, list[str]]:
    return (*verdict[:3], [rule for rule in verdict[3] if rule != "ONX005"])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


# Equal verdicts

@pytest.mark.slow
def test_verdicts_equal_local_scans_over_the_corpus(server: RangeServer, tmp_path: Path) -> None:
    """Every corpus file, each alone in its folder locally (a remote file has no folder to look at),
    scanned from disk and through hf:// URLs: the same format, severity, inspected state and rules."""
    local_paths, urls = [], []
    for i, fixture in enumerate(corpus.all_fixtures()):
        name = f"{i}/{_safe(fixture.name.rsplit('/', 1)[-1])}"
        local = tmp_path / "local" / name
        local.parent.mkdir(parents=True)
        local.write_bytes(fixture.data)
        _put(server, name, fixture.data)
        local_paths.append(str(local))
        urls.append(f"hf://{REPO}/{name}")
    local = {r.index: r.to_dict() for r in api.scan_paths(local_paths)}
    remote = {r.index: r.to_dict() for r in api.scan_paths(urls)}
    assert len(remote) == len(local) == len(urls)
    # The documented differences: what a local scan looks up in the file's folder, a remote file has
    # no folder for. An ONNX model's external data gets ONX005 (info: not looked up); a sharded
    # index's shards are not checked (AIR005, partial: never clean, where locally the missing shards
    # are ST104); a .py file is not known to sit in a model folder (no MF003).
    differ = []
    for i in local:
        mine, theirs = _verdict(local[i]), _without_onx005(_verdict(remote[i]))
        if mine == theirs:
            continue
        if urls[i].endswith(".index.json") and theirs == (mine[0], "medium", "partial", ["AIR005"]):
            assert "shards not checked" in remote[i]["findings"][0]["message"]
            continue
        if urls[i].endswith(".py") and mine[3] == ["MF003"] and theirs == (mine[0], "none", "full", []):
            continue
        differ.append((urls[i], mine, theirs))
    assert not differ, "\n".join(map(str, differ[:10]))
    noted = [e for e in remote.values() if "ONX005" in {f["rule"] for f in e["findings"]}]
    assert all("is read remotely" in f["message"] for e in noted for f in e["findings"] if f["rule"] == "ONX005")
    sizes = [len(f.data) for f in corpus.all_fixtures()]
    assert all(remote[i]["bytes_read"] <= max(sizes[i], 1) for i in remote)
    assert all("bytes_read" not in local[i] for i in local)
    assert sum(e["severity"] == "critical" for e in remote.values()) >= len(corpus.hostile()) // 2


def test_http_url_and_hf_revision(server: RangeServer) -> None:
    data = corpus.call("posix", "system", corpus.MARKER)
    path = hf_path(server.root, REPO, "v1.0", "evil.pkl")
    path.write_bytes(data)
    by_http = api.scan_file(server.url(f"{REPO}/resolve/v1.0/evil.pkl")).to_dict()
    by_hf = api.scan_file(f"hf://{REPO}@v1.0/evil.pkl").to_dict()
    assert by_http["severity"] == by_hf["severity"] == "critical"
    assert by_hf["path"] == f"hf://{REPO}@v1.0/evil.pkl"
    assert by_hf["bytes_read"] == len(data)


# Big files: a few ranges, never the whole file

@pytest.mark.parametrize(("name", "size", "make"), [("model.safetensors", 4 * GiB, big_safetensors),
                                                     ("pytorch_model.bin", 2 * GiB, big_torch_zip)])
def test_big_files_read_at_most_one_percent(server: RangeServer, name: str, size: int, make: Any) -> None:
    path = hf_path(server.root, REPO, REV, name)
    make(path, size)
    real_size = path.stat().st_size
    assert real_size >= size
    remote = api.scan_file(f"hf://{REPO}/{name}").to_dict()
    local = api.scan_file(str(path)).to_dict()
    assert _verdict(remote) == _verdict(local)
    assert remote["inspected"] == "full", remote["findings"]
    assert remote["bytes_read"] <= real_size // 100
    assert server.body_bytes() == remote["bytes_read"]  # what the server sent is what the report says


# The byte budget

def test_byte_budget_is_a_high_finding_never_a_full_download(server: RangeServer) -> None:
    path = hf_path(server.root, REPO, REV, "model.safetensors")
    big_safetensors(path, 64 * 1024**2)
    limits = Limits(max_remote_bytes=100_000)
    entry = api.scan_file(f"hf://{REPO}/model.safetensors", limits=limits).to_dict()
    assert entry["severity"] == "high" and entry["inspected"] != "full"
    budget = [f for f in entry["findings"] if f["rule"] == "RMT002"]
    assert budget and "not fully inspected: needs more than 100,000 bytes" in budget[0]["message"]
    assert entry["bytes_read"] <= 100_000
    assert server.body_bytes() <= 100_000


# Misbehaving servers: a clear finding, within the timeout

def _misbehaving(server: RangeServer, mode: str, name: str, limits: Limits) -> dict[str, Any]:
    server.mode = mode
    return api.scan_file(f"hf://{REPO}/{name}", limits=limits).to_dict()


MISBEHAVIOURS = {
    "short": "short range",
    "stall": "stalled",  # the headers come, the body never does
    "drop": "dropped the connection",
    "wrong-after-first": "wrong range",
    "liar-after-first": "size changed",
    "short-after-first": "short range",
    "stall-after-first": "stalled",
    "drop-after-first": "dropped the connection",
}


@pytest.mark.parametrize("mode", sorted(MISBEHAVIOURS))
def test_misbehaving_server_gives_a_clear_finding(server: RangeServer, mode: str) -> None:
    path = hf_path(server.root, REPO, REV, "model.safetensors")
    big_safetensors(path, 64 * 1024**2)
    entry = _misbehaving(server, mode, "model.safetensors", Limits(remote_timeout_s=0.5, time_budget_s=20))
    failed = [f for f in entry["findings"] if f["rule"] == "RMT001"]
    assert failed, entry["findings"]
    assert entry["severity"] == "high" and entry["inspected"] != "full"
    assert any(MISBEHAVIOURS[mode] in f["message"] for f in failed), failed


def test_stall_and_first_stall_messages(server: RangeServer) -> None:
    _put(server, "a.pkl", corpus.call("posix", "system", corpus.MARKER))
    entry = _misbehaving(server, "stall", "a.pkl", Limits(remote_timeout_s=0.3))
    assert entry["format"] == "unknown" and entry["severity"] == "high"
    assert "stalled" in entry["findings"][0]["message"] or "within" in entry["findings"][0]["message"]


def test_server_ignoring_range(server: RangeServer) -> None:
    path = hf_path(server.root, REPO, REV, "model.safetensors")
    big_safetensors(path, 8 * 1024**2)
    big = _misbehaving(server, "ignore", "model.safetensors", Limits(max_remote_bytes=1024**2))
    assert [f["rule"] for f in big["findings"]] == ["RMT002"]
    assert "ignores Range" in big["findings"][0]["message"] and big["severity"] == "high"
    assert big["bytes_read"] == 0  # the body was never read: the connection was dropped
    data = corpus.call("posix", "system", corpus.MARKER)
    _put(server, "small.pkl", data)
    small = _misbehaving(server, "ignore", "small.pkl", Limits())
    assert small["severity"] == "critical"  # read whole (it fits the budget) and judged
    assert "RMT003" in {f["rule"] for f in small["findings"]} and small["bytes_read"] == len(data)


def test_missing_remote_file_is_a_finding(server: RangeServer) -> None:
    entry = api.scan_file(f"hf://{REPO}/nope.bin").to_dict()
    assert entry["severity"] == "high" and entry["inspected"] == "none"
    assert "HTTP 404" in entry["findings"][0]["message"]


def test_nothing_listening_is_a_finding(server: RangeServer) -> None:
    url = server.endpoint.rsplit(":", 1)[0] + ":1/x.bin"
    entry = api.scan_file(url, limits=Limits(remote_timeout_s=2)).to_dict()
    assert entry["findings"][0]["rule"] == "RMT001" and entry["severity"] == "high"


def test_hub_redirect_and_lfs_etag(server: RangeServer) -> None:
    path = hf_path(server.root, REPO, REV, "model.safetensors")
    big_safetensors(path, 64 * 1024**2)
    server.mode = "redirect"
    report = api.scan_file(f"hf://{REPO}/model.safetensors", keep_tree=True)
    try:
        assert report.severity == api.Severity.NONE
        assert report.result is not None and report.result.root.attrs["etag"] == range_server.LFS_OID
    finally:
        report.close()
    assert [p for p, _, status, _ in server.log if status == 302] == ["/org/name/resolve/main/model.safetensors"]
    assert all("/cdn/" in p for p, _, status, _ in server.log if status == 206)


# The command line

def test_cli_scans_urls_never_as_local_paths(server: RangeServer, tmp_path: Path) -> None:
    _put(server, "evil.pkl", corpus.call("posix", "system", corpus.MARKER))
    path = hf_path(server.root, REPO, REV, "model.safetensors")
    big_safetensors(path, 64 * 1024**2)
    out = tmp_path / "r.jsonl"
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "--no-policy", "--format", "jsonl",
                           "-o", str(out), "--max-remote-bytes", "1MiB", f"hf://{REPO}/evil.pkl",
                           f"hf://{REPO}/model.safetensors", f"hf://{REPO}/missing.pkl"],
                          capture_output=True, timeout=120, check=False,
                          env={**__import__("os").environ, "HF_ENDPOINT": server.endpoint})
    assert proc.returncode == 1, proc.stderr.decode()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_path = {e["path"]: e for e in lines}
    assert by_path[f"hf://{REPO}/evil.pkl"]["severity"] == "critical"
    assert by_path[f"hf://{REPO}/model.safetensors"]["severity"] == "none"
    assert by_path[f"hf://{REPO}/missing.pkl"]["findings"][0]["rule"] == "RMT001"
    assert all(isinstance(e["bytes_read"], int) for e in lines)
    assert b"Traceback" not in proc.stderr


def test_is_url() -> None:
    assert is_url("https://x/y") and is_url("HF://o/n/p") and is_url("http://127.0.0.1:1/a")
    assert is_url("s3://b/k")  # read by airlock.core.remote_s3 (tests/test_remote_s3.py)
    assert not is_url("model.bin") and not is_url("./https:/x") and not is_url("s3:/b/k")


def test_converter_needs_local_files(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "convert", "hf://org/name/model.bin",
                           "-o", str(tmp_path / "out.safetensors")], capture_output=True, timeout=120, check=False)
    assert proc.returncode != 0 and b"conversion needs a local file" in proc.stderr
    assert not (tmp_path / "out.safetensors").exists()
