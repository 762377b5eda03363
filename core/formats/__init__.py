"""The format registry. Each module answers "is this mine?" (`sniff`) and "show it" (`parse`).

A format module meets `contract.FormatModule` (checked by mypy through the block below):
    NAME: str                       short format name, as reported ("pickle", "safetensors"...)
    EXTENSIONS: tuple[str, ...]     file extensions that usually carry it (for mismatch findings)
    ALSO_NAMED: tuple[str, ...]     optional: common names it is saved under (.json, .txt, .xml) that
                                    agree with it but do not make a file a model by its name
    sniff(head: bytes, size: int) -> int    0 = not mine ... 100 = certain, from content only
    sniff_source(source) -> int     optional, replaces sniff when the head is not enough (zip EOCD)
    parse(source: Source, ctx: ScanContext) -> Node
    OVERLAPS: tuple[str, ...]       optional: formats it knowingly shares extensions or bytes with

Loading refuses a repeated name or an undeclared shared extension (`contract.RegistryConflict`).
To add a format, follow the checklist in docs/ARCHITECTURE.md (a test keeps it honest).

Modules import heavy libraries (numpy, onnx, gguf, jinja2, h5py) inside `parse`, never at import
time: `airlock scan` on a pickle must not pay for them.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, cast

from airlock.core.formats.contract import FormatModule, SourceSniffer, check_names

# Order breaks ties between equal sniff scores.
MODULE_NAMES = [
    "airlock.core.formats.numpy_npy",
    "airlock.core.formats.numpy_npz",
    "airlock.core.formats.joblib",
    "airlock.core.formats.pickle",
    "airlock.core.formats.compressed",
    "airlock.core.formats.safetensors",
    "airlock.core.formats.safetensors_index",
    "airlock.core.formats.gguf",
    "airlock.core.formats.onnx",
    "airlock.core.formats.keras",
    "airlock.core.formats.model_folder",
    "airlock.core.formats.yaml_config",
    "airlock.core.formats.python_code", "airlock.core.formats.notebook",
    "airlock.core.formats.chat_template",
    "airlock.core.formats.torchscript",
    "airlock.core.formats.pt2",
    "airlock.core.formats.tflite",
    "airlock.core.formats.executorch",
    "airlock.core.formats.ort",
    "airlock.core.formats.skops",
    "airlock.core.formats.msgpack_format",
    "airlock.core.formats.saved_model",
    "airlock.core.formats.tf_checkpoint",
    "airlock.core.formats.openvino",
    "airlock.core.formats.coreml",
    "airlock.core.formats.catboost",
    "airlock.core.formats.torch_zip",
    "airlock.core.formats.torch_legacy",
    "airlock.core.formats.nemo",
    "airlock.core.formats.sevenz",
    "airlock.core.formats.tar",
    "airlock.core.formats.zip",
    "airlock.core.formats.inert",
    "airlock.core.formats.gbdt",  # after inert: .txt keeps naming text in known_extensions()
]


if TYPE_CHECKING:  # mypy checks every registered module against the contract; no import at run time
    from airlock.core.formats import (
        catboost,
        chat_template,
        compressed,
        coreml,
        executorch,
        gbdt,
        gguf,
        inert,
        joblib,
        keras,
        model_folder,
        msgpack_format,
        nemo,
        notebook,
        numpy_npy,
        numpy_npz,
        onnx,
        openvino,
        ort,
        pickle,
        pt2,
        python_code,
        safetensors,
        safetensors_index,
        saved_model,
        sevenz,
        skops,
        tar,
        tf_checkpoint,
        tflite,
        torch_legacy,
        torch_zip,
        torchscript,
        yaml_config,
        zip,
    )

    CHECKED: tuple[FormatModule, ...] = (
        numpy_npy,
        numpy_npz,
        joblib,
        pickle,
        compressed,
        safetensors,
        safetensors_index,
        gguf,
        onnx,
        keras,
        model_folder,
        yaml_config,
        python_code,
        notebook,
        chat_template,
        torchscript,
        pt2,
        tflite,
        executorch,
        ort,
        skops,
        msgpack_format,
        saved_model,
        tf_checkpoint,
        openvino,
        coreml,
        catboost,
        torch_zip,
        torch_legacy,
        nemo,
        sevenz,
        tar,
        zip,
        inert,
        gbdt,
    )

_loaded: list[FormatModule] | None = None


def load_all_modules() -> list[FormatModule]:
    global _loaded
    if _loaded is None:
        modules = [cast(FormatModule, importlib.import_module(name)) for name in MODULE_NAMES]
        check_names(modules)  # a dict walk, no sniffing: start-up stays as cheap as the imports
        _loaded = modules
    return _loaded


_sniffers: tuple[list[FormatModule], list[tuple[FormatModule, SourceSniffer | None]]] | None = None


def sniffers() -> list[tuple[FormatModule, SourceSniffer | None]]:
    """(module, its sniff_source or None) in registry order: looked up once, not per file."""
    global _sniffers
    modules = load_all_modules()
    if _sniffers is None or _sniffers[0] is not modules:
        _sniffers = (modules, [(module, getattr(module, "sniff_source", None)) for module in modules])
    return _sniffers[1]


def by_name(name: str) -> FormatModule:
    for module in load_all_modules():
        if name == module.NAME:
            return module
    raise KeyError(name)


@functools.cache
def known_extensions() -> dict[str, str]:
    """Extension → format name, for telling when a file's name disagrees with its content."""
    table: dict[str, str] = {}
    for module in load_all_modules():
        for ext in module.EXTENSIONS:
            table.setdefault(ext, module.NAME)
    return table
