"""The Values tab: pages, samples and typed slices of real tensors of every dtype (quantised GGUF
blocks included), shown in the details pane, and the .npy export from the window."""


import numpy as np
import pytest
import torch
from fixtures import gguf_files
from fixtures import graph_files as G

from airlock.core.tree import INITIALIZER, TENSOR
from airlock.core.values import format_value
from airlock.gui.details.pane import TAB_VALUES

RNG = np.random.default_rng(11)


def open_file(qtbot, win, path):
    with qtbot.waitSignal(win.all_scans_finished, timeout=120_000):
        (view,) = win.open_paths([str(path)])
    return view


def tensor_node(view, name):
    return next(n for n in view.result.root.walk(expand_lazy=True)
                if n.kind in (TENSOR, INITIALIZER) and n.attrs.get("name", n.label) == name)


def show_values(qtbot, view, node, mode="first", text=""):
    view.select_node(node)
    values = view.details.values
    assert view.details.tabs.isTabVisible(TAB_VALUES)
    view.details.show_values()
    values.slice.setText(text)
    values.mode.setCurrentIndex(values.mode.findData(mode))
    if mode == "first":
        values.reload()
    qtbot.waitUntil(lambda: values.worker is None and values.page is not None, timeout=30_000)
    return values


def table(values):
    model = values.model
    return [[model.data(model.index(r, c)) for c in range(model.columnCount())] for r in range(model.rowCount())]


@pytest.fixture(scope="module")
def every_dtype(tmp_path_factory):
    from safetensors.numpy import save as save_numpy
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("values")
    arrays = {"f64": RNG.normal(0, 1, (3, 4)), "i8": RNG.integers(-100, 100, (3, 4)).astype(np.int8),
              "u16": RNG.integers(0, 60000, (3, 4)).astype(np.uint16), "flags": RNG.integers(0, 2, (3, 4)) > 0,
              "big": np.arange(400 * 300, dtype=np.float32).reshape(400, 300)}
    (folder / "numpy.safetensors").write_bytes(save_numpy(arrays))
    weird = {"bf16": torch.randn(3, 4).bfloat16(), "f8": torch.randn(3, 4).to(torch.float8_e4m3fn)}
    save_file(weird, str(folder / "torch.safetensors"))
    arrays.update({k: v.float().numpy() for k, v in weird.items()})
    return folder, arrays


def test_first_values_of_every_dtype_are_shown(qtbot, window, every_dtype):
    folder, arrays = every_dtype
    for name in ("numpy.safetensors", "torch.safetensors"):
        view = open_file(qtbot, window, folder / name)
        for key in ("f64", "i8", "u16", "flags", "bf16", "f8"):
            if key not in arrays or (key in ("bf16", "f8")) != (name == "torch.safetensors"):
                continue
            values = show_values(qtbot, view, tensor_node(view, key))
            assert view.details.tabs.currentIndex() == TAB_VALUES
            want = [[format_value(v) for v in row] for row in arrays[key]]
            assert table(values) == want, key
            assert values.model.headerData(2, Qt_vertical()) == "[2]"


def Qt_vertical():
    from PySide6.QtCore import Qt

    return Qt.Orientation.Vertical


def test_pages_through_a_big_tensor(qtbot, window, every_dtype):
    folder, arrays = every_dtype
    view = open_file(qtbot, window, folder / "numpy.safetensors")
    values = show_values(qtbot, view, tensor_node(view, "big"))
    assert values.status.text().splitlines()[1] == "rows 0–65 of 400"  # 20,000 values a page
    assert not values.prev_button.isEnabled() and values.next_button.isEnabled()
    values.next_button.click()
    qtbot.waitUntil(lambda: values.worker is None and values.page.start_row == 66, timeout=30_000)
    assert table(values)[0][:3] == [format_value(v) for v in arrays["big"][66, :3]]
    values.row_box.setValue(399)
    qtbot.waitUntil(lambda: values.worker is None and values.page.start_row == 399, timeout=30_000)
    assert table(values)[0][-1] == format_value(arrays["big"][399, -1])
    assert not values.next_button.isEnabled()


