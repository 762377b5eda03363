"""The opened file's SHA-256 and size in the details pane: small files hashed in a worker at once,
large ones on demand with progress and cancel, the digest copyable."""

import hashlib
import pickle

from PySide6.QtGui import QGuiApplication

from airlock.gui.details import file_hash
from airlock.gui.details.file_hash import FileHashBar
from airlock.gui.file_view import FileView


def test_small_file_is_hashed_in_a_worker_and_the_digest_copied(qtbot, tmp_path):
    data = pickle.dumps({"w": list(range(100))}, protocol=4)
    path = tmp_path / "small.pkl"
    path.write_bytes(data)
    view = FileView(str(path))
    qtbot.addWidget(view)
    bar = view.details.file_hash
    with qtbot.waitSignal(view.scan_finished, timeout=60_000):
        view.start_scan()
    qtbot.waitUntil(lambda: bar.sha256 is not None, timeout=30_000)
    digest = hashlib.sha256(data).hexdigest()
    assert bar.sha256 == digest
    assert bar.label.text() == f"SHA-256 {digest}" and f"{len(data):,} bytes" in bar.note.text()
    assert bar.copy_button.isVisibleTo(view) and not bar.compute_button.isVisibleTo(view)
    bar.copy_button.click()
    assert QGuiApplication.clipboard().text() == digest


def test_large_file_waits_for_the_button(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(file_hash, "AUTO_HASH_BYTES", 1024)  # "large", scaled down
    data = b"\x00" * 5000
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    bar = FileHashBar()
    qtbot.addWidget(bar)
    bar.set_file(str(path), len(data))
    assert bar.sha256 is None and bar.worker is None
    assert "not computed" in bar.note.text() and not bar.compute_button.isHidden()
    bar.compute_button.click()
    qtbot.waitUntil(lambda: bar.sha256 is not None, timeout=30_000)
    assert bar.sha256 == hashlib.sha256(data).hexdigest()


def test_cancel_stops_the_hash_and_says_so(qtbot, tmp_path):
    # A sparse file of 1 TiB: hashing it would take many minutes, so the worker is still reading when the
    # test presses Cancel. (A FIFO held it before; hashing refuses FIFOs now, as it must.)
    path = tmp_path / "slow"
    with open(path, "wb") as fh:
        fh.truncate(1 << 40)
    bar = FileHashBar()
    qtbot.addWidget(bar)
    bar.set_file(str(path), 1 << 40)  # "large": waits for the button
    bar.compute_button.click()
    assert not bar.cancel_button.isHidden() and not bar.progress.isHidden()
    bar.cancel_button.click()
    qtbot.waitUntil(lambda: bar.worker is None, timeout=30_000)
    assert bar.sha256 is None and "cancelled" in bar.note.text()
    assert not bar.compute_button.isHidden()  # the user can start again


def test_cancelled_hash_in_core_returns_none(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    seen = []
    assert file_hash.hash_with_progress(str(path), 10, progress=lambda f, m: seen.append(f),
                                        cancelled=lambda: True) is None
    done = file_hash.hash_with_progress(str(path), 10, progress=lambda f, m: seen.append(f),
                                        cancelled=lambda: False)
    assert done == (hashlib.sha256(b"x" * 10).hexdigest(), 10) and seen[-1] == 1.0


def test_unreadable_file_says_why(qtbot, tmp_path):
    bar = FileHashBar()
    qtbot.addWidget(bar)
    bar.set_file(str(tmp_path / "gone.bin"), 10)
    qtbot.waitUntil(lambda: bar.worker is None, timeout=30_000)
    assert bar.sha256 is None and "cannot be read" in bar.note.text()
