"""7z archives made with py7zr, read by Airlock's own header parser and coders (never py7zr): members
decoded in bounded steps under the decompression budget, scanned like files; unsupported coders are
"not inspected", never clean."""

import os

import pytest
from fixtures import archive_files as af
from helpers import assert_corpus_verdict, long_pickle_member, rules, scan_with_peak

from airlock.core.findings import Severity
from airlock.core.formats import sevenz
from airlock.core.limits import DEFAULT_LIMITS
from airlock.core.scan import scan_bytes

SEVENZ_CASES = [c for c in af.corpus() if c[0].endswith(".7z")]


def scan(data, name="x.7z", **limits):
    result = scan_bytes(data, name, limits=DEFAULT_LIMITS.replace(**limits) if limits else DEFAULT_LIMITS)
    result.close()
    return result


@pytest.mark.parametrize("name,data,want", SEVENZ_CASES, ids=[c[0] for c in SEVENZ_CASES])
def test_corpus(name, data, want):
    result = scan(data, name)
    assert result.format == "7z"
    assert_corpus_verdict(result, want)


def test_members_are_decoded_exactly():
    """Every coder chain py7zr writes by default and on request gives back the bytes it was given."""
    import lzma

    members = {"a/one.txt": b"hello 7z\n" * 50, "b.bin": os.urandom(3000), "empty.txt": b""}
    for filters in (None, [{"id": lzma.FILTER_LZMA1}], [{"id": lzma.FILTER_DELTA}, {"id": lzma.FILTER_LZMA2}],
                    [{"id": af._py7zr("FILTER_BZIP2")}], [{"id": af._py7zr("FILTER_DEFLATE")}]):
        data = af.sevenz(members, filters)
        from airlock.core.context import ScanContext
        from airlock.core.source import Source

        source = Source.from_bytes(data, "x.7z")
        ctx = ScanContext()
        streams, entries = sevenz.read_archive(source, ctx)
        assert streams is not None
        names = [e.name for e in entries]
        assert set(names) >= {"a/one.txt", "b.bin", "empty.txt"}
        decoder = sevenz.FolderDecoder(source, streams, 0, ctx)
        sizes = streams.substreams[0]
        with_data = [e for e in entries if e.has_stream]
        for entry, (size, crc) in zip(with_data, sizes, strict=True):
            got = decoder.read(size)
            assert got == members[entry.name], (filters, entry.name)


def test_encrypted_and_ppmd_members_are_not_inspected_never_clean():
    for data in (af.sevenz({"payload.pkl": af.SYSTEM_PICKLE}, password="pw"),
                 af.sevenz({"payload.pkl": af.SYSTEM_PICKLE}, [{"id": af._py7zr("FILTER_PPMD")}])):
        result = scan(data)
        hit = [f for f in result.findings if f.rule == "SZ001"]
        assert hit and "payload.pkl" in hit[0].message
        assert result.severity == Severity.MEDIUM
        assert result.inspected == "partial"


def test_torch_checkpoint_folder_in_7z():
    result = scan(af.sevenz(af.torch_checkpoint()), "ckpt.7z")
    assert result.severity < Severity.MEDIUM, [(f.rule, f.message) for f in result.findings]
    assert any(n.attrs.get("storage") for n in result.root.walk())
    pickled = [n for n in result.root.walk() if n.attrs.get("format") == "pickle"]
    assert pickled  # data.pkl judged by the pickle machine
    hostile = scan(af.sevenz(af.torch_checkpoint(af.SYSTEM_PICKLE)), "ckpt.7z")
    assert hostile.severity == Severity.CRITICAL


def test_bomb_stops_at_the_budget():
    data = af.sevenz({"zeros.bin": b"\0" * 8_000_000, "payload.pkl": af.SYSTEM_PICKLE})
    assert len(data) < 10_000
    result = scan_bytes(data, "bomb.7z", limits=DEFAULT_LIMITS.replace(max_decompressed_bytes=1_000_000))
    try:
        limit = [f for f in result.findings if f.rule == "AIR003"]
        assert limit and "not inspected further" in limit[0].message
        assert result.severity >= Severity.HIGH
    finally:
        result.close()


