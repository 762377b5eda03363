"""Checkpoint → SafeTensors conversion without executing anything (issue 5).

`convert()` is the entry point for the CLI and the GUI's one-click export. Heavy work (numpy,
gguf, the safetensors library) is imported only while converting.
"""

from airlock.core.convert.api import convert
from airlock.core.convert.model import ConvertError, ConvertReport, RefusedCritical, VerificationFailed

__all__ = ["ConvertError", "ConvertReport", "RefusedCritical", "VerificationFailed", "convert"]
