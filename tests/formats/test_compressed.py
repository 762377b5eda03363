"""gzip / bz2 / xz / lzma / zlib wrappers: decompressed with a cap, every member read, the rest reported."""

from __future__ import annotations

import bz2
import gzip
import lzma
import pickle
import tracemalloc
import zlib

import pytest
from fixtures.pickle_files import MARKER, call

from airlock.core.findings import Severity
from airlock.core.limits import Limits
from airlock.core.scan import scan_bytes

PAYLOAD = call("os", "system", MARKER)
BENIGN = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)


def _scan(data: bytes, name: str = "model.pkl.gz", limits: Limits | None = None):
    result = scan_bytes(data, name, limits=limits) if limits else scan_bytes(data, name)
    result.close()
    return result


@pytest.mark.parametrize("wrap", [gzip.compress, bz2.compress, lzma.compress, zlib.compress,
                                  lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE)],
                         ids=["gzip", "bz2", "xz", "zlib", "lzma"])
def test_wrapped_pickles_are_read(wrap) -> None:
    hostile = _scan(wrap(PAYLOAD))
    assert hostile.format == "compressed" and hostile.severity == Severity.CRITICAL
    assert any("os.system" in f.message for f in hostile.findings)
    benign = _scan(wrap(BENIGN))
    assert benign.severity < Severity.HIGH


def test_decompression_bomb_is_a_limit_finding_with_bounded_memory() -> None:
    bomb = zlib.compress(b"\x00" * (64 * 1024**2), 9)  # 64 MiB of zeros in ~64 KiB
    limits = Limits(max_decompressed_bytes=1024**2)
    tracemalloc.start()
    try:
        result = _scan(bomb, "bomb.z", limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any(f.rule == "AIR003" and "decompression bomb" in f.message for f in result.findings)
    assert result.severity == Severity.HIGH
    assert peak < 16 * 1024**2, peak


@pytest.mark.parametrize("wrap", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bz2", "xz"])
def test_every_member_is_read_like_the_stream_readers_do(wrap) -> None:
    data = wrap(BENIGN) + wrap(PAYLOAD)
    assert pickle.loads(gzip.decompress(data) if wrap is gzip.compress else
                        bz2.decompress(data) if wrap is bz2.compress else lzma.decompress(data)) \
        == pickle.loads(BENIGN)  # the stream readers join both members; load() reads the first pickle
    result = _scan(data)
    assert result.severity == Severity.CRITICAL


def test_a_pickle_split_across_gzip_members_is_whole() -> None:
    data = gzip.compress(PAYLOAD[:10]) + gzip.compress(PAYLOAD[10:])
    result = _scan(data)
    assert result.severity == Severity.CRITICAL
    assert not any(f.rule == "AIR002" for f in result.findings)


def test_bytes_after_the_compressed_data_are_reported_and_read() -> None:
    result = _scan(gzip.compress(BENIGN) + PAYLOAD)
    trailing = [f for f in result.findings if f.rule == "AIR008"]
    assert trailing and trailing[0].severity == Severity.LOW
    assert trailing[0].offset == len(gzip.compress(BENIGN))
    assert result.severity == Severity.CRITICAL  # the trailing bytes are a pickle, read as one


def test_gzip_zero_padding_is_not_trailing_data() -> None:
    result = _scan(gzip.compress(BENIGN) + b"\x00" * 512)
    assert not any(f.rule == "AIR008" for f in result.findings)
    assert result.severity < Severity.HIGH


def _readable_prefix(opener, data: bytes) -> bytes:
    """What a loader reading through the stdlib stream reader gets before the error."""
    import io

    out = bytearray()
    try:
        with opener(io.BytesIO(data)) as fh:
            while chunk := fh.read(1):
                out += chunk
    except (EOFError, OSError, zlib.error, lzma.LZMAError):
        pass
    return bytes(out)


@pytest.mark.parametrize(("wrap", "opener"), [(gzip.compress, gzip.open), (bz2.compress, bz2.open),
                                              (lzma.compress, lzma.open)], ids=["gzip", "bz2", "xz"])
def test_truncated_stream_is_malformed_and_what_the_reader_yields_is_still_read(wrap, opener) -> None:
    """gzip.open + pickle.load runs the REDUCE before the reader notices the stream is cut."""
    import random

    noise = random.Random(7).randbytes(20_000)  # incompressible, so the cut lands after the payload
    data = wrap(PAYLOAD + noise)[:-200]
    result = _scan(data)
    assert any(f.rule == "AIR002" and "truncated" in f.message for f in result.findings), result.findings
    loader_runs_payload = _readable_prefix(opener, data).startswith(PAYLOAD)
    assert loader_runs_payload == (opener is not bz2.open)  # bz2 yields nothing of a cut block
    if loader_runs_payload:
        assert any(f.rule == "PKL006" and "os.system" in f.message for f in result.findings)
        assert result.severity == Severity.CRITICAL
    else:
        assert result.severity == Severity.HIGH
