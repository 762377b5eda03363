"""SHA-256 and git blob SHA-1 of files; `airlock hash` lines that the real `sha256sum -c` accepts."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airlock.core.cli import main
from airlock.core.provenance import hashing, manifest


def test_sha256_matches_hashlib_across_chunk_boundaries(tmp_path):
    data = os.urandom(hashing.CHUNK * 2 + 12345)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    seen = []
    digest, size = hashing.sha256_file(str(path), progress=seen.append)
    assert digest == hashlib.sha256(data).hexdigest() and size == len(data)
    assert sum(seen) == len(data) and len(seen) == 3  # read in CHUNK pieces into one buffer


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed: nothing to compare with")
def test_git_blob_sha1_is_what_git_computes(tmp_path):
    for name, data in (("empty", b""), ("text", b"hello\n"), ("bytes", os.urandom(70000))):
        path = tmp_path / name
        path.write_bytes(data)
        expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                                  check=True).stdout.strip()
        assert hashing.git_blob_sha1(str(path))[0] == expected


def test_parallel_results_keep_the_callers_order(tmp_path):
    paths = []
    for i in range(9):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(1000 * (9 - i)))
        paths.append(str(p))
    paths.append(str(tmp_path / "missing"))
    results = list(hashing.hash_files(paths, jobs=4))
    assert [r.path for r in results] == paths
    for r in results[:-1]:
        assert r.sha256 == hashlib.sha256(Path(r.path).read_bytes()).hexdigest()
    assert results[-1].sha256 is None and results[-1].error


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="GNU sha256sum is not installed")
def test_hash_lines_are_accepted_by_sha256sum(tmp_path, capsysbinary):
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    names = ["model.safetensors", "sub/config.json", "back\\slash.bin", "new\nline.bin", "sp ace ü.bin"]
    if sys.platform.startswith("linux"):
        names.append(os.fsdecode(b"raw\xff.bin"))  # not UTF-8
    for i, name in enumerate(names):
        (folder / name).write_bytes(os.urandom(100 + i))
    for flags in ([], ["--binary"]):
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            code = main(["hash", *flags, "--jobs", "3", "m"])
        finally:
            os.chdir(cwd)
        out = capsysbinary.readouterr().out
        assert code == 0
        assert out.count(b"\n") == len(names)  # the name with a newline is escaped, not split
        (tmp_path / "SUMS").write_bytes(out)
        check = subprocess.run(["sha256sum", "-c", "--strict", "SUMS"], cwd=tmp_path, capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.count(b": OK") == len(names)
        # And our own reader reads back what sha256sum reads.
        entries = manifest.parse(out, "SUMS")
        assert sorted(e.name for e in entries) == sorted(os.fsencode(os.path.join("m", n)) for n in names)
        assert {e.binary for e in entries} == {bool(flags)}


def test_hash_of_a_missing_path_exits_2(tmp_path, capsys):
    assert main(["hash", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_progress_on_request_goes_to_stderr(tmp_path, capsysbinary):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    assert main(["hash", "--progress", "always", str(tmp_path / "a")]) == 0
    captured = capsysbinary.readouterr()
    assert b"hashing:" in captured.err and b"hashing" not in captured.out
    assert b"[" + b"#" * 30 + b"] 100%" in captured.err  # a bar, filled at the end


def test_manifest_reader_takes_text_binary_bsd_and_escaped_lines():
    digest = "a" * 64
    data = (f"{digest}  plain.bin\n{digest} *binary.bin\nSHA256 (bsd.bin) = {digest}\n"
            f"\\{digest}  new\\nline\\\\x\n\n").encode()
    entries = manifest.parse(data, "SUMS")
    assert [(e.name, e.binary, e.line) for e in entries] == [
        (b"plain.bin", False, 1), (b"binary.bin", True, 2), (b"bsd.bin", True, 3), (b"new\nline\\x", False, 4)]


@pytest.mark.parametrize("line", [b"not a hash  file", b"abc  short.bin", b"a" * 64 + b"file-without-space"])
def test_manifest_line_that_does_not_parse_names_the_line(line):
    with pytest.raises(manifest.ManifestError) as exc:
        manifest.parse(b"b" * 64 + b"  fine.bin\n" + line + b"\n", "SHA256SUMS")
    assert "SHA256SUMS, line 2" in str(exc.value)
