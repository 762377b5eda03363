"""Start the desktop inspector: `airlock [FILE...]`, `airlock demo`, `airlock --screenshot OUT.png ...`."""

from __future__ import annotations

import argparse
import os
import sys
import time

from PySide6.QtCore import QCoreApplication, QObject, QTimer
from PySide6.QtWidgets import QApplication

from airlock.core import __version__
from airlock.gui import theme
from airlock.gui.main_window import MainWindow
from airlock.gui.workers import pool

SCREENSHOT_TIMEOUT_S = 120.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airlock", description="Look inside model files without loading them. "
        "`airlock scan|convert ...` run headless; see `airlock scan --help`.")
    parser.add_argument("paths", nargs="*", metavar="FILE",
                        help="files or folders to open ('demo' first writes and opens samples)")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="open the files, wait for the analysis, save the window as PNG and exit")
    parser.add_argument("--size", metavar="WxH", type=window_size,
                        help="window size in pixels, e.g. 2560x1440 (default 1280x800)")
    parser.add_argument("--theme", choices=(theme.SYSTEM, theme.LIGHT, theme.DARK), help="colour theme")
    parser.add_argument("--new-window", action="store_true",
                        help="open a separate window instead of adding the files to a running Airlock")
    return parser


def window_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 2560x1440, not {text!r}") from None
    if not (640 <= width <= 16384 and 480 <= height <= 16384):
        raise argparse.ArgumentTypeError(f"{text}: width 640–16384 and height 480–16384 pixels")
    return width, height


class Screenshot(QObject):
    """Waits until every scan and detail view is done, shows the worst finding, saves the window."""

    def __init__(self, window: MainWindow, out: str, *, timeout_s: float = SCREENSHOT_TIMEOUT_S) -> None:
        super().__init__(window)
        self.window, self.out = window, out
        self.deadline = time.monotonic() + timeout_s
        self.saved: bool | None = None
        self._stage = "scans"
        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._poll)

    def start(self) -> None:
        self._timer.start()

    def _poll(self) -> None:
        late = time.monotonic() > self.deadline
        # Showing the worst finding expands rows, which schedules a fit of the columns: saved before it,
        # the tree keeps Qt's default widths and Name is squeezed.
        settling = any(view.columns_pending() for view in self.window.views())
        if (pool().busy or settling) and not late:
            return
        if self._stage == "scans":
            self._show_worst()
            self._stage = "details"  # selecting a finding starts the decompiler / statistics workers
            return
        self._timer.stop()
        self.saved = self.save()
        QCoreApplication.exit(0 if self.saved and not late else 1)

    def _show_worst(self) -> None:
        views = self.window.views()
        if views:
            worst = max(views, key=lambda v: int(v.severity))
            self.window.tabs.setCurrentWidget(worst)
            worst.select_worst_finding()

    def save(self) -> bool:
        QApplication.processEvents()
        folder = os.path.dirname(os.path.abspath(self.out))
        os.makedirs(folder, exist_ok=True)
        return self.window.grab().save(self.out, "PNG")


def open_forwarded(window: MainWindow, paths: list[str]) -> None:
    """Files sent by a second `airlock FILE...`: open those that exist and bring the window up."""
    window.open_paths([p for p in paths if os.path.exists(p)])
    if window.isMinimized():
        window.showNormal()
    window.raise_()
    window.activateWindow()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    demo = bool(argv) and argv[0] == "demo"
    args = build_parser().parse_args(argv[1:] if demo else argv)
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:  # said before Qt starts: no window flashes up for a typo
        print(f"airlock: no such file or folder: {missing[0]}", file=sys.stderr)
        return 2
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication([sys.argv[0] if sys.argv else "airlock"])
    app.setOrganizationName("Airlock")
    app.setApplicationName("Airlock")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("airlock")  # matches packaging/linux/airlock.desktop (Wayland app id)
    app.setWindowIcon(theme.app_icon())
    theme.apply(args.theme, remember=False)  # --theme is for this run; View ▸ Theme is remembered

    paths = list(args.paths)
    if demo:
        from airlock.gui.demo import write_demo_files

        paths = write_demo_files() + paths
        print(f"airlock demo: sample files written to {os.path.dirname(paths[0])}", file=sys.stderr)

    server = None
    if not (args.screenshot or demo or args.new_window):
        from airlock.gui import single_instance

        server = single_instance.claim(paths)
        if server is None:
            print("airlock: handed to the Airlock window already running", file=sys.stderr)
            return 0

    window = MainWindow()
    if not args.screenshot:  # a screenshot shows the default layout, not this user's
        from airlock.gui.session import restore_window

        restore_window(window)
    if args.size:
        window.resize(*args.size)
    window.show()
    window.open_paths(paths)
    if server is not None:
        server.setParent(window)
        server.paths_received.connect(lambda received: open_forwarded(window, received))
    if args.screenshot:
        shot = Screenshot(window, args.screenshot)
        shot.start()
        code = app.exec()
        if shot.saved:
            print(f"airlock: screenshot saved to {args.screenshot}", file=sys.stderr)
        window.close()
        return int(code)
    return int(app.exec())
