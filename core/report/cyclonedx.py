"""`--format cyclonedx`: a CycloneDX 1.6 ML-BOM, written with cyclonedx-python-lib.

One `machine-learning-model` component per model file (a `file` component for configs, templates
and other files), with its SHA-256 when computed (`--hash`), its format, its verdict and findings as
`airlock:*` properties, and the Hugging Face repository and revision when known. The library is
imported only for this format.
"""

from __future__ import annotations

from typing import Any

from airlock.core import __version__
from airlock.core.text import safe_text

MAX_FINDING_PROPERTIES = 50


def _properties(entry: dict[str, Any]) -> list[tuple[str, str]]:
    props = [("airlock:format", str(entry["format"])), ("airlock:verdict", str(entry["severity"]))]
    if entry.get("size") is not None:
        props.append(("airlock:size", str(entry["size"])))
    hf = entry.get("huggingface") or {}
    for key in ("repo_id", "repo_type", "revision", "blob"):
        if hf.get(key):
            props.append((f"airlock:huggingface:{key}", str(hf[key])))
    if hf.get("refs"):
        props.append(("airlock:huggingface:refs", ",".join(hf["refs"])))
    findings = entry["findings"]
    for f in findings[:MAX_FINDING_PROPERTIES]:
        mark = " (suppressed by policy)" if f.get("suppressed_by") else ""
        where = f" @{f['offset']}" if f.get("offset") is not None else ""
        props.append(("airlock:finding", f"{f['severity']} {f['rule']}{where}: "
                                         f"{safe_text(f['message'], 500)}{mark}"))
    if len(findings) > MAX_FINDING_PROPERTIES:
        props.append(("airlock:finding", f"… and {len(findings) - MAX_FINDING_PROPERTIES} more"))
    return props


def build(files: list[dict[str, Any]]) -> Any:
    """The Bom object for these report entries."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import Tool

    from airlock.core.review.gate import is_model, model_extensions

    extensions = model_extensions()
    bom = Bom()
    bom.metadata.tools.tools.add(Tool(vendor="Airlock", name="airlock", version=__version__))
    for index, entry in enumerate(files):
        # The same test as the approvals gate, so a README, a YAML config or code is never a "model".
        model = is_model(entry, extensions)
        hf = entry.get("huggingface") or {}
        component = Component(
            name=safe_text(str(entry["path"]), 1000),
            type=ComponentType.MACHINE_LEARNING_MODEL if model else ComponentType.FILE,
            bom_ref=f"airlock-file-{index}",
            version=hf.get("revision") or None,
            group=hf.get("repo_id") or None,
            hashes=([HashType(alg=HashAlgorithm.SHA_256, content=entry["sha256"])]
                    if entry.get("sha256") else None),
            properties=[Property(name=k, value=v) for k, v in _properties(entry)],
        )
        bom.components.add(component)
    return bom


def render(files: list[dict[str, Any]]) -> str:
    from cyclonedx.output.json import JsonV1Dot6

    return str(JsonV1Dot6(build(files)).output_as_string(indent=2)) + "\n"
