"""Every budget in one place. Exceeding one is a finding, never a crash or a hang."""

from __future__ import annotations

from typing import Any


class Limits:
    # Plain classes, not dataclasses: importing dataclasses (and inspect) cost every scan ~6 ms of
    # start-up, and each dataclass ~0.3 ms more.
    __slots__ = ("max_calls_recorded", "max_decompressed_bytes", "max_header_bytes", "max_memo_entries",
                 "max_nesting_depth", "max_opcodes", "max_pickle_member_bytes", "max_pickles_per_stream",
                 "max_remote_bytes", "max_stack_depth", "max_string_preview", "max_zip_members",
                 "memory_budget_bytes", "remote_timeout_s", "time_budget_s")

    def __init__(
        self,
        max_opcodes: int = 5_000_000,          # per pickle stream
        max_stack_depth: int = 100_000,
        max_memo_entries: int = 1_000_000,
        max_pickles_per_stream: int = 1_000,   # stacked pickles
        max_calls_recorded: int = 100_000,     # call nodes kept per pickle (the rest are counted)
        # Per scanned file: every decompressor (gzip/bz2/xz/zlib/lz4 wrappers, deflated members, archives)
        # at every nesting level together.
        max_decompressed_bytes: int = 1024**3,
        max_pickle_member_bytes: int = 2 * 1024**3,
        max_header_bytes: int = 256 * 1024**2,  # SafeTensors/GGUF/ONNX headers read into memory
        max_nesting_depth: int = 8,            # archives within archives
        max_zip_members: int = 1_000_000,
        max_string_preview: int = 200,         # characters of any string shown in a node label
        time_budget_s: float = 60.0,           # per file
        memory_budget_bytes: int = 4 * 1024**3,  # per scanning worker (RLIMIT_DATA)
        max_remote_bytes: int = 64 * 1024**2,  # per remote file: bytes fetched by range requests
        remote_timeout_s: float = 20.0,        # per socket operation of a remote read (connect, a recv)
    ) -> None:
        self.max_opcodes = max_opcodes
        self.max_stack_depth = max_stack_depth
        self.max_memo_entries = max_memo_entries
        self.max_pickles_per_stream = max_pickles_per_stream
        self.max_calls_recorded = max_calls_recorded
        self.max_decompressed_bytes = max_decompressed_bytes
        self.max_pickle_member_bytes = max_pickle_member_bytes
        self.max_header_bytes = max_header_bytes
        self.max_nesting_depth = max_nesting_depth
        self.max_zip_members = max_zip_members
        self.max_string_preview = max_string_preview
        self.time_budget_s = time_budget_s
        self.memory_budget_bytes = memory_budget_bytes
        self.max_remote_bytes = max_remote_bytes
        self.remote_timeout_s = remote_timeout_s
        for name in self.__slots__:
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"limit {name} must be positive, got {value}")

    def replace(self, **changes: Any) -> Limits:
        """A copy with some limits changed (validated like a new one); the original is shared and stays."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Limits(**values)


DEFAULT_LIMITS = Limits()
