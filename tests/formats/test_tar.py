"""Generic tar archives (plain, gzip, bz2, xz) read with tarfile: members scanned like files, extraction
hazards flagged, budgets held; torch's legacy tar keeps its own reader."""

import gzip
import io
import shutil
import tarfile

import pytest
from fixtures import archive_files as af
from helpers import assert_corpus_verdict, long_pickle_member, rules, scan_with_peak

from airlock.core.findings import Severity
from airlock.core.formats import tar as tar_format
from airlock.core.limits import DEFAULT_LIMITS
from airlock.core.scan import scan_bytes, scan_file

TAR_CASES = [c for c in af.corpus() if ".tar" in c[0]]


def scan(data, name="x.tar", **limits):
    result = scan_bytes(data, name, limits=DEFAULT_LIMITS.replace(**limits) if limits else DEFAULT_LIMITS)
    result.close()
    return result


@pytest.mark.parametrize("name,data,want", TAR_CASES, ids=[c[0] for c in TAR_CASES])
def test_corpus(name, data, want):
    result = scan(data, name)
    assert_corpus_verdict(result, want)


@pytest.mark.parametrize("mode,kind", [("w", None), ("w:gz", "gzip"), ("w:bz2", "bz2"), ("w:xz", "xz")])
def test_a_tar_of_an_os_system_pickle_is_critical_by_content(mode, kind):
    data = af.tar({"weights/payload.pkl": af.SYSTEM_PICKLE, "weights/notes.txt": b"hi\n"}, mode)
    result = scan(data, "renamed.dat")  # the name does not decide
    assert result.format == "tar"
    assert result.root.attrs.get("compression") == kind
    assert result.severity == Severity.CRITICAL
    hit = next(f for f in result.findings if f.rule == "PKL006")
    assert hit.member == "weights/payload.pkl" and "os.system" in hit.message
    assert result.inspected == "full"


def test_cli_exit_code_for_a_hostile_tar(tmp_path):
    from airlock.core.cli import main

    (tmp_path / "model.tar.gz").write_bytes(af.tar({"payload.pkl": af.SYSTEM_PICKLE}, "w:gz"))
    assert main(["scan", "--format", "json", str(tmp_path / "model.tar.gz")]) == 1


def test_extraction_hazards():
    data = af.tar({"../outside.txt": b"x", "/abs.txt": b"y", "link/inner.txt": b"z", "dup": b"1",
                   "dup ": b"2"}, links={"link": (tarfile.SYMTYPE, "/etc"), "ok_link": (tarfile.SYMTYPE, "dup"),
                                         "hard": (tarfile.LNKTYPE, "../../etc/shadow"),
                                         "fifo": (tarfile.FIFOTYPE, ""), "dev": (tarfile.CHRTYPE, "")})
    result = scan(data)
    messages = {f.message for f in result.findings if f.rule == "TAR001"}
    assert any("'../outside.txt'" in m for m in messages)
    assert any("'/abs.txt'" in m for m in messages)
    assert any("symbolic link 'link'" in m and "'/etc'" in m for m in messages)
    assert any("hard link 'hard'" in m for m in messages)
    assert not any("ok_link" in m for m in messages)  # a link to a member inside is fine
    specials = [f.message for f in result.findings if f.rule == "TAR002"]
    assert len(specials) == 2 and any("FIFO" in m for m in specials)
    assert result.severity == Severity.HIGH


def test_a_member_written_through_an_earlier_symlink_is_an_escape():
    data = af.tar({"cfg/passwd": b"root::0:0\n"}, links={"cfg": (tarfile.SYMTYPE, "../../etc")})
    # tarfile writes the link first when it is added first: build that order by hand.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        link = tarfile.TarInfo("cfg")
        link.type, link.linkname = tarfile.SYMTYPE, "safe_dir"
        archive.addfile(link)
        info = tarfile.TarInfo("cfg/passwd")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
    result = scan(buf.getvalue())
    assert any(f.rule == "TAR001" and "through the symbolic link 'cfg'" in f.message for f in result.findings)
    assert scan(data).severity == Severity.HIGH


def test_duplicate_names_are_reported_and_both_copies_scanned():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for payload in (b"benign\n", af.SYSTEM_PICKLE):
            info = tarfile.TarInfo("model.pkl")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    result = scan(buf.getvalue())
    assert "TAR003" in rules(result)
    assert result.severity == Severity.CRITICAL  # the second copy, the one extraction keeps


