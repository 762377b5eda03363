"""Every crash the fuzzers found, as a test named after it (issue 9: "every crash becomes a
regression test"). A test marked xfail(strict) is a bug reported to the module's owner: it
turns into a failure the day the bug is fixed, so the marker gets removed then."""

from __future__ import annotations

import io
import pickle

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


def test_a_failing_sniffer_is_a_finding_not_a_dead_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth for the npz crash above: core/scan.py turns any sniffer's exception into a
    `high` parser-failure finding and goes on with the other formats."""
    import types

    from airlock.core import formats

    broken = types.SimpleNamespace(NAME="broken", EXTENSIONS=(), sniff=lambda head, size: 1 // 0)
    monkeypatch.setattr(formats, "_loaded", [broken, *formats.load_all_modules()])
    result = scan_bytes(pickle.dumps({"a": 1}, protocol=2), "x.pkl")
    try:
        assert result.format == "pickle"
        crash = [f for f in result.findings if f.rule == "AIR001"]
        assert crash and crash[0].message.startswith("broken sniffer failed: ZeroDivisionError"), crash
    finally:
        result.close()
