"""A typist for the GUI benchmark row: open FILE, type TEXT into the search box, record event-loop stalls.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_typist.py FILE [--text chat_template] [--ms 30]
        [--mode airlock|floor|sync]

A 2 ms timer records the gap between its ticks while a second timer types one character every
`--ms` ms; after the last key it waits for the search to finish (its results shown). The longest gap
is the longest the window could not react to the user. Modes:
  airlock  the app as it is: debounced, searched in a worker, results shown incrementally;
  floor    the same typing with the search switched off (the event loop's own noise);
  sync     every keystroke filters on the GUI thread, node by node over the whole tree (lazy lists
           built), then shows the results: what the window did before issue 19 (seconds per key).
Prints one JSON line: {"max_gap": s, "over_50ms": n, "results_after": s, "found": n, "peak_mb": MB}.
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
    parser.add_argument("--text", default="chat_template")
    parser.add_argument("--ms", type=int, default=30)
    parser.add_argument("--mode", choices=("airlock", "floor", "sync"), default="airlock")
    args = parser.parse_args()

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from airlock.gui.main_window import MainWindow

    app = QApplication([])
    window = MainWindow()
    window.show()
    loop = QEventLoop()
    window.all_scans_finished.connect(loop.quit)
    (view,) = window.open_paths([args.file])
    loop.exec()
    app.processEvents()

    if args.mode != "airlock":
        window.search.textChanged.disconnect(window._search_changed)
    if args.mode == "sync":
        from airlock.core.search import matches, normalise

        def search_now(text: str) -> None:
            if view.result is None:
                return
            needle = normalise(text)  # on the GUI thread, every node built and tested
            paths = [tuple(n.index_path()) for n in view.result.root.walk(expand_lazy=True) if matches(n, needle)]
            view._stop_search()
            view.filter_text = text.strip()
            view._start_search()  # the view part: a results model...
            view._stop_search()  # ...filled here, not by the worker
            view.search_done = True
            if view.results is not None:
                view.results.add_paths(paths[:2_000])

        window.search.textChanged.connect(search_now)

    gaps: list[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    ticker = QTimer()
    ticker.setInterval(2)
    ticker.timeout.connect(tick)
    typed = [0]
    first_key = [0.0]
    typist = QTimer()
    typist.setInterval(args.ms)

    def type_one() -> None:
        if typed[0] == 0:
            first_key[0] = time.monotonic()
        typed[0] += 1
        window.search.setText(args.text[: typed[0]])  # what one more key does to the box
        if typed[0] >= len(args.text):
            typist.stop()
            QTimer.singleShot(50, wait_done)

    done_at = [0.0]

    def wait_done() -> None:
        busy = args.mode == "airlock" and (window.search_timer.isActive() or not view.search_done
                                           or bool(view._pending))
        if busy:
            QTimer.singleShot(10, wait_done)
            return
        done_at[0] = time.monotonic()
        QTimer.singleShot(300, loop.quit)  # and a little more: the view settles

    typist.timeout.connect(type_one)
    last[0] = time.monotonic()
    ticker.start()
    typist.start()
    loop.exec()
    ticker.stop()
    found = len(view.results.matches) if view.results is not None else 0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"max_gap": max(gaps), "over_50ms": sum(g > 0.05 for g in gaps),
                      "results_after": done_at[0] - first_key[0], "found": found, "ticks": len(gaps),
                      "peak_mb": peak_mb}))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
