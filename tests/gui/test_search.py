"""Search in the window: debounced, in a worker over the core tree, incremental, cancelled when stale,
one filter per tab, and a filter bar that says what is shown ("showing 12 of 150,321")."""

import threading

import pytest
from fixtures.gguf_files import vocabulary
from PySide6.QtCore import Qt

from airlock.core.scan import scan_bytes
from airlock.gui.demo import hostile_pickle_bytes, safetensors_bytes
from airlock.gui.search import SHOWN_MAX, ResultsModel, SearchWorker
from airlock.gui.tree_model import NODE_ROLE

VOCAB = 150_000


@pytest.fixture(scope="module")
def big_vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "qwen-like.gguf"
    path.write_bytes(vocabulary(VOCAB, template="{{ messages[0]['content'] }}"))
    return path


def wait_search(qtbot, view):
    qtbot.waitUntil(lambda: view.search_done and not view._pending, timeout=60_000)


def shown_labels(model, index=None, out=None):
    out = [] if out is None else out
    index = model.index(0, 0) if index is None else index
    out.append(model.data(index))
    for row in range(model.rowCount(index)):
        shown_labels(model, model.index(row, 0, index), out)
    return out


def test_typing_starts_nothing_until_the_pause_then_one_search_in_a_worker(qtbot, open_and_wait, window, big_vocab):
    (view,) = open_and_wait(window, [big_vocab])
    started = []
    view.search_started.connect(started.append)
    window.search.setFocus()
    qtbot.keyClicks(window.search, "tok1499")  # one textChanged per key
    # Nothing ran while typing: the keystrokes only restarted the debounce timer.
    assert window.search_timer.isActive()
    assert started == [] and view.filter_text == "" and view.tree.model() is view.model
    with qtbot.waitSignal(view.search_finished, timeout=60_000):
        pass
    assert len(started) == 1 and started[0].search.text == "tok1499"
    wait_search(qtbot, view)
    labels = [n.label for n in view.results.matches]
    assert labels[0] == "[1,499] Ġtok1499" and len(labels) == 1 + 10 + 100  # tok1499, tok1499x, tok1499xx
    assert view.tree.model() is view.results


def test_the_search_runs_off_the_gui_thread_over_the_core_tree(qtbot, open_and_wait, window, big_vocab):
    (view,) = open_and_wait(window, [big_vocab])
    threads = []
    view.search_started.connect(threads.append)
    view.set_filter("Ġtok149999")
    wait_search(qtbot, view)
    (worker,) = threads
    assert worker.thread_id not in (None, threading.get_ident())
    assert worker.complete and worker.visited > 2 * VOCAB  # tokens, types, merges
    tokens = next(n for n in view.result.root.walk() if n.is_lazy and n.child_count == VOCAB)
    assert len(tokens._cache) <= 256  # only the page holding the match was built, for its row
    (match,) = view.results.matches
    assert match.label == "[149,999] Ġtok149999" and match.parent is tokens


def test_results_arrive_incrementally(qtbot, open_and_wait, window, big_vocab):
    (view,) = open_and_wait(window, [big_vocab])
    seen = []

    def on_batch(_paths, _visited, _found):
        seen.append((view.shown_matches, view.search_done))

    view.search_started.connect(lambda worker: worker.search_signals.found.connect(on_batch))
    view.set_filter("tok")  # every token matches: the view fills while the search goes on
    wait_search(qtbot, view)
    assert len(seen) > 2
    assert any(shown > 0 and not done for shown, done in seen)
    assert view.shown_matches == SHOWN_MAX  # the count goes on
    assert view.search_found > VOCAB
    assert f"the first {SHOWN_MAX:,} of" in view.filter_bar.label.text()


def test_a_new_filter_cancels_the_stale_search_and_its_results_never_show(qtbot, open_and_wait, window, big_vocab):
    (view,) = open_and_wait(window, [big_vocab])
    workers, finished = [], []

    def started(worker):
        workers.append(worker)
        worker.signals.finished.connect(lambda: finished.append(worker))

    view.search_started.connect(started)
    view.set_filter("Ġ t")  # the merges: a long search
    view.set_filter("Ġtok77777")
    wait_search(qtbot, view)
    first, second = workers
    assert first.is_cancelled and not second.is_cancelled
    assert [n.label for n in view.results.matches] == ["[77,777] Ġtok77777"]
    assert all("Ġ t" not in label for label in shown_labels(view.results)[1:] if label.startswith("["))
    qtbot.waitUntil(lambda: first in finished, timeout=10_000)
    assert not first.complete and first.visited < 3 * VOCAB  # it stopped early, at a cancellation check


