"""Coverage of the code that runs in child processes, with a floor per module.

The isolated parser child (HDF5 and ONNX: core/parser_child.py, core/formats/keras_hdf5.py, the
formats' describe functions) and the `--jobs` workers (core/parallel.py) run outside the test
process, so a plain coverage run shows them at 0 %. pyproject's [tool.coverage.run] measures
subprocesses that inherit its settings (`patch = ["subprocess", "_exit"]`: coverage's .pth hook,
and forked workers save their data before `os._exit`); the parser child starts with a minimal
environment and may not write files, so the measured run routes it through tests/coverage_child.py
(the same child, unconfined). This test runs the tests that drive those children under coverage,
combines the data and fails when a module drops under its floor.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# test_isolate.py and test_confine.py check the confinement itself, which the measured child skips.
DRIVERS = ["tests/formats/test_keras.py", "tests/formats/test_onnx.py", "tests/test_parallel.py",
           # the child's bound on variable-length HDF5 data (the global heap walk)
           "tests/test_budgets.py::test_hdf5_variable_length_config_is_capped_by_its_real_size",
           "tests/test_budgets.py::test_the_onnx_child_walk_stops_at_its_deadline"]
FLOORS = {  # percent of statements, a few points under what was measured (74, 76, 90, 87 %)
    "core/formats/keras_hdf5.py": 70,  # runs only in the isolated child (0 % before children were measured)
    "core/parser_child.py": 70,  # the child's request loop
    "core/formats/onnx.py": 85,  # describe() runs in the isolated child, the tree in the parent
    # the --jobs workers; their stop-signal paths are tested by tests/test_interrupt.py, which cannot
    # run under coverage (a signal landing in coverage's own SQLite write fails the run), so unmeasured
    "core/parallel.py": 78,
}


@pytest.mark.slow
def test_code_run_in_child_processes_is_measured_and_above_its_floor(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    env.update(COVERAGE_FILE=str(tmp_path / ".coverage"), QT_QPA_PLATFORM="offscreen",
               AIRLOCK_COVERAGE_RCFILE=str(ROOT / "pyproject.toml"), PYTHONPATH=str(ROOT / "tests"))
    coverage = [sys.executable, "-m", "coverage"]
    run = subprocess.run([*coverage, "run", "--rcfile", str(ROOT / "pyproject.toml"), "-m", "pytest", "-q",
                          "-p", "no:cacheprovider", "-p", "coverage_child", "-x", *DRIVERS], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    subprocess.run([*coverage, "combine", "-q", "--rcfile", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                   check=True, timeout=600)
    report = tmp_path / "coverage.json"
    subprocess.run([*coverage, "json", "-q", "--rcfile", str(ROOT / "pyproject.toml"), "-o", str(report),
                    "--include", ",".join(FLOORS)], cwd=ROOT, env=env, check=True, timeout=600)
    files = {Path(name).resolve().relative_to(ROOT).as_posix(): data["summary"]["percent_covered"]
             for name, data in json.loads(report.read_text())["files"].items()}
    low = {name: round(files.get(name, 0.0), 1) for name, floor in FLOORS.items() if files.get(name, 0.0) < floor}
    assert not low, f"under the floor {FLOORS}: {low}"