def test_torch_legacy_tar_keeps_its_reader():
    from fixtures import torch_files

    data = torch_files.legacy_tar([1.0, 2.0, 3.0])
    assert tar_format.sniff_source(_source(data)) == 0
    result = scan(data, "old.pt")
    assert result.format == "torch_legacy"
    assert result.severity < Severity.MEDIUM, [(f.rule, f.message) for f in result.findings]
    # Compressed, it is still torch's legacy tar once the gzip wrapper is opened.
    assert any(n.attrs.get("format") == "torch_legacy" for n in scan(gzip.compress(data), "old.pt.gz").root.walk())


def _source(data):
    from airlock.core.source import Source

    return Source.from_bytes(data, "x")


def test_member_over_the_budget_is_not_inspected_further_and_the_rest_are_scanned():
    data = af.tar({"big.bin": bytes(range(256)) * 1200, "payload.pkl": af.SYSTEM_PICKLE}, "w:gz")
    result = scan(data, max_decompressed_bytes=200_000)
    limit = [f for f in result.findings if f.rule == "AIR003"]
    assert limit and "big.bin" in limit[0].message and "not inspected further" in limit[0].message
    # Reaching the next member means decompressing past this one: the budget ends the walk there.
    assert result.severity >= Severity.HIGH
    assert result.inspected == "partial"


def test_a_plain_archive_is_scanned_in_place_whatever_the_size_of_its_members():
    """A plain tar's members are bytes of the file, not decompressed: a model zoo's .tar of a checkpoint
    larger than the decompression budget is still read, in place, and nothing is charged for it."""
    from airlock.core.context import ScanContext
    from airlock.core.source import Source

    big = b"\x80\x04" + (b"\x8e" + (300_000).to_bytes(8, "little") + bytes(300_000) + b"0") + af.SYSTEM_PICKLE[2:]
    data = af.tar({"model/big.pkl": big, "model/payload.pkl": af.SYSTEM_PICKLE})
    ctx = ScanContext(DEFAULT_LIMITS.replace(max_decompressed_bytes=10_000))
    root = tar_format.parse(Source.from_bytes(data, "zoo.tar"), ctx)
    assert not [f for f in ctx.findings if f.rule == "AIR003"]
    assert sum(f.rule == "PKL006" for f in ctx.findings) == 2  # the call at the end of the big member too
    assert ctx.decompressed_bytes == 0
    member = next(n for n in root.walk() if n.label == "model/big.pkl")
    assert member.attrs["size"] == len(big)


