"""TorchScript archives (torch.jit.save): a torch zip plus `code/` sources and `constants.pkl`.

torch.load hands any archive with a `constants.pkl` record to torch.jit.load, whose C++ unpickler
resolves `__torch__.…` names to classes compiled from the archive's own `code/` (TorchScript, not
Python) and refuses other Python globals. So `__torch__` classes are not third-party code here;
what does need outside code is an operator namespace no torch build ships (`ops.mylib.op`).

This module is the format's sniffer and entry point: the archive is read by `torch_zip` and its
`code/` judged by `torchscript_code`.
"""

from __future__ import annotations

import re

from airlock.core.context import ScanContext
from airlock.core.formats.contract import file_node
from airlock.core.formats.torch_zip import parse_archive
from airlock.core.source import Source
from airlock.core.tree import Node
from airlock.core.zipread import peek_names

NAME = "torchscript"
EXTENSIONS = (".pt", ".pth", ".ptl", ".torchscript", ".jit")
OVERLAPS = ("torch_zip", "torch_legacy")  # torch.jit.save and torch.save share .pt/.pth

_CONSTANTS = re.compile(r"[^/]+/constants\.pkl")


def sniff(head: bytes, size: int) -> int:
    return 0  # sniff_source decides: a zip is known by its central directory at the end


def sniff_source(source: Source) -> int:
    names = peek_names(source)
    if not names:
        return 0
    return 97 if any(_CONSTANTS.fullmatch(n) for n in names) else 0


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    parse_archive(source, ctx, root, torchscript=True)
    return root
