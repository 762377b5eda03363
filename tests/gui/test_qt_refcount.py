"""Regression: PySide6 6.12.0 on Python < 3.12 dropped a reference to None on every void call.

After ~5,000 calls (setText, setValue, ...) the process died with "deallocating None". The
dependency pin in pyproject.toml keeps that build out; this test catches any build like it.
"""

import sys

from PySide6.QtWidgets import QLabel, QProgressBar


def test_void_calls_keep_none_alive(qapp):
    label, bar = QLabel(), QProgressBar()
    before = sys.getrefcount(None)
    for i in range(2000):
        label.setText("x")
        bar.setValue(i % 100)
    after = sys.getrefcount(None)
    # Other code may take or drop a few references meanwhile; the broken build loses 4,000.
    assert after - before > -100, f"None lost {before - after} references in 4,000 void calls"
