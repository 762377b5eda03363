"""matplotlib is imported in the background after start-up, never on the GUI thread by the first histogram."""

import json
import subprocess
import sys

CHILD = r"""
import json, os, sys, threading, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtWidgets import QApplication
from airlock.gui import main_window

app = QApplication([])
window = main_window.MainWindow()
window.show()
before = "matplotlib" in sys.modules
deadline = time.monotonic() + 120
while time.monotonic() < deadline and (window.warm_up is None or not window.warm_up.done.is_set()):
    app.processEvents()
    time.sleep(0.01)
from airlock.gui.workers import WARMED_UP_IN
thread = WARMED_UP_IN[0] if WARMED_UP_IN else None
print(json.dumps({"before": before, "thread": thread, "main": threading.get_ident(),
                  "canvas": "matplotlib.backends.backend_qtagg" in sys.modules}))
"""


def test_matplotlib_is_loaded_off_the_gui_thread_after_start_up():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["before"] is False  # not at start-up: the window shows first
    assert result["thread"] is not None and result["thread"] != result["main"]
    assert result["canvas"]
