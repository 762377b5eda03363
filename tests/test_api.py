"""core/api.py: the public API — scan_file and scan_paths return Reports whose to_dict() is the JSON
report's entry, a Report pickles (for a distributed map), and the CLI and GUI go through it."""

import functools
import json
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest
from fixtures import onnx_files

from airlock.core import api, cli
from airlock.core.api import Report, Severity, scan_file, scan_paths
from airlock.core.limits import Limits

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "evil.pkl").write_bytes(EVIL)
    (tmp_path / "state.pkl").write_bytes(pickle.dumps({"step": 1}, protocol=4))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.onnx").write_bytes(onnx_files.matmul().SerializeToString())
    (tmp_path / "sub" / "empty.bin").write_bytes(b"")
    return tmp_path


def _cli_entries(capsys, *argv):
    cli.main(["scan", "--format", "json", *argv])
    return json.loads(capsys.readouterr().out)["files"]


def test_scan_file_is_the_json_reports_entry(folder, capsys):
    entries = {e["path"]: e for e in _cli_entries(capsys, "--jobs", "1", str(folder))}
    for path, entry in entries.items():
        report = scan_file(path)
        assert report.to_dict() == entry
        assert report.path == path and report.format == entry["format"]
        assert report.severity == Severity.parse(entry["severity"])
        assert report.findings == entry["findings"]
    assert scan_file(folder / "evil.pkl").severity == Severity.CRITICAL


def test_to_dict_is_a_copy(folder):
    report = scan_file(folder / "evil.pkl")
    entry = report.to_dict()
    entry["findings"][0]["severity"] = "none"
    entry["severity"] = "none"
    assert report.severity == Severity.CRITICAL and report.to_dict()["findings"][0]["severity"] == "critical"


def test_a_report_pickles_without_its_tree(folder):
    with scan_file(folder / "evil.pkl", keep_tree=True) as report:
        assert report.result is not None and report.result.root.attrs["format"] == "pickle"
        copy = pickle.loads(pickle.dumps(report))
        assert copy.to_dict() == report.to_dict() and copy.result is None
    assert report.result is None  # closed with the block


def test_scan_file_maps_over_processes_unchanged(folder):
    """What a distributed map (Dask's client.map) needs: the function, its arguments and its
    result cross process boundaries by pickle. A spawned pool is the same test without a cluster."""
    paths = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    limits = Limits(time_budget_s=30.0)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        remote = list(pool.map(functools.partial(scan_file, limits=limits), paths))
    assert [r.to_dict() for r in remote] == [scan_file(p, limits=limits).to_dict() for p in paths]


def test_a_policy_file_is_applied_as_the_cli_applies_it(folder, capsys, tmp_path_factory):
    """A real policy file (core/policy_file.py): the evil pickle's critical finding re-rated, the
    same marks as `airlock scan --policy`, in scan_file and scan_paths, with its budgets."""
    policy_file = tmp_path_factory.mktemp("policy") / "airlock.toml"
    evil = scan_file(folder / "evil.pkl")
    rule = evil.findings[0]["rule"]
    policy_file.write_text(f'timeout = 7\n[[override]]\nrule = "{rule}"\nseverity = "low"\npath = "evil.pkl"\n'
                           'reason = "tests"\n')
    policy = api.load_policy(str(policy_file))
    expected = _cli_entries(capsys, "--jobs", "1", "--policy", str(policy_file), str(folder))
    by_path = {e["path"]: e for e in expected}
    marked = scan_file(folder / "evil.pkl", policy=policy)
    assert marked.to_dict() == by_path[str(folder / "evil.pkl")]
    assert marked.findings[0]["overridden_by"]["reason"] == "tests" and marked.severity < Severity.HIGH
    assert sorted((r.to_dict() for r in scan_paths([folder], policy=policy)), key=lambda e: e["path"]) == \
        sorted(expected, key=lambda e: e["path"])
    assert api._limits(None, policy).time_budget_s == 7


@pytest.mark.parametrize("jobs", [1, 2])
def test_scan_paths_reports_every_file_once(folder, capsys, jobs):
    expected = _cli_entries(capsys, "--jobs", "1", str(folder))
    reports = list(scan_paths([folder], jobs=jobs))
    assert sorted(r.index for r in reports) == list(range(len(expected)))
    assert [r.to_dict() for r in sorted(reports, key=lambda r: r.index)] == expected


def test_scan_paths_of_a_missing_path_is_an_unreadable_report(tmp_path):
    (report,) = scan_paths([tmp_path / "nothing.pkl"])
    assert report.severity == Severity.HIGH and report.findings[0]["rule"] == "AIR007"


class Recorder:
    def __init__(self):
        self.calls = []

    def found(self, files, nbytes, complete):
        self.calls.append(("found", files, nbytes, complete))

    def started(self, path, size):
        self.calls.append(("started", os.path.basename(path), size))

    def finished(self, report, size):
        self.calls.append(("finished", os.path.basename(report.path), size))


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_observer_sees_the_walk_and_each_file(folder, jobs):
    recorder = Recorder()
    names = [os.path.basename(r.path) for r in scan_paths([folder], observer=recorder, jobs=jobs)]
    assert sorted(names) == ["empty.bin", "evil.pkl", "model.onnx", "state.pkl"]
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert ("found", 4, total, True) in recorder.calls
    for name in names:
        started = next(i for i, c in enumerate(recorder.calls) if c[:2] == ("started", name))
        finished = next(i for i, c in enumerate(recorder.calls) if c[:2] == ("finished", name))
        assert started < finished
    assert ("finished", "model.onnx", (folder / "sub" / "model.onnx").stat().st_size) in recorder.calls


def test_one_parser_process_serves_a_scans_files(folder, monkeypatch):
    """scan_paths opens one parser session: ten ONNX files, one child process."""
    for i in range(10):
        (folder / "sub" / f"copy{i}.onnx").write_bytes((folder / "sub" / "model.onnx").read_bytes())
    from airlock.core import isolate

    sessions = []
    real = isolate.ParserSession

    class Counting(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            sessions.append(self)

    monkeypatch.setattr(isolate, "ParserSession", Counting)
    reports = [r for r in scan_paths([folder]) if r.format == "onnx"]
    assert len(reports) == 11 and all(r.severity <= Severity.INFO for r in reports)
    assert len(sessions) == 1 and sessions[0].started == 1


def test_report_repr_names_the_file(folder):
    assert "evil.pkl" in repr(scan_file(folder / "evil.pkl")) and isinstance(scan_file(folder / "evil.pkl"), Report)


def test_the_api_module_is_typed_and_documented():
    for name in ("load_policy", "Report", "ScanObserver", "scan_file", "scan_paths"):  # the rest is re-exported
        assert getattr(api, name).__doc__, name
    assert scan_file.__annotations__["return"] == "Report"
