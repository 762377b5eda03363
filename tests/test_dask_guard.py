"""The Dask workers' guard (airlock.core.worker_guard) on a real distributed.LocalCluster of process
workers: the audit hook is really installed before the first scan, on workers there at the start and
on a worker that joins later; what it refuses is refused in the worker (and recorded); a refusal
during a scan is a high finding on that file; the memory limit holds in the worker.

The hostile corpus scanned through `--dask` under the guard is in tests/test_no_execution.py."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import corpus
import pytest

distributed = pytest.importorskip("distributed")  # the [dask] extra; part of [test]

from fixtures.bomb_files import BOMBS, SUFFIX  # noqa: E402

from airlock.core import api, dask_map  # noqa: E402
from airlock.core.limits import DEFAULT_LIMITS  # noqa: E402

MiB = 1 << 20


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Path]]:
    """A cluster whose workers are guarded, recording every refusal to a file the test reads."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the probes below run in the workers
    log = tmp_path_factory.mktemp("guard") / "refusals.jsonl"
    log.touch()
    dask_map.quiet()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50) as local, distributed.Client(local) as client:
        dask_map.guard_cluster(client, DEFAULT_LIMITS.memory_budget_bytes, str(log))
        yield local, client, log


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _is_guarded() -> tuple[int, bool]:
    from airlock.core import worker_guard as in_worker

    return os.getpid(), in_worker.installed() is not None


FORBIDDEN = {"os.system": (os.system, ("echo AIRLOCK_CANARY",)), "exec": (exec, ("canary = 1",)),
             "compile": (compile, ("1", "<canary>", "eval")), "eval": (eval, ("1 + 1",))}


@pytest.mark.parametrize("name", list(FORBIDDEN))
def test_a_forbidden_action_submitted_as_a_task_is_refused_in_the_worker(guarded: Any, name: str) -> None:
    _local, client, log = guarded
    function, args = FORBIDDEN[name]
    before = len(_records(log))
    with pytest.raises(PermissionError, match="Airlock worker guard: refused"):
        client.submit(function, *args, pure=False).result(timeout=60)
    new = _records(log)[before:]
    assert new and new[0]["event"] in ("os.system", "compile", "exec") and not new[0]["scanning"]


def test_a_subprocess_and_an_import_time_bypass_are_refused(guarded: Any) -> None:
    import subprocess

    _local, client, _log = guarded
    with pytest.raises(PermissionError, match=r"refused subprocess.Popen"):
        client.submit(subprocess.run, ["true"], pure=False).result(timeout=60)
    with pytest.raises(PermissionError, match=r"refused pickle.find_class"):  # unpickling in a task
        client.submit(__import__("pickle").loads, b"cposix\nsystem\n(S'true'\ntR.", pure=False).result(timeout=60)


def test_a_worker_that_joins_later_is_guarded_before_its_first_task(guarded: Any) -> None:
    local, client, log = guarded
    first = set(client.scheduler_info()["workers"])
    local.scale(3)
    client.wait_for_workers(3, timeout=120)
    try:
        states = client.run(_is_guarded)
        assert len(states) == 3 and all(ok for _pid, ok in states.values()), states
        newest = next(address for address in states if address not in first)
        with pytest.raises(PermissionError, match=r"refused os.system"):
            client.submit(os.system, "echo AIRLOCK_CANARY", workers=[newest], pure=False,
                          allow_other_workers=False).result(timeout=60)
        assert any(r["event"] == "os.system" and r["pid"] == states[newest][0] for r in _records(log))
    finally:
        local.scale(2)
        deadline = time.monotonic() + 60
        while len(client.scheduler_info()["workers"]) > 2 and time.monotonic() < deadline:
            time.sleep(0.2)


class TriesToRunSomething(distributed.WorkerPlugin):
    """A stand-in for a parser bug: scanning a file whose name says so calls os.system."""

    def setup(self, worker: Any) -> None:
        from airlock.core import scan_worker as worker_scan

        real = worker_scan.scan_entry

        def scan(display: str, path: str, limits: Any) -> Any:
            if "RUNS_SOMETHING" in path:
                os.system("echo AIRLOCK_CANARY")
            return real(display, path, limits)

        worker_scan.scan_entry = scan


def test_a_refusal_during_a_scan_is_a_high_finding_on_that_file(guarded: Any, tmp_path: Path) -> None:
    _local, client, log = guarded
    benign = tmp_path / "ok.pkl"
    benign.write_bytes(b"\x80\x04K\x01.")
    culprit = tmp_path / "RUNS_SOMETHING.pkl"
    culprit.write_bytes(b"\x80\x04K\x01.")
    client.register_plugin(TriesToRunSomething(), name="tries-to-run-something")
    try:
        reports = {r.path: r.to_dict() for r in api.scan_paths([str(benign), str(culprit)], client=client)}
    finally:
        client.unregister_worker_plugin("tries-to-run-something")
    bad = reports[str(culprit)]
    assert bad["severity"] == "high"
    assert any("guard refused os.system" in f["message"] for f in bad["findings"]), bad["findings"]
    assert all("guard refused" not in f["message"] for f in reports[str(benign)]["findings"])
    assert any(r["event"] == "os.system" and r["scanning"] for r in _records(log))


def _allocate(nbytes: int) -> int:
    return len(bytearray(nbytes))


def _memory() -> dict[str, int]:
    import resource

    fields = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "VmData"):
                fields[key] = int(value.split()[0]) * 1024
    fields["limit"] = resource.getrlimit(resource.RLIMIT_DATA)[0]
    return fields


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA and /proc: Linux")
def test_the_memory_limit_holds_in_the_worker(tmp_path: Path) -> None:
    """The budget scaled down to 192 MiB: an allocation past it is a MemoryError in the worker, which
    lives on; a decompression bomb ends in a high finding with the worker's peak inside the limit."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    budget = 192 * MiB
    limits = DEFAULT_LIMITS.replace(memory_budget_bytes=budget, max_decompressed_bytes=64 * MiB)
    kind = "torch zip, deflated data.pkl"
    bomb = BOMBS[kind](tmp_path / f"bomb{SUFFIX[kind]}", 96 * MiB)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50) as local, distributed.Client(local) as client:
        dask_map.guard_cluster(client, budget)
        before = client.submit(_memory, pure=False).result(timeout=60)
        assert before["limit"] <= before["VmData"] + budget  # the worker's own use plus one file's budget
        with pytest.raises(MemoryError):
            client.submit(_allocate, 2 * budget, pure=False).result(timeout=60)
        assert client.submit(_allocate, MiB, pure=False).result(timeout=60) == MiB  # the worker lives on
        [report] = list(api.scan_paths([str(bomb)], client=client, limits=limits))
        after = client.submit(_memory, pure=False).result(timeout=60)
    assert report.to_dict()["severity"] == "high"
    assert after["VmHWM"] < before["limit"], (before, after)
    assert after["limit"] == before["limit"]


def test_the_guard_lets_the_cluster_scan_equal_the_local_scan(guarded: Any, tmp_path: Path) -> None:
    _local, client, log = guarded
    paths = []
    for i, fixture in enumerate(corpus.all_fixtures()[:80]):
        path = tmp_path / f"{i:03d}_{''.join(c if c.isalnum() or c in '._-' else '_' for c in fixture.name)}"
        path.write_bytes(fixture.data)
        paths.append(str(path))
    before = len(_records(log))
    local = {r.path: r.to_dict() for r in api.scan_paths(paths)}
    remote = {r.path: r.to_dict() for r in api.scan_paths(paths, client=client)}
    assert remote == local
    assert _records(log)[before:] == []

