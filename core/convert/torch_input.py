"""PyTorch input: a torch checkpoint's tensors as TensorSpecs, for the converter.

`read_checkpoint` scans the file with the engine (the caller refuses critical files), then has the
container's reader (`formats.torch_zip` or `formats.torch_legacy`) rebuild the main pickle's value
symbolically, every tensor replaced by a `TensorSpec` (`formats.torch_checkpoint.walk`). Nothing
is executed. It sits here, above the readers, so the shared tensor walk below them never imports
them back.
"""

from __future__ import annotations

import os
from typing import Any

from airlock.core.errors import FormatError
from airlock.core.findings import Finding, Severity
from airlock.core.limits import DEFAULT_LIMITS, Limits


class Checkpoint:
    __slots__ = ("findings", "format", "root", "severity")

    def __init__(self, format: str, root: Any, findings: list[Finding], severity: Severity) -> None:
        self.format = format  # "torch_zip" | "torch_legacy" | "torch_tar"
        self.root = root  # the main pickle's symbolic value, every tensor replaced by a TensorSpec
        self.findings = findings
        self.severity = severity  # worst finding of a full scan of the file


def read_checkpoint(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> Checkpoint:
    """Scan a torch checkpoint and describe its tensors. FormatError for anything else."""
    from airlock.core.formats import torch_legacy, torch_zip
    from airlock.core.scan import scan_file
    from airlock.core.source import Source

    result = scan_file(path, limits=limits)
    try:
        findings, severity = list(result.findings), result.severity
        fmt = result.format
        if fmt not in (torch_zip.NAME, torch_legacy.NAME):
            raise FormatError(f"{os.fspath(path)} is not a PyTorch checkpoint (content is {fmt})", 0)
    finally:
        result.close()
    with Source.open(path) as source:
        if fmt == torch_zip.NAME:
            root = torch_zip.load_structure(source, limits)
            kind = "torch_zip"
        else:
            root, kind = torch_legacy.load_structure(source, limits)
    return Checkpoint(kind, root, findings, severity)