@pytest.mark.parametrize("mode", ["w:gz", "w:xz"])
def test_a_long_compressed_member_is_streamed_not_kept(mode, monkeypatch):
    """Past IN_MEMORY_BYTES a member of a compressed tar keeps its head and tail only (py7zr-style whole
    members once took twice their size in memory); the parsers still read all of it."""
    from airlock.core import decompress

    monkeypatch.setattr(decompress, "IN_MEMORY_BYTES", 1 << 20)
    stream = long_pickle_member(af.SYSTEM_PICKLE)
    data = af.tar({"a/long.pkl": stream, "b/payload.pkl": af.SYSTEM_PICKLE}, mode)
    result, peak = scan_with_peak(data, "long.tar")
    try:
        calls = [f for f in result.findings if f.rule == "PKL006"]
        assert {f.member for f in calls} == {"a/long.pkl", "b/payload.pkl"}, result.findings
        # Held: the head, the tail, a chunk or two, and the decoders' own state (xz's 8 MiB dictionary,
        # once for the first pass and once for the read that goes on past the head); never the member.
        assert peak < (10 << 20 if mode == "w:gz" else 26 << 20), \
            f"{peak:,} bytes allocated for a {len(stream):,}-byte member"
        assert result.inspected == "full"
    finally:
        result.close()


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar writes sparse members; tarfile cannot")
def test_a_long_sparse_member_of_a_plain_archive_is_read_through_tarfile(tmp_path, monkeypatch):
    """GNU sparse members hold holes, not bytes in place: read through tarfile (its holes are zeros), and
    again through a fresh tarfile when a parser goes past the kept head."""
    import subprocess

    from airlock.core import decompress

    monkeypatch.setattr(decompress, "IN_MEMORY_BYTES", 1 << 20)
    n = 3_000_000
    with open(tmp_path / "holey.pkl", "wb") as fh:  # 3 MB of hole, the call, 2 MB of hole: past head and tail
        fh.write(b"\x80\x04\x8e" + n.to_bytes(8, "little"))  # BINBYTES8 of n zero bytes
        fh.seek(11 + n)
        fh.write(b"0" + af.SYSTEM_PICKLE[2:-1] + b"\x8e" + (2 * n // 3).to_bytes(8, "little"))  # POP, call
        fh.seek(2 * n // 3, 1)
        fh.write(b"0.")  # POP, STOP
    subprocess.run(["tar", "--sparse", "--format=gnu", "-cf", "sparse.tar", "holey.pkl"], cwd=tmp_path,
                   check=True, timeout=60)
    data = (tmp_path / "sparse.tar").read_bytes()
    assert len(data) < n  # the hole is not stored
    result = scan_bytes(data, "sparse.tar")
    try:
        assert any(f.rule == "PKL006" and f.member == "holey.pkl" for f in result.findings), result.findings
    finally:
        result.close()


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz"])
def test_compressed_bomb_stops_at_the_budget(mode):
    data = af.tar({"zeros.bin": b"\0" * 4_000_000, "payload.pkl": af.SYSTEM_PICKLE}, mode)
    cap = 500_000
    result = scan_bytes(data, "bomb.tar", limits=DEFAULT_LIMITS.replace(max_decompressed_bytes=cap))
    try:
        assert result.severity >= Severity.HIGH
        assert any(f.rule == "AIR003" for f in result.findings), result.findings
        assert result.inspected == "partial"
    finally:
        result.close()


def test_decompressed_bytes_are_charged_once_and_bounded():
    from airlock.core.context import ScanContext
    from airlock.core.source import Source

    data = af.tar({"a.bin": bytes(range(256)) * 4000}, "w:gz")
    ctx = ScanContext(DEFAULT_LIMITS.replace(max_decompressed_bytes=10_000_000))
    reader = tar_format.DecompressingReader(Source.from_bytes(data, "x"), "gzip", ctx)
    out = b""
    while chunk := reader.read(7777):
        assert len(chunk) <= 7777  # never more than asked: a bomb cannot expand in one step
        out += chunk
    assert out == gzip.decompress(data)
    assert ctx.decompressed_bytes == len(out)


def test_bytes_after_the_archive_are_reported_and_read():
    data = af.tar({"a.txt": b"a"}) + af.SYSTEM_PICKLE
    result = scan(data)
    trailing = [f for f in result.findings if f.rule == "AIR008"]
    assert trailing and "pickle" in trailing[0].message
    assert result.severity == Severity.CRITICAL


def test_truncated_tar_is_malformed():
    data = af.tar({"weights.bin": b"w" * 5000, "payload.pkl": af.SYSTEM_PICKLE})
    result = scan(data[:3000])
    assert result.severity >= Severity.HIGH
    assert any("truncated" in f.message or "malformed" in f.message for f in result.findings)


def test_tar_of_a_torch_checkpoint_folder_keeps_storages_as_data():
    members = {f"ckpt/{k}": v for k, v in af.torch_checkpoint().items()}
    result = scan(af.tar(members, "w:gz"), "ckpt.tgz")
    storages = [n for n in result.root.walk() if n.attrs.get("storage")]
    assert storages
    assert result.severity < Severity.MEDIUM, [(f.rule, f.message) for f in result.findings]


def test_scan_writes_no_files_and_reads_from_disk(tmp_path):
    path = tmp_path / "m.tar"
    path.write_bytes(af.tar({"payload.pkl": af.SYSTEM_PICKLE}))
    before = sorted(tmp_path.iterdir())
    result = scan_file(path)
    try:
        assert result.severity == Severity.CRITICAL
    finally:
        result.close()
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("cut", [1, 100, 511, 512, 700, 1500])
def test_odd_input_never_raises(cut):
    data = af.tar({"payload.pkl": af.SYSTEM_PICKLE}, "w:gz")
    for piece in (data[:cut], af.tar({"a": b"x" * 2000})[:cut]):
        result = scan(piece, "x.tar.gz")
        assert "AIR001" not in rules(result), result.findings
