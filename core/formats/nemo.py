"""NVIDIA NeMo `.nemo` archives: a tar (plain or gzip) holding `model_config.yaml`, the weights as a
torch checkpoint (`model_weights.ckpt`) and tokenizer files.

NeMo's `restore_from` extracts the tar, builds the model from `model_config.yaml` with Hydra
(`hydra.utils.instantiate` on every `_target_`, and `target` at the top: CVE-2025-23304) and then
`torch.load`s the weights. So the archive is recognised as NeMo (not as the torch zip inside), every
member is scanned like a file (airlock.core.formats.tar: extraction hazards, budgets), and every YAML
member goes through the Hydra checks (airlock.core.formats.yaml_config), the config by its name too.
"""

from __future__ import annotations

from airlock.core.context import ScanContext
from airlock.core.findings import Malformed
from airlock.core.formats import tar
from airlock.core.formats.contract import file_node
from airlock.core.formats.tar_stream import compression
from airlock.core.source import Source
from airlock.core.tree import Node

NAME = "nemo"
EXTENSIONS = (".nemo",)
CONFIG = tar.NEMO_CONFIG  # the tar reader knows it too: it names a NeMo archive whose config comes late


def sniff_source(source: Source) -> int:
    if tar.sniff_source(source) == 0:
        return 0
    if not tar.is_nemo(tar.first_names(source)):
        return 0
    return 90 if compression(source.head(8)) is not None else 99  # above a generic tar


def sniff(head: bytes, size: int) -> int:
    return sniff_source(Source.from_bytes(head, "<head>"))


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    names = tar.walk(source, ctx, root)
    if not tar.is_nemo(names):
        ctx.report(Malformed, f"NeMo archive without {CONFIG}: NeMo cannot restore it", node=root, offset=0)
    return root
