"""core/source.py: every read goes through pread (never a memory map), so a file that shrinks
while it is scanned is a "truncated" finding, not SIGBUS; byte walkers see a source as bytes."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from airlock.core.errors import FormatError
from airlock.core.source import SMALL_FILE_BYTES, MemorySource, PagedView, Source, SourceFile


def _mappings_of(path: str) -> int:
    with open("/proc/self/maps") as fh:
        return sum(1 for line in fh if line.rstrip("\n").endswith(path))


@pytest.fixture
def big(tmp_path):
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        for i in range(16):
            fh.write(i.to_bytes(1, "little") * (1 << 20))
    return str(path)


def test_small_files_are_read_whole_and_big_ones_read_in_place(tmp_path, big):
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * SMALL_FILE_BYTES)
    with Source.open(small) as source:
        assert source.in_memory and source.read(10, 5) == b"xxxxx"
    with Source.open(big) as source:
        assert not source.in_memory and source.size == 16 << 20


def test_read_returns_the_file_bytes_and_nothing_past_the_end(big):
    with Source.open(big) as source:
        for offset in (0, 1 << 20, (3 << 20) - 2, (16 << 20) - 3):
            expected = bytes([offset >> 20]) * 4
            if offset == (3 << 20) - 2:
                expected = b"\x02\x02\x03\x03"
            assert source.read(offset, 4) == expected[: source.size - offset]
        assert source.read(16 << 20, 4) == b"" and source.read((16 << 20) + 5, 4) == b""
        with pytest.raises(ValueError):
            source.read(-1, 4)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the process's mappings on Linux")
def test_nothing_maps_the_file(big):
    """Regression: parsers read through a memory map, so a file truncated under `airlock scan` killed
    the scan with SIGBUS (exit 135). Nothing maps a scanned file any more."""
    with Source.open(big) as source:
        view = source.view()
        assert view[5 << 20] == 5 and view[(2 << 20) - 1 : (2 << 20) + 1] == b"\x01\x02"
        reader = SourceFile(source)
        reader.seek(7 << 20)
        assert reader.read(3) == b"\x07" * 3
        assert _mappings_of(big) == 0


def test_a_file_that_shrinks_while_read_gives_a_truncation_error(big):
    with Source.open(big) as source:
        os.truncate(big, 1 << 20)
        assert source.read(0, 4) == b"\0" * 4
        with pytest.raises(FormatError, match="truncated: the file shrank"):
            source.read(2 << 20, 16)


_TRUNCATED_SCAN = textwrap.dedent("""
    import json, os, struct, sys
    from airlock.core.context import ScanContext
    from airlock.core.scan import scan_source
    from airlock.core.source import Source

    path = sys.argv[1]
    # A GGUF header with 20,000 KV pairs, then 4 MiB of tensor-free padding: big enough to be read
    # through the file, not from memory.
    kv = b"".join(struct.pack("<Q", 8) + b"key%05d" % i + struct.pack("<I", 4) + struct.pack("<I", i)
                  for i in range(20_000))
    with open(path, "wb") as fh:
        fh.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 20_000) + kv + b"\\0" * (4 << 20))
    source = Source.open(path)
    os.truncate(path, 100_000)  # the file shrinks after it was opened, before the parser reads it
    result = scan_source(source, path, ScanContext())
    print(json.dumps([[f.rule, f.severity.label, f.message] for f in result.findings]))
""")


def test_a_scan_of_a_file_truncated_under_it_is_a_finding_not_a_signal(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _TRUNCATED_SCAN, str(tmp_path / "cut.gguf")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"the scan died (exit {proc.returncode}): {proc.stderr[-2000:]}"
    findings = json.loads(proc.stdout)
    assert any(severity == "high" and "truncated" in message for _, severity, message in findings), findings


class _Recording(Source):
    """A source implemented with `_read` alone, as a remote (range-reading) source would be."""

    def __init__(self, data: bytes) -> None:
        super().__init__(name="remote", size=len(data))
        self.data, self.reads = data, []

    def _read(self, offset: int, n: int) -> bytes:
        self.reads.append((offset, n))
        return self.data[offset : offset + n]


def test_a_paged_view_reads_like_bytes_a_window_at_a_time():
    data = bytes(range(256)) * 20_000  # ~5 MB
    source = _Recording(data)
    view = source.view()
    assert isinstance(view, PagedView) and len(view) == len(data)
    assert [view[i] for i in (0, 1, 255, 256, len(data) - 1, -1)] == [0, 1, 255, 0, 255, 255]
    assert view[1000:1010] == data[1000:1010] and view[-3:] == data[-3:] and view[5:1] == b""
    assert view[10:20:3] == data[10:20:3]
    with pytest.raises(IndexError):
        view[len(data)]
    # Sequential reads grow the window; a read never fetches more than a megabyte at once.
    source.reads.clear()
    total = sum(view[i] for i in range(0, len(data), 97))
    assert total == sum(data[i] for i in range(0, len(data), 97))
    assert len(source.reads) < 20 and max(n for _, n in source.reads) <= 1 << 20
    # A big slice is one read, not windows.
    source.reads.clear()
    assert view[100 : 100 + (3 << 20)] == data[100 : 100 + (3 << 20)] and len(source.reads) == 1


def test_find_sees_matches_across_windows():
    data = b"a" * ((1 << 20) - 3) + b"needle" + b"b" * (3 << 20) + b"needle"
    view = _Recording(data).view()
    assert view.find(b"needle") == (1 << 20) - 3
    assert view.find(b"needle", (1 << 20)) == len(data) - 6
    assert view.find(b"needle", 0, (1 << 20)) == -1
    assert view.find(b"absent") == -1


def test_memory_sources_are_read_in_place():
    data = bytearray(b"0123456789")
    source = Source.from_bytes(data, "m")
    assert isinstance(source, MemorySource) and source.view() is data
    assert source.read(3, 4) == b"3456" and source.head(4) == b"0123"
    window = source.slice(2, 5, name="w")
    assert window.read(0, 10) == b"23456" and window.slice(1, 2, name="ww").read(0, 9) == b"34"
    assert re.fullmatch(r"\d+", window.view()[0:5].decode())
