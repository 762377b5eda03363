"""Opening a plain folder scans each of its files once: the files' own tabs scan them, and the folder's
tab shows those results (only files without a tab of their own are scanned by the folder tab)."""

import pickle

import pytest

import airlock.core.api as api
from airlock.gui import main_window
from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.provenance_view import COL_VERDICT, folder_views


@pytest.fixture
def scans(monkeypatch):
    """Every file the real scanner is asked to scan, by either entry point (the real functions run)."""
    seen: list[str] = []
    real_file, real_paths = api.scan_file, api.scan_paths

    def scan_file(path, **kwargs):
        seen.append(str(path))
        return real_file(path, **kwargs)

    def scan_paths(paths, **kwargs):
        for report in real_paths(paths, **kwargs):
            seen.append(str(report.to_dict()["path"]))
            yield report

    monkeypatch.setattr(api, "scan_file", scan_file)
    monkeypatch.setattr(api, "scan_paths", scan_paths)
    return seen


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    (root / "a.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    (root / "sub" / "b.pkl").write_bytes(hostile_pickle_bytes())
    (root / "c.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    return root


def word(tab):
    return tab.severity.label.upper() if tab.severity else "NO FINDINGS"


def verdicts(view):
    return {path.rsplit("/", 1)[-1]: item.text(COL_VERDICT) for path, item in view.file_items().items()}


def test_a_folder_is_scanned_once_and_its_tab_shows_the_files_tabs_results(
        qtbot, open_and_wait, window, folder, scans):
    tabs = open_and_wait(window, [folder])
    assert sorted(v.name for v in tabs) == ["a.pkl", "b.pkl", "c.pkl"]
    assert sorted(scans) == sorted(v.path for v in tabs)  # three files, three scans: no second pass
    (view,) = folder_views(window)
    assert not view.busy and len(view.entries) == 3
    by_name = {v.name: v for v in tabs}
    assert verdicts(view) == {name: word(tab) for name, tab in by_name.items()}
    assert verdicts(view)["b.pkl"] == "CRITICAL"
    assert view.severity == by_name["b.pkl"].severity
    assert "3 file(s) scanned · worst: CRITICAL" in view.status.text()
    # The rows sit under the folder's own layout (sub/ as a group), with paths as the folder shows them.
    assert sorted(view.file_items()) == sorted(str(p) for p in (folder / "a.pkl", folder / "sub" / "b.pkl",
                                                                  folder / "c.pkl"))

    # A tab scanned again (Reload) updates its row in the folder: never a second row.
    (folder / "a.pkl").write_bytes(hostile_pickle_bytes())
    with qtbot.waitSignal(by_name["a.pkl"].scan_finished, timeout=120_000):
        window.reload_view(by_name["a.pkl"])
    assert len(view.entries) == 3 and verdicts(view)["a.pkl"] == "CRITICAL"


def test_files_beyond_the_tab_limit_are_scanned_by_the_folder_tab_only(
        qtbot, open_and_wait, window, folder, scans, monkeypatch):
    monkeypatch.setattr(main_window, "MAX_FILES_PER_FOLDER", 2)
    tabs = open_and_wait(window, [folder])
    assert len(tabs) == 2
    window.notice.close()
    (view,) = folder_views(window)
    qtbot.waitUntil(lambda: not view.busy, timeout=120_000)
    assert len(scans) == 3 and len(set(scans)) == 3  # the third file once, by the folder tab
    assert set(verdicts(view)) == {"a.pkl", "b.pkl", "c.pkl"}


def test_a_file_tab_closed_before_its_scan_ends_is_listed_as_not_inspected(qtbot, window, folder):
    with qtbot.waitSignal(window.all_scans_finished, timeout=120_000):
        tabs = window.open_paths([str(folder)])
        hostile = next(v for v in tabs if v.name == "b.pkl")
        window.close_tab(window.tabs.indexOf(hostile))  # before the event loop delivers its result
    (view,) = folder_views(window)
    shown = verdicts(view)
    assert shown["b.pkl"].startswith("INFO · not inspected: its tab was closed")
    assert shown["a.pkl"] == word(next(v for v in tabs if v.name == "a.pkl"))
    assert view.severity > view.severity.NONE  # a file not inspected never leaves the folder looking clean
