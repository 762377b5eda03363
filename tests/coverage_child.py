"""The isolated parser child, measured by coverage (tests/test_child_coverage.py).

core/isolate.py starts its parser child with a minimal environment, and the child confines itself
(core/confine.py): no file may be opened for writing or grow. Coverage writes its data file when
the process ends, so this child does every step of `parser_child.child_main` except confining: the
answers get their private descriptor, then `child_serve` answers requests as the real child does.
It reports no missing confinement, so the parent judges each file as it does with the confined
child (the confinement has its own tests: tests/test_confine.py, tests/test_isolate.py).

    python coverage_child.py RCFILE DATA_FILE      (isolate's child command under `-p coverage_child`)
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import coverage

    cov = coverage.Coverage(config_file=sys.argv[1], data_file=sys.argv[2], data_suffix=True)
    cov.start()
    try:
        from airlock.core import parser_child
        from airlock.core.confine import Confinement

        sys.stdout.flush()
        parser_child._ANSWERS = os.dup(1)  # as child_prepare: answers on a private copy of stdout
        os.dup2(2, 1)
        parser_child.child_serve(Confinement())
    finally:
        cov.stop()
        cov.save()


def pytest_configure(config: object) -> None:
    """Loaded into the measured pytest run with `-p coverage_child`: route isolate's children here."""
    from airlock.core import isolate

    command = [sys.executable, "-I", "-B", os.path.abspath(__file__), os.environ["AIRLOCK_COVERAGE_RCFILE"],
               os.environ["COVERAGE_FILE"]]
    isolate._command = lambda: list(command)


if __name__ == "__main__":
    main()