def test_a_long_member_is_streamed_not_kept(monkeypatch):
    """py7zr hands out 128 MB chunks, and Airlock once kept each member whole (a 1 GiB member of zeros:
    2.1 GB resident). Past IN_MEMORY_BYTES a member keeps its head and tail; the parsers still read it
    all (the call at its end), the members after it in the same folder too, CRCs still checked."""
    import lzma

    from airlock.core import decompress

    monkeypatch.setattr(decompress, "IN_MEMORY_BYTES", 1 << 20)
    stream = long_pickle_member(af.SYSTEM_PICKLE)

    # LZMA2 with a 1 MiB dictionary: the decoders' own memory is their dictionary (two of them, the first
    # pass and the read past the head), which 7-Zip's presets make 16-64 MiB.
    data = af.sevenz({"a/long.pkl": stream, "b/payload.pkl": af.SYSTEM_PICKLE},
                     [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}])
    result, peak = scan_with_peak(data, "long.7z")
    try:
        calls = [f for f in result.findings if f.rule == "PKL006"]
        assert {f.member for f in calls} == {"a/long.pkl", "b/payload.pkl"}, result.findings
        assert not [f for f in result.findings if f.rule == "AIR002"]  # CRCs agree
        # Held: the head, the tail, a chunk or two and the decoders' dictionaries; never the member.
        assert peak < 16 << 20, f"{peak:,} bytes allocated for a {len(stream):,}-byte member"
        assert result.inspected == "full"
    finally:
        result.close()

    broken = bytearray(data)
    broken[len(broken) // 3] ^= 0xFF  # inside the packed stream: corrupt LZMA data or a CRC mismatch
    result = scan_bytes(bytes(broken), "long.7z")
    try:
        assert result.severity >= Severity.HIGH and result.inspected == "partial"
    finally:
        result.close()


def test_lzma_dictionary_is_capped_by_what_the_folder_holds():
    from airlock.core.formats import sevenz_header as h

    coder = h.Coder(b"\x21", 1, 1, bytes([40]))  # LZMA2 declaring a 4 GiB dictionary
    spec = sevenz._lzma_filter(coder, 1000, "LZMA2")
    assert spec["dict_size"] == 4096


def test_crc_mismatch_is_malformed():
    data = bytearray(af.sevenz({"a.txt": b"plain text member\n" * 10}, [{"id": af._py7zr("FILTER_COPY")}]))
    pos = data.find(b"plain text member")
    data[pos] ^= 0x20
    result = scan(bytes(data))
    assert any(f.rule == "AIR002" and "CRC" in f.message for f in result.findings), result.findings


def test_symlink_out_of_the_archive(tmp_path):
    import py7zr

    (tmp_path / "link").symlink_to("/etc/passwd")
    out = tmp_path / "links.7z"
    with py7zr.SevenZipFile(out, "w") as archive:
        archive.write(tmp_path / "link", "weights/link")
    result = scan(out.read_bytes())
    assert any(f.rule == "TAR001" and "/etc/passwd" in f.message for f in result.findings), result.findings


def test_escaping_name():
    result = scan(af.sevenz_renamed({"XX/XX/.bashrc": b"echo hi\n", "ok.txt": b"fine"},
                                    {"XX/XX/.bashrc": "../../.bashrc"}))
    assert any(f.rule == "TAR001" and "../../.bashrc" in f.message for f in result.findings), result.findings


@pytest.mark.parametrize("cut", [6, 20, 31, 32, 60, 150, -10, -1])
def test_truncated_archives_are_findings_not_crashes(cut):
    data = af.sevenz({"payload.pkl": af.SYSTEM_PICKLE, "b.txt": b"x" * 300})
    result = scan(data[:cut])
    assert "AIR001" not in rules(result), result.findings
    assert result.severity >= Severity.HIGH or result.format != "7z"


def test_random_corruption_never_crashes():
    import random

    data = af.sevenz({"payload.pkl": af.SYSTEM_PICKLE, "b.txt": b"x" * 300})
    rng = random.Random(7)
    for _ in range(150):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        result = scan(bytes(buf))
        assert "AIR001" not in rules(result), result.findings
