"""A call finding shows the call whole in the Hex tab: from the GLOBAL / STACK_GLOBAL naming the callable
through the opcode that calls it, in a plain pickle and inside a torch checkpoint's zip member."""

import os

import torch

from airlock.core.findings import Severity
from airlock.core.tree import CALL
from airlock.gui.demo import hostile_pickle_bytes
from airlock.gui.details.pane import TAB_HEX

GLOBAL, STACK_GLOBAL, REDUCE = 0x63, 0x93, 0x52  # c, \x93, R


class Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned",))  # pickled by name; nothing here runs it


def click_worst_call(view):
    rows = [i for i, f in enumerate(view.findings.findings) if f.node is not None and f.node.kind == CALL]
    assert rows, "the hostile call has a finding on its call node"
    finding = view.findings.findings[rows[0]]
    assert finding.severity >= Severity.HIGH
    view.details.tabs.setCurrentIndex(1)  # wherever the user was, the finding brings them to the bytes
    view.findings.select_row(rows[0])
    return finding


def assert_call_marked(view, data: bytes):
    pane = view.details
    assert pane.tabs.currentIndex() == TAB_HEX
    start, length = pane.hex.marked
    assert data[start] in (GLOBAL, STACK_GLOBAL), "the mark begins at the name of the callable"
    assert data[start + length - 1] == REDUCE, "and ends on the opcode calling it"
    assert length > 2
    # Every marked byte on the page is painted, in the hex and the text columns.
    on_page = min(start + length, pane.hex.page_start + 4096) - max(start, pane.hex.page_start)
    assert len(pane.hex.text.extraSelections()) == 2 * on_page


def test_a_call_in_a_pickle_is_marked_from_its_global_to_its_reduce(qtbot, open_and_wait, window, tmp_path):
    path = tmp_path / "model.pkl"
    data = hostile_pickle_bytes()
    path.write_bytes(data)
    (view,) = open_and_wait(window, [path])
    finding = click_worst_call(view)
    assert_call_marked(view, data)
    assert view.details.hex.marked[0] == finding.node.attrs["call_start"]


def test_a_call_in_a_torch_checkpoint_is_marked_in_file_offsets(qtbot, open_and_wait, window, tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(4), "hook": Hostile()}, path)  # the real writer, a stored zip
    (view,) = open_and_wait(window, [path])
    finding = click_worst_call(view)
    assert finding.member is not None and finding.member.endswith("data.pkl")
    assert_call_marked(view, path.read_bytes())


def test_selecting_a_call_in_the_tree_marks_it_whole_and_other_nodes_by_their_bytes(qtbot, open_and_wait, window, tmp_path):
    path = tmp_path / "model.pkl"
    data = hostile_pickle_bytes()
    path.write_bytes(data)
    (view,) = open_and_wait(window, [path])
    call = next(n for n in view.result.root.walk(expand_lazy=True) if n.kind == CALL)
    view.select_node(call)
    assert view.details.hex.marked == (call.attrs["call_start"], call.offset + 1 - call.attrs["call_start"])
    other = next(n for n in view.result.root.walk(expand_lazy=True)
                 if n.kind != CALL and n.offset is not None and n.length and n.parent is not None)
    view.select_node(other)
    assert view.details.hex.marked == (other.offset, min(other.length, 1024))
