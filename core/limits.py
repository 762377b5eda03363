"""Every budget in one place. Exceeding one is a finding, never a crash or a hang."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_opcodes: int = 5_000_000          # per pickle stream
    max_stack_depth: int = 100_000
    max_memo_entries: int = 1_000_000
    max_pickles_per_stream: int = 1_000   # stacked pickles
    max_calls_recorded: int = 100_000     # call nodes kept per pickle (the rest are counted)
    max_decompressed_bytes: int = 2 * 1024**3  # gzip/bz2/xz/zlib/lz4 wrappers, deflated members
    max_pickle_member_bytes: int = 2 * 1024**3
    max_header_bytes: int = 256 * 1024**2  # SafeTensors/GGUF/ONNX headers read into memory
    max_nesting_depth: int = 8            # archives within archives
    max_zip_members: int = 1_000_000
    max_string_preview: int = 200         # characters of any string shown in a node label
    time_budget_s: float = 60.0           # per file
    memory_budget_bytes: int = 4 * 1024**3  # per scanning worker (RLIMIT_DATA)

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"limit {name} must be positive, got {value}")


DEFAULT_LIMITS = Limits()
