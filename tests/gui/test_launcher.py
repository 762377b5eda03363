"""What stops the desktop app from starting is said in words, before Qt: typos, missing files, no display,
a missing libxcb-cursor0. And `airlock --help` tells about the desktop app."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.launcher import XCB_CURSOR, XCB_LIBRARIES, display_problem, library_loads, qt_platform


def run(args, env=None, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "airlock.gui.launcher", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or os.environ.copy(), cwd=cwd)


def bare_env(**extra):
    """No display at all, as in an SSH session or a container."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return {**env, **extra}


def test_a_mistyped_command_is_an_unknown_command_with_the_closest_match(tmp_path):
    proc = run(["scna", "x", "y"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown command 'scna' (did you mean 'scan'?)" in proc.stderr
    proc = run(["dif", "x", "y"], cwd=tmp_path)  # the example: no window opens on files named dif, x, y
    assert proc.returncode == 2 and "unknown command 'dif'" in proc.stderr and "commands:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_missing_file_is_said_before_qt_starts(tmp_path):
    proc = run(["model.bin"], env=bare_env(), cwd=tmp_path)  # even without a display
    assert proc.returncode == 2 and "no such file or folder: model.bin" in proc.stderr
    there = tmp_path / "there.pkl"
    there.write_bytes(hostile_pickle_bytes())
    proc = run(["--screenshot", str(tmp_path / "x.png"), str(there), str(tmp_path / "gone.pt")],
               env=bare_env(QT_QPA_PLATFORM="offscreen"))
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr and "gone.pt" in proc.stderr


def test_no_display_is_a_clear_message_not_sigabrt(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(hostile_pickle_bytes())
    proc = run([str(path)], env=bare_env())
    assert proc.returncode == 2, (proc.returncode, proc.stderr)  # not -SIGABRT / 134
    assert "no display" in proc.stderr
    assert "QT_QPA_PLATFORM=offscreen airlock --screenshot OUT.png" in proc.stderr
    assert "airlock scan" in proc.stderr and "Traceback" not in proc.stderr


def test_platform_choice_and_display_checks():
    assert qt_platform({}) == "xcb"
    assert qt_platform({"WAYLAND_DISPLAY": "wayland-0"}) == "wayland"
    assert qt_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert qt_platform({"QT_QPA_PLATFORM": "wayland;xcb"}) == "wayland"
    assert display_problem({}, "linux") is not None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({}, "win32") is None and display_problem({}, "darwin") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None


def test_a_missing_libxcb_cursor_names_the_package_to_install():
    # The real loader, asked for a library that is not there (as libxcb-cursor.so.0 is on a bare system).
    missing = "libairlock-no-such-library.so.0"
    assert not library_loads(missing)
    problem = display_problem({"DISPLAY": ":0"}, "linux", {missing: XCB_LIBRARIES[XCB_CURSOR]})
    assert problem is not None and missing in problem
    assert "sudo apt install libxcb-cursor0" in problem and "sudo dnf install xcb-util-cursor" in problem
    # This machine as it is: exactly the libraries its loader cannot find are named.
    absent = [name for name in XCB_LIBRARIES if not library_loads(name)]
    problem = display_problem({"DISPLAY": ":0"}, "linux")
    assert (problem is None) == (not absent)
    for name in absent:
        assert name in problem and XCB_LIBRARIES[name][0] in problem


def test_help_tells_about_the_desktop_app():
    proc = run(["--help"])
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "desktop app" in text and "airlock demo" in text and "--screenshot OUT.png" in text
    assert "QT_QPA_PLATFORM=offscreen" in text


@pytest.fixture
def xvfb():
    """A real X server (Debian's xvfb), so the xcb plugin is what starts."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    display = f":{os.getpid() % 400 + 100}"
    proc = subprocess.Popen([binary, display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket = f"/tmp/.X11-unix/X{display[1:]}"
    deadline = time.monotonic() + 20
    while not os.path.exists(socket) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    yield display
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def test_a_real_x_session_starts_through_the_xcb_plugin(tmp_path, xvfb):
    path = tmp_path / "m.pkl"
    path.write_bytes(hostile_pickle_bytes())
    out = tmp_path / "x11.png"
    env = bare_env(DISPLAY=xvfb, XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = run(["--screenshot", str(out), "--new-window", str(path)], env=env, timeout=180)
    absent = [name for name in XCB_LIBRARIES if not library_loads(name)]
    if absent:  # what a user of this machine would see: the packages to install, never SIGABRT
        assert proc.returncode == 2 and all(name in proc.stderr for name in absent), proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 10_000
