"""Checkpoint → SafeTensors conversion without executing anything (issue 5).

`convert()` is the entry point for the CLI and the GUI's one-click export. Heavy work (numpy,
gguf, the safetensors library) is imported only while converting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airlock.core.convert.api import convert
    from airlock.core.convert.model import ConvertError, ConvertReport, RefusedCritical, VerificationFailed


def __getattr__(name: str) -> Any:
    # Imported on first use: a scan must not pay for the converter.
    if name == "convert":
        from airlock.core.convert.api import convert

        return convert
    if name in ("ConvertError", "ConvertReport", "RefusedCritical", "VerificationFailed"):
        from airlock.core.convert import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ConvertError", "ConvertReport", "RefusedCritical", "VerificationFailed", "convert"]
