"""core/progress.py: a progress line on stderr when it is a terminal (a real pty here), nothing on
pipes, with --quiet, or for a scan of one small file."""

import fcntl
import json
import os
import pickle
import select
import struct
import subprocess
import sys
import termios

import pytest

from airlock.core import progress as progress_module
from airlock.core.api import scan_paths

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")


@pytest.fixture
def folder(tmp_path):
    for i in range(6):
        (tmp_path / f"state_{i}.pkl").write_bytes(pickle.dumps({"step": i, "pad": b"x" * 2000}))
    return tmp_path


def run_with_terminal_stderr(*argv, sized=True):
    """`airlock scan …` with stderr on a pseudo-terminal and stdout on a pipe. `sized=False`: a terminal
    nobody gave a size (0x0, as `docker run -t` and some CI runners make)."""
    master, slave = os.openpty()
    env = dict(os.environ)
    if sized:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # as a terminal window sets it
        env["COLUMNS"] = "120"
    else:
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
    proc = subprocess.Popen([sys.executable, "-m", "airlock.core.cli", "scan", *argv],
                            stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    terminal = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer of the terminal has gone
                break
            if not chunk:
                break
            terminal += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(), out, terminal.decode(errors="replace")


def test_progress_on_a_terminal(folder):
    code, out, terminal = run_with_terminal_stderr("--format", "json", "--jobs", "1", str(folder))
    assert code == 0
    assert len(json.loads(out)["files"]) == 6  # stdout stays one clean document
    assert "/6 files" in terminal and "B" in terminal  # files done/total and bytes


def test_progress_on_a_terminal_that_reports_no_size(folder):
    """A 0x0 pty drew nothing: tqdm takes 0 rows for no room. It gets a fixed size instead."""
    code, out, terminal = run_with_terminal_stderr("--format", "json", "--jobs", "1", str(folder), sized=False)
    assert code == 0 and len(json.loads(out)["files"]) == 6
    assert "/6 files" in terminal and "B" in terminal


def test_quiet_means_nothing_on_the_terminal(folder):
    code, out, terminal = run_with_terminal_stderr("--format", "json", "--quiet", str(folder))
    assert code == 0 and len(json.loads(out)["files"]) == 6
    assert terminal == ""


def test_one_small_file_draws_nothing(folder):
    code, _, terminal = run_with_terminal_stderr("--format", "json", str(folder / "state_0.pkl"))
    assert code == 0 and terminal == ""


def test_nothing_on_a_pipe(folder):
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", "--format", "jsonl", str(folder)],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == b""
    assert len(proc.stdout.splitlines()) == 6


def test_the_line_shows_files_bytes_current_file_and_eta(folder):
    """Driven by a real scan, redrawn on every update (the CLI redraws at most every 0.1 s)."""
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w")
    try:
        display = progress_module.for_terminal(stream)
        assert display is not None

        class EveryUpdate:
            def found(self, *a):
                display.found(*a)
                if display._bar is not None:
                    display._bar.mininterval, display._bar.miniters = 0, 1

            def started(self, *a):
                display.started(*a)

            def finished(self, *a):
                display.finished(*a)

        names = [os.path.basename(r.path) for r in scan_paths([folder], observer=EveryUpdate())]
        shown = _drain(master)
        display.close()
    finally:
        stream.close()
        os.close(master)
    assert "6/6 files" in shown and "3/6 files" in shown
    assert any(name in shown for name in names[1:])  # the file being scanned
    assert "/11.9kB" in shown and "<00:" in shown  # bytes with a unit, elapsed<remaining (the ETA)


def test_no_display_when_quiet_or_not_a_terminal(tmp_path):
    with open(tmp_path / "log", "w") as fh:
        assert progress_module.for_terminal(fh) is None
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as stream:
        assert progress_module.for_terminal(stream, quiet=True) is None
    os.close(master)


def _drain(fd):
    data = bytearray()
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")
