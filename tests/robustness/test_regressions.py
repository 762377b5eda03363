"""Every crash the fuzzers found, as a test named after it (issue 9: "every crash becomes a
regression test"). A test marked xfail(strict) is a bug reported to the module's owner: it
turns into a failure the day the bug is fixed, so the marker gets removed then."""

from __future__ import annotations

import io

import pytest

from airlock.core.scan import scan_bytes


def npz_with_central_version(version: int) -> bytes:
    """A real np.savez archive whose central directory says "version needed to extract" = version."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3))
    data = bytearray(buf.getvalue())
    central = data.find(b"PK\x01\x02")
    data[central + 6] = version  # 115 reads as "11.5": zipfile raises NotImplementedError
    return bytes(data)


def test_npz_sniffer_zip_version_crash_does_not_kill_the_scan() -> None:
    """Found by test_mutated_seeds_of_each_format[npz]: numpy_npz.sniff_source let zipfile's
    NotImplementedError("zip file version 11.5") escape, and scan_bytes raised. core/scan.py now
    turns a failing sniffer into a `high` parser-failure finding and goes on."""
    result = scan_bytes(npz_with_central_version(115), "crafted.npz")
    try:
        crash = [f for f in result.findings if f.rule == "AIR001"]
        assert crash and "sniffer failed" in crash[0].message, [f.message for f in result.findings]
        assert result.severity.label == "high"
    finally:
        result.close()


@pytest.mark.xfail(strict=True, reason="reported: core/formats/numpy_npz.py sniff_source/open_zip should "
                   "catch NotImplementedError from zipfile (an unsupported zip version is 'not mine' or malformed)")
def test_npz_sniffer_handles_unsupported_zip_version() -> None:
    from airlock.core.formats import numpy_npz
    from airlock.core.source import Source

    numpy_npz.sniff_source(Source.from_bytes(npz_with_central_version(115), "crafted.npz"))
