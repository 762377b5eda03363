"""What the converter passes between its stages: the plan (tensors to write), and the report.

A plan is built from the input's structure alone (a symbolic pickle, a zip directory, a GGUF
header); the writer streams it into SafeTensors files; verification checks the written files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from airlock.core.convert.spec import DTYPE_SIZES, TensorSpec
from airlock.core.errors import AirlockError


class ConvertError(AirlockError):
    """The conversion cannot be done; the message is one clear line for the user."""


class RefusedCritical(ConvertError):
    """The input has critical findings and the user did not confirm."""


class VerificationFailed(ConvertError):
    """The written output does not match the source."""


# A tensor whose bytes are computed rather than copied (a dequantized GGUF tensor): yields
# its contiguous little-endian bytes in pieces.
Producer = Callable[[], Iterator[bytes]]


@dataclass(slots=True)
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    spec: TensorSpec | None = None   # bytes copied from a file region
    producer: Producer | None = None  # or computed
    path: str = ""                   # file holding spec's storage

    @property
    def nbytes(self) -> int:
        n = DTYPE_SIZES[self.dtype]
        for d in self.shape:
            n *= d
        return n


@dataclass
class Plan:
    """Everything to write, and what was left out and why."""

    input_format: str
    tensors: list[OutTensor] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason)
    aliases: dict[str, str] = field(default_factory=dict)        # alias -> written tensor
    selected: str = ""      # path of the dict the tensors came from ("" = the top level)
    severity: str = "none"  # worst finding of the input scan
    critical: list[str] = field(default_factory=list)  # messages of critical findings
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WrittenTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int   # absolute offset in the output file
    end: int
    digest: bytes | None  # xxh3-128 of the bytes as read from the source (None without verify)


@dataclass
class WrittenFile:
    path: str
    header: bytes  # the 8-byte length and the JSON header, exactly as written
    tensors: list[WrittenTensor]
    size: int


@dataclass
class ConvertReport:
    input_path: str
    input_format: str
    outputs: list[str]           # SafeTensors files written (shards in order)
    index_path: str | None       # model.safetensors.index.json when sharded
    tensors: int
    bytes: int                   # tensor bytes written
    seconds: float
    verified: bool | None        # None when verification was off
    verification: str            # what verification checked or why it failed
    selected: str
    skipped: list[tuple[str, str]]
    metadata: dict[str, str]
    aliases: dict[str, str]
    severity: str
    notes: list[str] = field(default_factory=list)
    files: list[WrittenFile] = field(default_factory=list)