def test_sample_and_typed_slices(qtbot, window, every_dtype):
    folder, arrays = every_dtype
    view = open_file(qtbot, window, folder / "numpy.safetensors")
    node = tensor_node(view, "big")
    values = show_values(qtbot, view, node, "sample")
    flat = arrays["big"].ravel()
    assert values.model.rowCount() == 1000 and table(values)[-1] == [format_value(flat[-1])]
    assert values.model.headerData(999, Qt_vertical()) == "119,999  [399, 299]"
    values = show_values(qtbot, view, node, "slice", "10:12, 5:8")
    assert table(values) == [[format_value(v) for v in row] for row in arrays["big"][10:12, 5:8]]
    values.slice.setText("__import__('os').system('x')")
    values.reload()
    qtbot.waitUntil(lambda: values.worker is None, timeout=30_000)
    assert "is not an integer or a start:stop slice" in values.status.text()
    assert values.model.rowCount() == 0


def test_quantised_gguf_values_are_dequantised(qtbot, window, tmp_path):
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    weights = RNG.normal(0, 0.1, (4, 64)).astype(np.float32)
    blocks = quants.quantize(weights, Q.Q4_0)
    path = gguf_files.write_tensors(tmp_path / "q.gguf", {"w": weights}, {"w": "Q4_0"})
    view = open_file(qtbot, window, path)
    values = show_values(qtbot, view, tensor_node(view, "w"))
    want = quants.dequantize(blocks, Q.Q4_0).reshape(4, 64)
    assert table(values) == [[format_value(np.float32(v)) for v in row] for row in want]
    assert values.status.text().startswith("Q4_0  4 × 64 (row-major: the file lists its dimensions innermost first)  "
                                           "(256 values")


def test_an_initializer_chosen_in_the_graph_shows_its_values(qtbot, window, tmp_path):
    import onnx
    from onnx import numpy_helper

    path = G.torch_export(tmp_path / "net.onnx")
    view = open_file(qtbot, window, path)
    graph = view.graph_view
    graph.parentWidget().parentWidget().setCurrentWidget(graph)
    qtbot.waitUntil(lambda: graph.current is not None, timeout=60_000)
    conv = next(i for i, n in enumerate(graph.current.graph.nodes) if n.title == "Conv")
    graph.select(conv)
    inputs = graph.props.findItems("Inputs", __import__("PySide6.QtCore").QtCore.Qt.MatchFlag.MatchExactly)[0]
    graph._prop_activated(inputs.child(1))  # the weight
    values = view.details.values
    assert view.details.tabs.currentIndex() == TAB_VALUES
    qtbot.waitUntil(lambda: values.worker is None and values.page is not None, timeout=30_000)
    model = onnx.load(str(path))
    weight = next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == inputs.child(1).text(0))
    rows = weight.reshape(-1, weight.shape[-1])
    assert table(values)[:2] == [[format_value(v) for v in row] for row in rows[:2]]


def test_export_npy_from_the_values_tab_and_the_tree_menu(qtbot, window, every_dtype, tmp_path):
    from airlock.gui import node_menu

    folder, arrays = every_dtype
    view = open_file(qtbot, window, folder / "torch.safetensors")
    node = tensor_node(view, "bf16")
    labels = [a.text() for a in node_menu.build_menu(view, node, view.tree).actions()]
    assert "Export This Tensor as .npy…" in labels
    values = show_values(qtbot, view, node)
    out = tmp_path / "bf16.npy"
    # Waited for by the status line: a worker may finish before a waitSignal here could connect.
    assert values.export_to(str(out)) is not None
    qtbot.waitUntil(lambda: values.status.text().startswith(("Exported", "Export failed")), timeout=30_000)
    assert values.status.text().startswith("Exported 12 values")
    np.testing.assert_array_equal(np.load(out, allow_pickle=False), arrays["bf16"])
    values.export_to(str(folder / "torch.safetensors"))  # never over the file being inspected
    qtbot.waitUntil(lambda: values.status.text().startswith("Export failed"), timeout=30_000)
    assert "would overwrite the file being inspected" in values.status.text()


