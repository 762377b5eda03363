"""The hex view pages through a file's bytes and marks the selected range."""

from airlock.core.source import Source
from airlock.gui.details.hex import PAGE, HexView, format_rows


def test_rows_show_only_printable_ascii():
    text = format_rows(b"AB\x00\x1b\xe2\x80\xae<>" + bytes(range(0x7E, 0x82)), 0x10)
    assert text.startswith("00000010  41 42 00 1b e2 80 ae 3c 3e 7e 7f 80 81")
    assert text.endswith("AB.....<>~...")


def test_paging_through_a_mapped_file(qtbot, tmp_path):
    data = bytes(i % 251 for i in range(3 * PAGE + 100))
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    reads = []
    with Source.open(path) as source:
        def reader(offset, n):
            reads.append((offset, n))
            return source.read(offset, n)

        view = HexView()
        qtbot.addWidget(view)
        view.set_source(reader, source.size)
        view.show_at(PAGE + 300, 5)
        assert view.page_start == PAGE
        assert view.marked == (PAGE + 300, 5)
        assert reads == [(PAGE, PAGE)]  # one page read, never the whole file
        first = view.text.toPlainText().splitlines()[0]
        assert first.startswith(f"{PAGE:08x}  " + " ".join(f"{b:02x}" for b in data[PAGE:PAGE + 16]))
        assert len(view.text.extraSelections()) == 10  # 5 bytes marked in hex and in text columns

        view.next_page()
        assert view.page_start == 2 * PAGE
        view.next_page()
        assert view.page_start == 3 * PAGE
        assert len(view.text.toPlainText().splitlines()) == 7  # the last 100 bytes
        assert not view.next_button.isEnabled()
        view.next_page()
        assert view.page_start == 3 * PAGE
        view.previous_page()
        assert view.page_start == 2 * PAGE
        assert "bytes 8,192–12,287 of 12,388" in view.position.text()

        view.goto.setText("0x10")
        view.goto.returnPressed.emit()
        assert view.page_start == 0 and view.marked == (16, 1)
        assert not view.prev_button.isEnabled()
        view.clear()  # drop the reader before the map closes


def test_offset_outside_the_file_is_not_marked(qtbot):
    view = HexView()
    qtbot.addWidget(view)
    view.set_source(lambda o, n: bytes(n), 100)
    view.show_at(5000, 4, "offset is in a compressed member")
    assert view.marked is None
    assert view.note.text() == "offset is in a compressed member"


def _widest_line(view):
    return max(len(line) for line in view.text.toPlainText().splitlines())


def test_the_row_width_follows_the_view_width_and_the_whole_row_stays_visible(qtbot):
    """16 bytes per row when they fit, 8 when the view is narrow: never a horizontal scroll bar,
    and offsets and the marked span follow the new rows."""
    data = bytes(range(256)) * 40
    view = HexView()
    qtbot.addWidget(view)
    view.set_source(lambda o, n: data[o:o + n], len(data))
    view.resize(1000, 400)
    view.show()
    qtbot.waitExposed(view)
    view.show_at(PAGE + 0x41, 20)  # a span crossing a row boundary at 16 and at 8 bytes per row
    widths = {}
    for width in (1000, 450, 1000):
        view.resize(width, 400)
        qtbot.waitUntil(lambda: view.text.width() == width and view.row == view.row_that_fits())
        qtbot.wait(20)  # let the scroll bars settle after the layout
        widths[width] = view.row
        row = view.row
        lines = view.text.toPlainText().splitlines()
        assert view.page_start == PAGE
        assert len(lines) == PAGE // row
        second = data[PAGE + row:PAGE + 2 * row]
        assert lines[1].startswith(f"{PAGE + row:08x}  " + " ".join(f"{b:02x}" for b in second))
        assert lines[1].endswith("".join(chr(b) if 0x20 <= b < 0x7F else "." for b in second))
        assert view.text.horizontalScrollBar().maximum() == 0, f"{row} bytes per row need a horizontal scroll"
        font = view.text.fontMetrics()
        assert font.horizontalAdvance("0" * _widest_line(view)) <= view.text.viewport().width()
        # The mark is still the same 20 bytes: each painted cell holds the byte it claims, in both columns.
        assert view.marked == (PAGE + 0x41, 20)
        cells = [sel.cursor.selectedText() for sel in view.text.extraSelections()]
        marked = data[PAGE + 0x41:PAGE + 0x41 + 20]
        assert sorted(c for c in cells if len(c) == 2) == sorted(f"{b:02x}" for b in marked)
        shown = sorted(chr(b) if 0x20 <= b < 0x7F else "." for b in marked)
        assert sorted(c for c in cells if len(c) == 1) == shown
    assert widths == {1000: 16, 450: 8}
