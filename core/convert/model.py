"""What the converter passes between its stages: the plan (tensors to write), and the report.

A plan is built from the input's structure alone (a symbolic pickle, a zip directory, a GGUF
header); the writer streams it into SafeTensors files; verification checks the written files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from airlock.core.errors import AirlockError
from airlock.core.tensor_spec import DTYPE_SIZES, TensorSpec

# An output larger than this many times the input's bytes on disk is refused unless asked for.
# Copying tensors never expands a checkpoint; what does is dequantizing GGUF to F32 (up to 28.4x
# for Q1_0 at 1.125 bits per weight, the most compressed type gguf knows; 20.5x for IQ1_S), a
# deflated storage of very compressible data, and stride-0 views (expanded tensors): a 700-byte
# file can describe 2 GiB.
DEFAULT_MAX_EXPANSION = 32.0

CHUNK = 256 * 1024  # bytes per piece the converter reads, inflates and writes


class ConvertError(AirlockError):
    """The conversion cannot be done; the message is one clear line for the user."""


class RefusedCritical(ConvertError):
    """The input has critical findings and the user did not confirm."""


class VerificationFailed(ConvertError):
    """The written output does not match the source."""


# A tensor whose bytes are computed rather than copied (a dequantized GGUF tensor): yields
# its contiguous little-endian bytes in pieces.
Producer = Callable[[], Iterator[bytes]]


class OutTensor:
    __slots__ = ("dtype", "name", "path", "producer", "shape", "spec")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], spec: TensorSpec | None = None,
                 producer: Producer | None = None, path: str = "") -> None:
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.spec = spec  # bytes copied from a file region
        self.producer = producer  # or computed
        self.path = path  # file holding spec's storage

    @property
    def nbytes(self) -> int:
        n = DTYPE_SIZES[self.dtype]
        for d in self.shape:
            n *= d
        return n


class Plan:
    """Everything to write, and what was left out and why."""

    __slots__ = ("aliases", "critical", "input_format", "metadata", "notes", "selected", "severity",
                 "skipped", "tensors")

    def __init__(self, input_format: str, tensors: list[OutTensor] | None = None,
                 metadata: dict[str, str] | None = None, skipped: list[tuple[str, str]] | None = None,
                 aliases: dict[str, str] | None = None, selected: str = "", severity: str = "none",
                 critical: list[str] | None = None, notes: list[str] | None = None) -> None:
        self.input_format = input_format
        self.tensors: list[OutTensor] = [] if tensors is None else tensors
        self.metadata: dict[str, str] = {} if metadata is None else metadata
        self.skipped: list[tuple[str, str]] = [] if skipped is None else skipped  # (entry, reason)
        self.aliases: dict[str, str] = {} if aliases is None else aliases  # alias -> written tensor
        self.selected = selected  # path of the dict the tensors came from ("" = the top level)
        self.severity = severity  # worst finding of the input scan
        self.critical: list[str] = [] if critical is None else critical  # messages of critical findings
        self.notes: list[str] = [] if notes is None else notes


class WrittenTensor:
    __slots__ = ("digest", "dtype", "end", "name", "shape", "start")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], start: int, end: int,
                 digest: bytes | None) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.start = start  # absolute offset in the output file
        self.end = end
        self.digest = digest  # xxh3-128 of the bytes as read from the source (None without verify)


class WrittenFile:
    __slots__ = ("header", "path", "size", "tensors")

    def __init__(self, path: str, header: bytes, tensors: list[WrittenTensor], size: int) -> None:
        self.path = path
        self.header = header  # the 8-byte length and the JSON header, exactly as written
        self.tensors = tensors
        self.size = size


class ConvertReport:
    __slots__ = ("aliases", "bytes", "files", "index_path", "input_format", "input_path", "metadata",
                 "notes", "outputs", "seconds", "selected", "severity", "skipped", "tensors", "verification",
                 "verified")

    def __init__(self, input_path: str, input_format: str, outputs: list[str], index_path: str | None,
                 tensors: int, bytes: int, seconds: float, verified: bool | None, verification: str,
                 selected: str, skipped: list[tuple[str, str]], metadata: dict[str, str],
                 aliases: dict[str, str], severity: str, notes: list[str] | None = None,
                 files: list[WrittenFile] | None = None) -> None:
        self.input_path = input_path
        self.input_format = input_format
        self.outputs = outputs  # SafeTensors files written (shards in order)
        self.index_path = index_path  # model.safetensors.index.json when sharded
        self.tensors = tensors
        self.bytes = bytes  # tensor bytes written
        self.seconds = seconds
        self.verified = verified  # None when verification was off
        self.verification = verification  # what verification checked or why it failed
        self.selected = selected
        self.skipped = skipped
        self.metadata = metadata
        self.aliases = aliases
        self.severity = severity
        self.notes: list[str] = [] if notes is None else notes
        self.files: list[WrittenFile] = [] if files is None else files