def test_a_hostile_shape_pages_without_overflowing_the_row_box(qtbot, window, tmp_path):
    # GGUF dims whose product overflows 64 bits: far more rows than a spin box (a C int) can hold.
    import corpus

    fixture = next(f for f in corpus.hostile() if f.name == "gguf_files/dims_product_overflows.gguf")
    path = tmp_path / "dims.gguf"
    path.write_bytes(fixture.data)
    view = open_file(qtbot, window, path)
    values = show_values(qtbot, view, tensor_node(view, "w"))
    assert values.page.total_rows > 2**31 and values.row_box.maximum() == 2**31 - 1
    assert "the file ends before this tensor does" in values.status.text()
    # A cell's menu too: the tensor holds more values than numpy's intp counts.
    items = dict(values.cell_items(0, 1))
    assert items["Copy Index"].count(",") == len(values.tensor.shape) - 1
    assert items["Copy Offset"] == str(values.tensor.offset + values.tensor.unit_bytes)
    values.next_button.click()
    qtbot.waitUntil(lambda: values.worker is None and values.page.start_row > 0, timeout=30_000)


def test_a_cells_menu_copies_its_value_index_and_offset_and_shows_its_bytes(qtbot, window, every_dtype):
    from PySide6.QtCore import QItemSelectionModel
    from PySide6.QtGui import QGuiApplication

    from airlock.gui.details.pane import TAB_HEX

    folder, arrays = every_dtype
    view = open_file(qtbot, window, folder / "numpy.safetensors")
    node = tensor_node(view, "u16")
    values = show_values(qtbot, view, node)
    t = values.tensor
    menu = values.build_cell_menu(2, 3)
    labels = [a.text() for a in menu.actions() if a.text()]
    assert labels == ["Copy Value", "Copy Index", "Copy Offset", "Show in Hex", "Export This Tensor as .npy…"]
    copied = {}
    for action in menu.actions():
        if action.text().startswith("Copy"):
            action.trigger()
            copied[action.text()] = QGuiApplication.clipboard().text()
    assert copied == {"Copy Value": str(arrays["u16"][2, 3]), "Copy Index": "[2, 3]",
                      "Copy Offset": str(t.offset + (2 * 4 + 3) * 2)}
    next(a for a in menu.actions() if a.text() == "Show in Hex").trigger()
    assert view.details.tabs.currentIndex() == TAB_HEX
    assert view.details.hex.marked == (t.offset + 22, 2)
    # Several cells: Ctrl+C (and the menu's first entry) copy them as tab-separated rows.
    view.details.show_values()
    selection = values.table.selectionModel()
    for row, col in ((0, 0), (0, 1), (1, 0), (1, 1)):
        selection.select(values.model.index(row, col), QItemSelectionModel.SelectionFlag.Select)
    assert values.build_cell_menu(0, 0).actions()[0].text() == "Copy 4 Selected Values"
    want = "\n".join("\t".join(str(v) for v in arrays["u16"][r, :2]) for r in range(2))
    assert values.copy_selection() == want and QGuiApplication.clipboard().text() == want


def test_a_quantised_cell_points_at_its_block(qtbot, window, tmp_path):
    weights = RNG.normal(0, 0.1, (2, 64)).astype(np.float32)
    path = gguf_files.write_tensors(tmp_path / "q.gguf", {"w": weights}, {"w": "Q8_0"})
    view = open_file(qtbot, window, path)
    values = show_values(qtbot, view, tensor_node(view, "w"))
    items = dict(values.cell_items(1, 40))  # row 1, column 40: value 104, in the fourth block
    assert items["Copy Index"] == "[1, 40]"
    assert items["Copy Offset"] == f"{values.tensor.offset + 3 * 34} (the 34-byte block of 32 values that holds it)"
    assert values.show_in_hex(1, 40) and view.details.hex.marked == (values.tensor.offset + 102, 34)


