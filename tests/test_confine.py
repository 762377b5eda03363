"""core/confine.py: each restriction of the isolated parser process, proven from inside the child.

The child runs the `probe` task, which *attempts* each forbidden thing (a socket, execve of a real
program, fork, writing and creating files) and reports the outcome, with its environment, limits
and working folder. An execve that succeeded would replace the child: no answer, and the test fails.
"""

import os
import sys

import pytest

from airlock.core import isolate
from airlock.core.confine import ENV_MEMORY, ENV_PARENT, MAX_OPEN_FILES
from airlock.core.context import ScanContext
from airlock.core.limits import DEFAULT_LIMITS
from airlock.core.source import Source

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp and prctl are Linux's")
BUDGET = 3 * 1024**3


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("confine")
    target = folder / "victim.txt"
    target.write_bytes(b"original")
    os.environ["AIRLOCK_TEST_SECRET_TOKEN"] = "hunter2"  # what a CI job's token would be
    try:
        ctx = ScanContext(DEFAULT_LIMITS.replace(memory_budget_bytes=BUDGET))
        report = isolate.run_isolated("probe", Source.from_bytes(b"", "probe", member="probe"), ctx, {
            "write_path": str(target), "read_path": str(target), "exec_path": "/bin/true"})
    finally:
        del os.environ["AIRLOCK_TEST_SECRET_TOKEN"]
    return {"report": report, "target": target, "findings": ctx.findings}


def test_the_parents_environment_is_absent(probe):
    env = probe["report"]["environment"]
    assert "AIRLOCK_TEST_SECRET_TOKEN" not in env and "HOME" not in env and "PATH" not in env
    # Only what Python and the parser need (LC_CTYPE: Python's own C-locale coercion).
    assert set(env) <= {"HDF5_PLUGIN_PATH", ENV_MEMORY, ENV_PARENT, "LC_CTYPE", "LD_LIBRARY_PATH"}


@linux
def test_no_network(probe):
    assert probe["report"]["socket"] == "error: EPERM"
    assert probe["report"]["unix_socket"] == "error: EPERM"


@linux
def test_no_new_program_and_no_new_process(probe):
    assert probe["report"]["execve"] == "error: EPERM"
    # RLIMIT_NPROC does not bind root (CI runs as root): the filter refuses fork itself.
    assert probe["report"]["fork"] == "error: EPERM"


@linux
def test_no_file_written_or_created(probe):
    assert probe["report"]["write"] == "error: EACCES"
    assert probe["report"]["create"] == "error: EACCES"
    assert probe["target"].read_bytes() == b"original"
    assert not probe["target"].with_name("victim.txt.new").exists()


def test_reading_stays_allowed(probe):
    assert probe["report"]["read"] == "allowed"  # the child reads the file it parses


def test_resource_limits(probe):
    limits = probe["report"]["limits"]
    assert limits["RLIMIT_FSIZE"] == [0, 0]
    assert limits["RLIMIT_CORE"] == [0, 0]
    assert limits["RLIMIT_NOFILE"] == [MAX_OPEN_FILES, MAX_OPEN_FILES]
    assert limits["RLIMIT_DATA"][0] == BUDGET


def test_a_fresh_working_folder(probe):
    # Entered, then removed: not the user's folder, and nothing can be found or made in it.
    assert probe["report"]["cwd"] == "error: ENOENT"
    assert probe["report"]["cwd_listing"] in ([], "error: ENOENT")


@linux
def test_no_new_privileges_and_a_seccomp_filter(probe):
    assert probe["report"]["status"] == {"NoNewPrivs": "1", "Seccomp": "2"}
    assert not probe["findings"]  # nothing missing: no "not fully confined" note


@linux
def test_the_parsers_still_work_confined():
    """libhdf5 and protobuf read their inputs under the filter (h5py by path too)."""
    from fixtures import keras_files, onnx_files

    ctx = ScanContext()
    desc = isolate.run_isolated("onnx", Source.from_bytes(onnx_files.matmul().SerializeToString(), "m",
                                                          member="m"), ctx)
    assert desc["graph"]["nodes"][0]["op_type"] == "MatMul"
    desc = isolate.run_isolated("hdf5", Source.from_bytes(keras_files.h5_file(None), "m.h5", member="m.h5"), ctx)
    assert desc["attrs"]["keras_version"] == "2.15.0"
    assert not ctx.findings


def test_what_a_platform_lacks_is_named(monkeypatch):
    """Off Linux (macOS, Windows) the filter and prctl do not exist: each is listed as missing, and
    the parent turns the list into an info finding (tests/test_isolate.py)."""
    from airlock.core import confine

    monkeypatch.setattr(confine.sys, "platform", "darwin")
    state = confine.Confinement()
    confine._die_with_parent(state)
    confine._no_new_privileges(state)
    confine._seccomp(state)  # returns before loading anything into this process
    assert state.applied == []
    assert state.missing == ["parent-death signal (Linux only)", "no-new-privileges (Linux only)",
                             "seccomp filter (Linux only)"]
