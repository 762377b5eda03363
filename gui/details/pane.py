"""The details of the selected node: its attributes above, and views of its bytes below."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QWidget,
)

from airlock.core.errors import AirlockError
from airlock.core.findings import Finding
from airlock.core.locate import Location, finding_location, node_location, resolve
from airlock.core.text import human_size, safe_text
from airlock.core.tree import CALL, INITIALIZER, TEMPLATE, TENSOR, TEXT, Node
from airlock.gui.details.code import CodeView, code_holder
from airlock.gui.details.decompiled import MAX_PICKLE_BYTES, DecompiledView, pickle_ancestor, risky_names
from airlock.gui.details.file_hash import FileHashBar
from airlock.gui.details.hex import HexView
from airlock.gui.details.template import TemplateView
from airlock.gui.details.tensor_stats import TensorStatsView
from airlock.gui.policy_marks import Marks
from airlock.gui.values_view import ValuesView

TAB_HEX, TAB_DECOMPILED, TAB_TEMPLATE, TAB_TENSOR, TAB_CODE, TAB_VALUES = range(6)


def attribute_rows(node: Node, marks: Marks | None = None) -> list[tuple[str, str]]:
    rows = [("path", safe_text(node.path(), 400)), ("kind", node.kind)]
    if node.offset is not None:
        rows.append(("offset", f"{node.offset:,} (0x{node.offset:x})"))
    if node.length is not None:
        rows.append(("length", f"{node.length:,} bytes ({human_size(node.length)})"))
    if node.member is not None:
        rows.append(("member", safe_text(node.member, 300) + "  (offsets are relative to this member)"))
    rows.append(("risk", node.severity.label if node.severity else "none"))
    if node.child_count:
        rows.append(("children", f"{node.child_count:,}" + (" (loaded on demand)" if node.is_lazy else "")))
    for key, value in node.attrs.items():
        if key == "span":
            continue  # where the Code tab marks the call
        if key in ("text", "marks", "drift"):
            tab = "Code" if code_holder(node) is not None else "Template"
            shown = f"{len(value):,} characters, see the {tab} tab" if isinstance(value, str) else ""
        elif key == "shape" and isinstance(value, tuple | list):
            shown = " × ".join(str(v) for v in value) or "scalar"
        else:
            shown = safe_text(_plain(value), 400)
        rows.append((safe_text(str(key), 60), shown))
    for finding in node.findings:
        changed = "".join(f"  [{m.describe()}]" for m in (marks or {}).get(id(finding), ()))  # the policy's
        rows.append((f"finding {finding.rule}",
                     f"{finding.severity.label.upper()}: {safe_text(finding.message, 400)}{changed}"))
    return rows


def _plain(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value[:50]) + (" …" if len(value) > 50 else "")
    return str(value)


def call_span(node: Node, loc: Location) -> Location | None:
    """A call's whole span in the file, from the GLOBAL / STACK_GLOBAL naming the callable (core records
    it as attrs["call_start"], in the node's coordinates) through the opcode that calls it; None when
    `node` is no call located at `loc`."""
    start = node.attrs.get("call_start")
    if node.kind != CALL or not isinstance(start, int) or not isinstance(node.offset, int) \
            or loc.offset is None:
        return None
    begin = resolve(node, start, from_member=node.member).offset
    if begin is None or not 0 <= start <= node.offset:
        return None
    end = begin + (node.offset - start) + max(node.length or 1, 1)  # past the calling opcode
    if not begin <= loc.offset < end:
        return None  # the finding points outside the call
    return Location(begin, end - begin, loc.note)


class AttributesTable(QTableWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Attribute", "Value"])
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setWordWrap(False)
        self.setAccessibleName("Attributes")

    def show_rows(self, rows: list[tuple[str, str]]) -> None:
        self.setRowCount(len(rows))
        for i, (key, value) in enumerate(rows):
            # QTableWidgetItem text is plain: nothing here is interpreted as markup.
            self.setItem(i, 0, QTableWidgetItem(key))
            item = QTableWidgetItem(value)
            item.setToolTip("")
            self.setItem(i, 1, item)


class DetailsPane(QSplitter):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self.attributes = AttributesTable()
        self.tabs = QTabWidget()
        self.hex = HexView()
        self.decompiled = DecompiledView()
        self.template = TemplateView()
        self.tensor = TensorStatsView()
        self.code = CodeView()
        self.tabs.addTab(self.hex, "Hex")
        self.tabs.addTab(self.decompiled, "Decompiled pickle")
        self.tabs.addTab(self.template, "Template")
        self.tabs.addTab(self.tensor, "Tensor statistics")
        self.tabs.addTab(self.code, "Code")
        self.values = ValuesView()  # gui/values_view.py: the values table and the .npy export
        self.tabs.addTab(self.values, "Values")
        self.addWidget(self.attributes)
        self.addWidget(self.tabs)
        self.setStretchFactor(0, 2)
        self.setStretchFactor(1, 3)
        self.file_hash = FileHashBar()  # the file's SHA-256 and size, computed in a worker
        self.insertWidget(0, self.file_hash)
        self.setStretchFactor(0, 0)
        self.setCollapsible(0, False)
        self._source: Any = None
        self._pickle_shown: Node | None = None
        self.node: Node | None = None
        self.marks: Marks = {}  # what the policy file changed in the findings (airlock.gui.policy_marks)
        self.set_source(None)

    def set_source(self, source: Any) -> None:
        """The ScanResult's open Source (or None): every byte view slices it, never reads it whole."""
        self._source = source
        if source is None:
            self.hex.clear("The file is not open.")
        else:
            self.hex.set_source(source.read, source.size)
        self._pickle_shown = None
        for tab in (TAB_DECOMPILED, TAB_TEMPLATE, TAB_TENSOR, TAB_CODE, TAB_VALUES):
            self.tabs.setTabVisible(tab, False)

    def release(self) -> None:
        """Let go of the file's bytes and nodes (the tab is closing): nothing here keeps them alive."""
        self.set_source(None)
        self.node = None
        self.attributes.show_rows([])
        self.decompiled.show_message("")
        self.template.text.show_text("")
        self.tensor.release()

    def read(self, offset: int, n: int) -> bytes:
        """Bytes of the open file, read with pread: a file truncated since the scan raises
        FormatError ("truncated"), which each view shows; never SIGBUS."""
        return b"" if self._source is None else bytes(self._source.read(offset, n))

    def show_node(self, node: Node | None, finding: Finding | None = None) -> None:
        self.node = node
        if node is None:
            self.attributes.show_rows([])
            return
        self.attributes.show_rows(attribute_rows(node, self.marks))
        loc = finding_location(finding, node) if finding is not None else node_location(node)
        span = call_span(node, loc)
        self._show_hex(span or loc, node, whole=span is not None)
        special = self._show_special(node)
        # A finding in a pickle opens on its bytes (the call marked whole); a template's, a tensor's or a
        # code file's finding on the view made for that node, where it is marked.
        if special is not None and (node.kind in (TENSOR, TEMPLATE, TEXT, INITIALIZER) or special == TAB_CODE
                                    or (finding is not None and special != TAB_DECOMPILED)):
            self.tabs.setCurrentIndex(special)
        elif finding is not None or not self.tabs.isTabVisible(self.tabs.currentIndex()):
            self.tabs.setCurrentIndex(TAB_HEX)

    def _show_hex(self, loc: Location, node: Node, *, whole: bool = False) -> None:
        if self._source is None:
            return
        length = loc.length if loc.length is not None else node.length
        if node.parent is None and loc.offset == 0:
            length = 0  # the whole file: marking every byte would hide nothing and show nothing
        self.hex.show_at(loc.offset, length, loc.note, whole=whole)

    def _show_special(self, node: Node) -> int | None:
        """Show the view that fits this node; returns its tab, or None."""
        anc = pickle_ancestor(node)
        self.tabs.setTabVisible(TAB_DECOMPILED, anc is not None)
        text_node = code_holder(node) is None and (
            node.kind == TEMPLATE or (node.kind == TEXT and isinstance(node.attrs.get("text"), str)))
        self.tabs.setTabVisible(TAB_TEMPLATE, text_node)
        self.tabs.setTabVisible(TAB_TENSOR, node.kind == TENSOR)
        has_values = node.kind in (TENSOR, INITIALIZER) and self._source is not None
        self.tabs.setTabVisible(TAB_VALUES, has_values)
        if has_values:
            self.values.show_node(node, self.read, self._source.size)
        holder = code_holder(node)
        self.tabs.setTabVisible(TAB_CODE, holder is not None)
        if holder is not None:
            self.code.show_node(node)
            return TAB_CODE
        if text_node:  # a chat template, or a model card's text: marks and drift
            self.tabs.setTabText(TAB_TEMPLATE, "Template" if node.kind == TEMPLATE else "Text")
            self.template.show_node(node)
            return TAB_TEMPLATE
        if node.kind == TENSOR:
            if self._source is None:
                self.tensor.show_message("Statistics not available: the file is not open.")
            else:
                self.tensor.show_tensor(node, self.read, self._source.size)
            return TAB_TENSOR
        if node.kind == INITIALIZER and has_values:
            return TAB_VALUES
        if anc is not None:
            if anc is not self._pickle_shown:
                self._pickle_shown = anc
                self._decompile(anc)
            return TAB_DECOMPILED
        return None

    def _decompile(self, anc: Node) -> None:
        loc = node_location(anc)
        if loc.offset is None or anc.length is None:
            self.decompiled.show_pickle(None, loc.note or "the pickle's bytes are not located in the file")
            return
        if anc.length > MAX_PICKLE_BYTES:
            self.decompiled.show_pickle(None, f"the pickle is {anc.length:,} bytes; the decompiled view "
                                        f"is limited to {MAX_PICKLE_BYTES:,}. The tree and findings cover "
                                        "all of it")
            return
        try:
            data = self.read(loc.offset, anc.length)
        except (AirlockError, OSError) as exc:  # the file shrank or went away since the scan
            self.decompiled.show_pickle(None, f"the file cannot be read any more: {exc}")
            return
        self.decompiled.show_pickle(data, names=risky_names(anc))

    def show_values(self) -> None:
        """Bring up the Values tab (for the node shown, when it has values)."""
        if self.tabs.isTabVisible(TAB_VALUES):
            self.tabs.setCurrentIndex(TAB_VALUES)
