"""docs/screenshots.py, the one script that makes every screenshot in docs/, runs from a clean checkout and
writes PNGs of the sizes it names (the hex-call pair here: the other shots need the same machinery)."""

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtGui import QImage

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "screenshots.py"


def test_the_screenshot_script_writes_both_sizes(tmp_path):
    env_out = tmp_path / "shots"
    done = subprocess.run([sys.executable, str(SCRIPT), "--only", "hex", "--out", str(env_out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    for width, height in ((1280, 800), (2560, 1440)):
        image = QImage(str(env_out / f"hex-call-{width}x{height}.png"))
        assert (image.width(), image.height()) == (width, height)
    assert sorted(p.name for p in env_out.iterdir()) == ["hex-call-1280x800.png", "hex-call-2560x1440.png"]


def test_every_png_in_docs_is_made_by_the_script():
    text = SCRIPT.read_text()
    for png in sorted(SCRIPT.parent.glob("*.png")):
        stem = png.stem.rsplit("-", 1)[0] if "x" in png.stem.rsplit("-", 1)[-1] else png.stem
        assert f"{stem}-*.png" in text or png.name in text, f"{png.name} is not made by docs/screenshots.py"
