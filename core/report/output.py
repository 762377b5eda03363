"""Where a report goes: never over a file it is about.

`airlock scan -o model.pt model.pt` replaced the checkpoint under review with its JSON report (as `lock`
and `diff` did); `convert` already refused its input as output. A report may be written inside a scanned
folder (`lock -o model/airlock.lock model/` is how a lock lives beside its files), not over a file named
on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def overwrites_input(output: str | None, inputs: Iterable[str]) -> str | None:
    """The input file `output` would replace, or None. Compares real paths and, for files that exist, the
    files themselves (a hard link or another spelling of the same path)."""
    if not output:
        return None
    for given in inputs:
        if "://" in given or not os.path.isfile(given):
            continue
        if os.path.realpath(given) == os.path.realpath(output):
            return given
        try:
            if os.path.exists(output) and os.path.samefile(given, output):
                return given
        except OSError:
            continue
    return None
