"""A file opened from a Hugging Face cache shows its repository, revision, refs and signature state."""


import pytest
from provenance.hf_fake import COMMIT_2, build

from airlock.gui.main_window import MainWindow


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def test_cache_folder_opens_each_revision_once_with_its_origin(qtbot, window, tmp_path):
    paths = build(tmp_path / "hub")
    with qtbot.waitSignal(window.all_scans_finished, timeout=60_000):
        window.open_paths([str(paths["storage"])])
    views = {v.path: v for v in window.views()}
    assert len(views) == 7  # 5 snapshot files and 2 blobs outside every snapshot, not 5 + 7 blobs
    info = views[str(paths["weights2"])].info.text()
    assert f"Hugging Face org/model @ {COMMIT_2[:12]} (main)" in info and "unsigned" in info
    assert "not in any snapshot" in views[str(paths["orphan"])].info.text()
