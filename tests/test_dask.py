"""A scan mapped over a real Dask distributed LocalCluster (2 process workers): the same reports as
the one-machine scan, file by file; a worker that dies is retried elsewhere and its file reported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import corpus
import pytest

distributed = pytest.importorskip("distributed")  # the [dask] extra; part of [test]

from airlock.core import api, dask_map  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    dask_map.quiet()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50) as local:
        yield local


def _files(folder: Path, count: int = 60) -> list[str]:
    paths = []
    for i, fixture in enumerate(corpus.all_fixtures()[:count]):
        path = folder / f"{i:03d}_{''.join(c if c.isalnum() or c in '._-' else '_' for c in fixture.name)}"
        path.write_bytes(fixture.data)
        paths.append(str(path))
    return paths


def test_cluster_scan_equals_the_local_scan(cluster: Any, tmp_path: Path) -> None:
    paths = _files(tmp_path)
    local = {r.path: r.to_dict() for r in api.scan_paths(paths)}
    with distributed.Client(cluster) as client:
        remote = list(api.scan_paths(paths, client=client))
    assert sorted(r.index for r in remote) == list(range(len(paths)))
    assert {r.path: r.to_dict() for r in remote} == local


class DiesOnMarkedFiles(distributed.WorkerPlugin):
    """Makes each worker process die (os._exit) when it scans a file whose name says so."""

    def setup(self, worker: Any) -> None:
        from airlock.core import scan_worker as worker_scan

        real = worker_scan.scan_entry

        def dying(display: str, path: str, limits: Any) -> Any:
            if "KILLS_WORKER" in path:
                os._exit(3)
            return real(display, path, limits)

        worker_scan.scan_entry = dying


@pytest.mark.slow
def test_a_worker_that_dies_is_retried_and_its_file_reported(tmp_path: Path) -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    paths = _files(tmp_path, 10)
    killer = tmp_path / "KILLS_WORKER.pkl"
    killer.write_bytes(corpus.call("posix", "system", corpus.MARKER))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50) as local, distributed.Client(local) as client:
        client.register_plugin(DiesOnMarkedFiles())
        reports = {r.path: r.to_dict() for r in api.scan_paths([*paths, str(killer)], client=client)}
    assert len(reports) == len(paths) + 1
    dead = reports[str(killer)]
    assert dead["severity"] == "high" and "worker died" in dead["findings"][0]["message"]
    assert all(reports[p]["findings"] == [] or reports[p]["findings"][0]["rule"] != "AIR001" for p in paths)


def test_cli_dask_streams_jsonl_with_a_clean_stderr(cluster: Any, tmp_path: Path) -> None:
    paths = _files(tmp_path, 20)
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "--no-policy", "--format", "jsonl",
                           "--dask", cluster.scheduler_address, str(tmp_path)],
                          capture_output=True, timeout=300, check=False)
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 1 and len(lines) == len(paths)
    assert proc.stderr.decode().strip() == ""


@pytest.mark.slow
def test_cli_dask_without_a_scheduler_is_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "--dask", "tcp://127.0.0.1:1",
                           str(tmp_path)], capture_output=True, timeout=120, check=False)
    assert proc.returncode == 2 and b"cannot reach the Dask scheduler" in proc.stderr
