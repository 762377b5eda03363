"""The `airlock` command. `scan` and `convert` stay headless and never import Qt.

Everything that can stop the desktop app from starting is checked here, before Qt is imported, and
said in words with what to do: a mistyped command (`airlock dif a b` is not three files to open), a
missing file, a slim install without the GUI packages, no display at all (Qt would abort with
SIGABRT), and the one system library Qt's X11 plugin needs that distributions often leave out
(libxcb-cursor0).
"""

from __future__ import annotations

import difflib
import os
import sys

HEADLESS_COMMANDS = {"scan", "convert", "diff", "hash", "verify", "lock", "approve", "reject", "history",
                     "--version", "-h", "--help"}
GUI_COMMANDS = ("demo",)
EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv else ""
    if first in HEADLESS_COMMANDS:
        return _cli(argv)
    if first and not first.startswith("-") and first not in GUI_COMMANDS and not os.path.exists(first):
        commands = cli_commands()
        if first in commands:  # a command added to the CLI's parser
            return _cli(argv)
        return not_found(first, sorted(commands | set(GUI_COMMANDS)))
    return gui_main(argv)


def _cli(argv: list[str]) -> int:
    from airlock.core.cli import main as cli_main

    return cli_main(argv)


def cli_commands() -> set[str]:
    """The command-line's sub-commands, as its parser lists them (commands added there are known here)."""
    from airlock.core.cli import build_parser

    parser = build_parser(with_convert=False, with_provenance=False)
    for action in parser._actions:  # argparse keeps its sub-parsers there, by name
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            return set(choices)
    return {c for c in HEADLESS_COMMANDS if not c.startswith("-")}


def not_found(word: str, commands: list[str]) -> int:
    """The first word is no command and no file: a typo is far likelier than a file to open."""
    looks_like_path = os.sep in word or "." in word or (os.altsep is not None and os.altsep in word)
    if looks_like_path:
        print(f"airlock: no such file or folder: {word}", file=sys.stderr)
        return EXIT_USAGE
    close = difflib.get_close_matches(word, commands, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    print(f"airlock: unknown command '{word}'{hint}, and no file or folder of that name.\n"
          f"  commands: {', '.join(commands)}; or give files and folders to open in the desktop app "
          "(airlock --help)", file=sys.stderr)
    return EXIT_USAGE


# The desktop app's own dependencies (module, distribution). `pip install .` has them; a slim
# command-line install (README, requirements-cli.txt) does not, and `airlock scan` needs none.
GUI_PACKAGES = (("PySide6", "PySide6-Essentials"), ("matplotlib", "matplotlib"), ("fickling", "fickling"))


def missing_gui_packages() -> list[str]:
    import importlib.util

    missing = []
    for module, distribution in GUI_PACKAGES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: blocked in sys.modules
            found = False
        if not found:
            missing.append(distribution)
    return missing


# Qt's platform plugins that draw on a screen, and the one that needs none.
SCREEN_PLATFORMS = ("xcb", "wayland", "wayland-egl", "eglfs", "linuxfb", "vnc")
XCB_CURSOR = "libxcb-cursor.so.0"
# The system libraries Qt 6's X11 plugin loads that minimal installs leave out, with the Debian/Ubuntu and
# Fedora/RHEL packages that bring them. Qt names only libxcb-cursor0 whichever one is missing.
XCB_LIBRARIES = {
    XCB_CURSOR: ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
}


def qt_platform(environ: dict[str, str]) -> str:
    """The platform plugin Qt will pick on Linux: QT_QPA_PLATFORM's first choice, else by session."""
    chosen = environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen
    return "wayland" if environ.get("WAYLAND_DISPLAY") else "xcb"


def display_problem(environ: dict[str, str], platform: str = sys.platform,
                    libraries: dict[str, tuple[str, str]] | None = None) -> str | None:
    """Why Qt could not open a window here (it would abort the process), or None."""
    if not platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return None  # Windows and macOS always have their own platform plugin and a screen
    plugin = qt_platform(environ)
    headless = ("  To run without a screen: QT_QPA_PLATFORM=offscreen airlock --screenshot OUT.png FILE…\n"
                "  For a report on the terminal: airlock scan FILE…")
    if plugin in ("xcb", "wayland", "wayland-egl") and not environ.get("DISPLAY") \
            and not environ.get("WAYLAND_DISPLAY"):
        return f"no display to open a window on (DISPLAY and WAYLAND_DISPLAY are not set).\n{headless}"
    if plugin == "xcb":
        needed = XCB_LIBRARIES if libraries is None else libraries
        missing = [name for name in needed if not library_loads(name)]
        if missing:
            apt = " ".join(dict.fromkeys(needed[name][0] for name in missing))
            dnf = " ".join(dict.fromkeys(needed[name][1] for name in missing))
            return (f"Qt's X11 plugin needs system libraries that are not installed: {', '.join(missing)}.\n"
                    f"  Install them:\n    Debian/Ubuntu: sudo apt install {apt}\n"
                    f"    Fedora/RHEL: sudo dnf install {dnf}\n"
                    f"  (or start a Wayland session, or run headless: QT_QPA_PLATFORM=offscreen airlock "
                    "--screenshot OUT.png FILE…)")
    return None


def library_loads(name: str) -> bool:
    """Whether the dynamic loader finds `name` (as Qt's plugin will ask it to)."""
    import ctypes

    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def gui_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    missing = missing_gui_packages()
    if missing:
        names = " ".join(missing)
        print(f"airlock: the desktop app needs {', '.join(missing)}, which this installation lacks "
              f"(a command-line install).\n"
              f"  install: pip install {names}   (or the whole app: pip install model-airlock)\n"
              f"  without them: airlock scan PATH..., airlock convert FILE (see airlock --help)",
              file=sys.stderr)
        return EXIT_USAGE
    problem = display_problem(dict(os.environ)) if not any(a in ("-h", "--help") for a in argv) else None
    if problem is not None:
        print(f"airlock: cannot start the desktop app: {problem}", file=sys.stderr)
        return EXIT_USAGE
    from airlock.gui.app import main as app_main  # Qt is imported only here

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