def test_each_tab_keeps_its_own_filter_and_shows_it(qtbot, open_and_wait, window, tmp_path, big_vocab):
    clean = tmp_path / "model.safetensors"
    clean.write_bytes(safetensors_bytes())
    vocab_view, clean_view = open_and_wait(window, [big_vocab, clean])
    window.tabs.setCurrentWidget(vocab_view)
    window.search.setText("chat_template")
    window.apply_search()
    wait_search(qtbot, vocab_view)
    assert vocab_view.filter_bar.isVisibleTo(vocab_view)
    text = vocab_view.filter_bar.label.text()
    assert "“chat_template”" in text and f"showing 1 of {vocab_view.search_visited:,} items searched" in text
    assert vocab_view.search_visited > 3 * VOCAB - 600
    # The other tab is untouched: whole tree, no filter bar, an empty search box.
    window.tabs.setCurrentWidget(clean_view)
    assert window.search.text() == "" and clean_view.filter_text == ""
    assert clean_view.tree.model() is clean_view.model and not clean_view.filter_bar.isVisibleTo(clean_view)
    root = clean_view.model.index(0, 0)
    assert clean_view.model.rowCount(root) > 0
    # Back: the box shows that tab's filter again; Clear removes it and the box follows.
    window.tabs.setCurrentWidget(vocab_view)
    assert window.search.text() == "chat_template"
    vocab_view.filter_bar.clear_button.click()
    assert vocab_view.tree.model() is vocab_view.model and window.search.text() == ""
    assert not vocab_view.filter_bar.isVisibleTo(vocab_view)


def test_text_typed_then_switching_tab_stays_with_its_tab(qtbot, open_and_wait, window, tmp_path, big_vocab):
    clean = tmp_path / "model.safetensors"
    clean.write_bytes(safetensors_bytes())
    vocab_view, clean_view = open_and_wait(window, [big_vocab, clean])
    window.tabs.setCurrentWidget(vocab_view)
    qtbot.keyClicks(window.search, "general")
    window.tabs.setCurrentWidget(clean_view)  # before the pause
    assert vocab_view.filter_text == "general" and clean_view.filter_text == ""
    assert window.search.text() == ""


def test_risky_only_is_per_tab(qtbot, open_and_wait, window, tmp_path):
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(hostile_pickle_bytes())
    clean = tmp_path / "model.safetensors"
    clean.write_bytes(safetensors_bytes())
    bad_view, clean_view = open_and_wait(window, [hostile, clean])
    window.tabs.setCurrentWidget(bad_view)
    window.risky_only.setChecked(True)
    wait_search(qtbot, bad_view)
    assert bad_view.risky_only and "risky only" in bad_view.filter_bar.label.text()
    window.tabs.setCurrentWidget(clean_view)
    assert not window.risky_only.isChecked() and not clean_view.risky_only
    window.tabs.setCurrentWidget(bad_view)
    assert window.risky_only.isChecked() and window.risky_action.isChecked()


def test_results_model_passes_qt_checks_and_marks_matches(qtbot, qtmodeltester):
    result = scan_bytes(hostile_pickle_bytes(), "hostile.pkl")
    from airlock.core.search import Search

    model = ResultsModel(result.root)
    paths = list(Search(result.root, "system").run())
    model.add_paths(paths[: len(paths) // 2])
    qtmodeltester.check(model, force_py=True)
    model.add_paths(paths[len(paths) // 2:])
    qtmodeltester.check(model, force_py=True)
    assert len(model.matches) == len(paths) > 0
    match = model.matches[0]
    index = model.index_for(match)
    assert index.isValid() and index.data(NODE_ROLE) is match
    assert model.data(index, Qt.ItemDataRole.FontRole).bold()
    parent = model.parent(index)
    assert model.data(parent, Qt.ItemDataRole.FontRole) is None  # only on the way to a match
    assert all("os.system" in n.label or "system" in str(n.attrs) for n in model.matches)


def test_search_worker_returns_none_when_cancelled(qtbot, big_vocab):
    result = scan_bytes(big_vocab.read_bytes(), "v.gguf")
    worker = SearchWorker(result.root, "nothing matches this", risky_only=False)
    worker.cancel()
    with qtbot.waitSignal(worker.signals.returned, timeout=10_000) as blocker:
        from airlock.gui.workers import pool

        pool().start(worker)
    assert blocker.args == [None]
