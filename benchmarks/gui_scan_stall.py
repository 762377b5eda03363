"""The longest event-loop stall while the desktop app scans a large file (a GUI benchmark row).

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_scan_stall.py FILE [--switch-interval S]

Opens FILE in a fresh window and records the gap between the ticks of a 10 ms timer from the
moment the tab opens until the scan's results are shown: the longest gap is the longest the
window could not react. `--switch-interval` replaces the interval the app sets for its worker
threads (gui/workers.py), e.g. Python's default 0.005 as the row's baseline.
Prints one JSON line: {"max_gap": s, "scan_time": s, "ticks": n, "peak_mb": MB}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--switch-interval", type=float, default=None)
    args = parser.parse_args()

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from airlock.gui import workers
    from airlock.gui.main_window import MainWindow

    _app = QApplication([])  # kept referenced for the whole run
    window = MainWindow()
    window.show()
    workers.pool()  # the app's pool sets its switch interval; a baseline replaces it below
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

    gaps: list[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    window.all_scans_finished.connect(loop.quit)
    timer.start()
    started = last[0] = time.monotonic()
    window.open_paths([args.file])
    loop.exec()
    timer.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"max_gap": max(gaps, default=0.0), "scan_time": time.monotonic() - started,
                      "ticks": len(gaps), "peak_mb": peak_mb}))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