def test_the_tree_menu_copies_name_shape_value_offset_and_path(qtbot, window, tmp_path):
    from gguf import GGUFWriter
    from PySide6.QtGui import QGuiApplication

    from airlock.core.tree import METADATA
    from airlock.gui import node_menu

    path = tmp_path / "m.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("menu-demo")
    writer.add_tensor("blk.0.w", np.ones((3, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    view = open_file(qtbot, window, path)

    def copied(node):
        out = {}
        for action in node_menu.build_menu(view, node, view.tree).actions():
            if action.text().startswith("Copy"):
                action.trigger()
                out[action.text()] = QGuiApplication.clipboard().text()
        return out

    tensor = tensor_node(view, "blk.0.w")
    assert copied(tensor) == {"Copy Name": tensor.label, "Copy Shape": "8 × 3",
                              "Copy Offset": str(tensor.offset), "Copy Path": tensor.path()}
    name = next(n for n in view.result.root.walk(expand_lazy=True)
                if n.kind == METADATA and n.attrs.get("key") == "general.name")
    got = copied(name)
    assert got["Copy Value"] == "menu-demo" and got["Copy Offset"] == str(name.offset)
    assert got["Copy Path"] == name.path()


def test_every_column_is_as_wide_as_its_longest_value(qtbot, window, every_dtype):
    folder, _arrays = every_dtype
    view = open_file(qtbot, window, folder / "numpy.safetensors")
    values = show_values(qtbot, view, tensor_node(view, "f64"))
    metrics = values.table.fontMetrics()
    header = values.table.horizontalHeader()
    rows = table(values)
    for col in range(len(rows[0])):
        widest = max(metrics.horizontalAdvance(row[col]) for row in rows)
        assert header.sectionSize(col) >= widest + 8, (col, header.sectionSize(col), widest)
    wide = header.sectionSize(0)
    values = show_values(qtbot, view, tensor_node(view, "flags"))  # "false" is shorter than a float
    assert values.table.horizontalHeader().sectionSize(0) < wide


def test_every_dtype_the_converter_writes_is_shown_in_the_window(qtbot, window, tmp_path):
    """One SafeTensors file written by safetensors.torch with a tensor of every dtype the converter
    writes (airlock.core.dtypes: `writable`), each shown in the Values tab as torch reads it."""
    from safetensors.torch import save_file

    from airlock.core import dtypes

    rng = np.random.default_rng(5)
    tensors, expected = {}, {}
    for d in (d for d in dtypes.TABLE if d.writable):
        kind = getattr(torch, d.torch)
        if d.code == "BOOL":
            t = torch.from_numpy(rng.integers(0, 2, (3, 5)).astype(bool))
        elif d.code.startswith(("I", "U")):
            t = torch.from_numpy(rng.integers(0, 100, (3, 5)).astype(d.numpy))
        elif d.code == "C64":
            t = torch.from_numpy((rng.normal(size=(3, 5)) + 1j * rng.normal(size=(3, 5))).astype(np.complex64))
        else:  # floats; E8M0 holds powers of two only, so positive values
            t = torch.from_numpy(np.abs(rng.normal(0, 2, (3, 5))).astype(np.float32) + 0.1).to(kind)
        tensors[f"t_{d.code}"] = t
        expected[f"t_{d.code}"] = t.numpy() if d.code == "C64" or d.numpy else t.float().numpy()
    path = tmp_path / "every.safetensors"
    save_file(tensors, str(path))
    view = open_file(qtbot, window, path)
    seen = set()
    for name, want in expected.items():
        values = show_values(qtbot, view, tensor_node(view, name))
        assert table(values) == [[format_value(v) for v in row] for row in want], name
        seen.add(values.tensor.dtype.code)
    assert seen == {d.code for d in dtypes.TABLE if d.writable}
    assert {"F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0", "C64", "U64", "BF16"} <= seen
