"""Provenance in the desktop app: a Hugging Face cache opens as one tab (repository, revision, refs,
signature state, each file with its verdict); a folder's tab says whether it is signed, and by whom
once verified with a key or a certificate chain; a cache file opened alone still names its repository and revision."""

import os

from provenance.hf_fake import COMMIT_1, COMMIT_2, build
from provenance.test_signing import sign_with_certificate, signed  # noqa: F401 - the signed-folder fixture, reused
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from airlock.gui.provenance_view import COL_NAME, COL_VERDICT, FolderView, folder_views, is_hf_folder


def folder_view(qtbot, path):
    view = FolderView(str(path))
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.scan_finished, timeout=120_000):
        view.start_scan()
    return view


def test_cache_folder_opens_as_one_tab_each_revision_once(qtbot, open_and_wait, window, tmp_path):
    paths = build(tmp_path / "hub")
    open_and_wait(window, [paths["storage"]])
    assert window.views() == []  # not one tab per file (and never each blob a second time)
    (view,) = folder_views(window)
    assert window.tabs.count() == 1 and "Hugging Face cache" in view.title.text()
    items = view.file_items()
    assert len(items) == 7  # 5 snapshot files and 2 blobs outside every snapshot, each once
    weights2 = items[str(paths["weights2"])]
    assert weights2.text(COL_NAME) == "model.safetensors"
    revision = weights2.parent()
    assert revision.text(COL_NAME) == f"revision org/model @ {COMMIT_2[:12]} (main)"
    assert revision.text(COL_VERDICT) == "unsigned"
    assert revision.parent().text(COL_NAME) == "org/model"
    nested = items[str(paths["nested"])]
    assert nested.text(COL_NAME) == "notes.txt" and nested.parent().text(COL_NAME) == "onnx/"
    assert nested.parent().text(COL_VERDICT) == ""  # a folder of a revision has no signature of its own
    orphan = items[str(paths["orphan"])]
    assert orphan.parent().text(COL_NAME) == "blobs/ (not in any snapshot)"
    assert orphan.text(COL_VERDICT) == "INFO"  # "not in any snapshot": never a silent pass
    text = view.signature.text()
    assert f"org/model @ {COMMIT_1[:12]} (v1.0) · unsigned" in text
    assert f"org/model @ {COMMIT_2[:12]} (main) · unsigned" in text
    # A file double-clicked opens in its own tab, with its origin.
    with qtbot.waitSignal(window.all_scans_finished, timeout=60_000):
        view.tree.itemDoubleClicked.emit(weights2, 0)
    (file_view,) = window.views()
    assert f"Hugging Face org/model @ {COMMIT_2[:12]} (main)" in file_view.info.text()


def test_cache_root_lists_every_repository_and_flags_the_hostile_one(qtbot, tmp_path):
    paths = build(tmp_path / "hub")
    assert is_hf_folder(str(tmp_path / "hub")) and is_hf_folder(str(paths["weights2"].parent))
    view = folder_view(qtbot, tmp_path / "hub")
    items = view.file_items()
    assert len(items) == 8  # org/model's 7 and org/evil's pickle
    evil = items[str(paths["evil"])]
    assert evil.text(COL_VERDICT) == "CRITICAL"
    assert evil.parent().parent().text(COL_NAME) == "org/evil"
    assert view.severity.label == "critical"


def test_a_snapshot_opens_alone_with_its_revision(qtbot, tmp_path):
    paths = build(tmp_path / "hub")
    view = folder_view(qtbot, paths["weights1"].parent)
    items = view.file_items()
    assert set(items) == {str(paths["config1"]), str(paths["weights1"])}
    assert f"org/model @ {COMMIT_1[:12]} (v1.0) · unsigned" in view.signature.text()


def test_a_cache_file_opened_alone_names_its_origin(qtbot, open_and_wait, window, tmp_path):
    paths = build(tmp_path / "hub")
    open_and_wait(window, [paths["weights2"], paths["orphan"]])
    views = {v.path: v for v in window.views()}
    info = views[str(paths["weights2"])].info.text()
    assert f"Hugging Face org/model @ {COMMIT_2[:12]} (main)" in info and "unsigned" in info
    assert "not in any snapshot" in views[str(paths["orphan"])].info.text()


def test_plain_folder_tab_unsigned_then_signed(qtbot, open_and_wait, window, tmp_path, signed):  # noqa: F811
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_bytes(b'{"a": 1}')
    open_and_wait(window, [plain])
    (view,) = folder_views(window)
    assert view.signature.text() == "Signature: unsigned"
    assert len(window.views()) == 1  # the folder's files still open in their own tabs
    model, public_key = signed
    view = folder_view(qtbot, model)
    assert view.signature.text() == "Signature: signed, not verified (no key or certificate given)"
    with qtbot.waitSignal(view.scan_finished, timeout=120_000):
        view.check_signature(key=str(public_key))
    assert view.signature.text().startswith("Signature: signed by key sha256:")


def test_changed_folder_signature_does_not_match_naming_each_file(qtbot, tmp_path, signed):  # noqa: F811
    model, public_key = signed
    (model / "config.json").write_bytes(b'{"model_type": "evil"}')
    (model / "extra.bin").write_bytes(b"new")
    os.remove(model / "sub" / "tokenizer.json")
    view = folder_view(qtbot, model)
    with qtbot.waitSignal(view.scan_finished, timeout=120_000):
        view.check_signature(key=str(public_key))
    text = view.signature.text()
    assert text.startswith("Signature: signature does not match:")
    assert "changed config.json" in text and "added extra.bin" in text and "removed sub/tokenizer.json" in text


def test_a_key_that_cannot_be_used_says_why(qtbot, tmp_path, signed):  # noqa: F811
    model, _ = signed
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"not a key")
    view = folder_view(qtbot, model)
    with qtbot.waitSignal(view.scan_finished, timeout=120_000):
        view.check_signature(key=str(bad))
    assert "cannot verify" in view.signature.text() and "not a PEM public key" in view.signature.text()


def test_verify_with_a_certificate_chain_from_the_folder_tab(qtbot, tmp_path, monkeypatch):
    """The tab verifies a certificate-signed folder as `airlock verify --cert` does: the button asks for
    the chain's PEM files, then "signed by …", or "does not match" naming the changed file."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"weights")
    ca = sign_with_certificate(tmp_path, model, model / "model.sig")
    view = folder_view(qtbot, model)
    assert view.signature.text() == "Signature: signed, not verified (no key or certificate given)"
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(ca)], ""))
    with qtbot.waitSignal(view.scan_finished, timeout=120_000):
        qtbot.mouseClick(view.cert_button, Qt.MouseButton.LeftButton)
    assert view.signature.text().startswith("Signature: signed by "), view.signature.text()
    (model / "weights.bin").write_bytes(b"other weights")
    with qtbot.waitSignal(view.scan_finished, timeout=120_000):
        qtbot.mouseClick(view.cert_button, Qt.MouseButton.LeftButton)
    text = view.signature.text()
    assert text.startswith("Signature: signature does not match:") and "changed weights.bin" in text, text
