"""Every crash the fuzzers found, as a test named after it (issue 9: "every crash becomes a
regression test"). A test marked xfail(strict) is a bug reported to the module's owner: it
turns into a failure the day the bug is fixed, so the marker gets removed then."""

from __future__ import annotations

import io

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
    NotImplementedError("zip file version 11.5") escape, and scan_bytes raised. The npz sniffer
    now declines what zipfile (numpy.load's reader) refuses; the file is still read as a zip."""
    result = scan_bytes(npz_with_central_version(115), "crafted.npz")
    try:
        assert not [f for f in result.findings if f.rule == "AIR001"], [f.message for f in result.findings]
        assert result.format == "zip"
        assert any(n.label.endswith(".npy") for n in result.root.walk())
    finally:
        result.close()


def test_npz_sniffer_handles_unsupported_zip_version() -> None:
    from airlock.core.formats import numpy_npz
    from airlock.core.source import Source

    assert numpy_npz.sniff_source(Source.from_bytes(npz_with_central_version(115), "crafted.npz")) == 0
