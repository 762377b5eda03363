"""core/scan.py: folder walks (unreadable folders are findings, `.git` is skipped) and scan_file."""

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from airlock.core.findings import Severity
from airlock.core.scan import iter_files, scan_file

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."
BENIGN = pickle.dumps({"lr": 0.1}, protocol=4)


def test_git_folders_are_not_walked(tmp_path):
    (tmp_path / "model.pkl").write_bytes(BENIGN)
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "ab12").write_bytes(b"x" * 100)
    (tmp_path / "sub" / ".git").mkdir(parents=True)
    (tmp_path / "sub" / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    (tmp_path / "sub" / ".gitattributes").write_bytes(b"*.bin filter=lfs\n")
    found = [display for display, _ in iter_files(str(tmp_path))]
    assert found == [str(tmp_path / "model.pkl"), str(tmp_path / "sub" / ".gitattributes")]


def test_a_folder_that_goes_away_during_the_walk_is_a_high_finding(tmp_path):
    """Root can list any folder, so this makes the listing fail another way: the folder is removed
    after its parent was listed and before the walk enters it."""
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.pkl").write_bytes(BENIGN)
    walk = iter_files(str(tmp_path))
    first = next(walk)
    assert first[0] == str(tmp_path / "a" / "x.pkl")
    shutil.rmtree(tmp_path / "b")
    rest = [display for display, _ in walk]
    assert rest == [str(tmp_path / "b"), str(tmp_path / "c" / "x.pkl")]
    result = scan_file(str(tmp_path / "b"))
    assert result.severity == Severity.HIGH
    assert [f.rule for f in result.findings] == ["AIR007"]


def test_a_listable_folder_given_to_scan_file_is_skipped_not_unreadable(tmp_path):
    result = scan_file(str(tmp_path))
    assert [f.rule for f in result.findings] == ["AIR006"]


def _without_root_overrides() -> None:
    """In the child before exec: drop the capabilities that let root read any folder
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the bounding set, so the scan runs as root that
    folder permissions bind. (Running it as `nobody` fails here: the interpreter lives under /root.)"""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux permissions and capabilities")
def test_an_unlistable_folder_is_a_high_entry_in_the_report():
    """Regression: a folder the scanning user cannot list was skipped silently, so a hostile pickle
    in it read "1 info", exit 0."""
    root = tempfile.mkdtemp(prefix="airlock-unlistable-")
    try:
        os.chmod(root, 0o755)
        with open(os.path.join(root, "ok.pkl"), "wb") as fh:
            fh.write(BENIGN)
        os.chmod(os.path.join(root, "ok.pkl"), 0o644)
        hidden = os.path.join(root, "hidden")
        os.mkdir(hidden)
        with open(os.path.join(hidden, "evil.pkl"), "wb") as fh:
            fh.write(EVIL)
        os.chmod(hidden, 0)
        proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "--format", "json", root],
                              capture_output=True, text=True, timeout=300,
                              preexec_fn=_without_root_overrides if os.geteuid() == 0 else None)
        assert proc.returncode == 1, proc.stderr[-2000:]
        entries = {entry["path"]: entry for entry in json.loads(proc.stdout)["files"]}
        assert set(entries) == {os.path.join(root, "ok.pkl"), hidden}
        assert entries[hidden]["severity"] == "high"
        assert [f["rule"] for f in entries[hidden]["findings"]] == ["AIR007"]
        assert "cannot list the folder" in entries[hidden]["findings"][0]["message"]
    finally:
        os.chmod(os.path.join(root, "hidden"), stat.S_IRWXU)
        shutil.rmtree(root, ignore_errors=True)
