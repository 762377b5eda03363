"""Every finding of one file (severity, rule, message, offset) and the verdict banner above them."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QAbstractItemView, QFrame, QHBoxLayout, QHeaderView, QLabel, QTableView, QWidget

from airlock.core import inspection
from airlock.core.findings import Finding, Severity
from airlock.core.text import safe_text
from airlock.core.verdict import Verdict, could_not_open, of_findings, rule_title, sorted_findings
from airlock.gui import theme
from airlock.gui.policy_marks import Marks, is_suppressed, policy_data
from airlock.gui.tree_model import plain_tooltip

COL_SEVERITY, COL_RULE, COL_MESSAGE, COL_OFFSET, COL_WHERE = range(5)
HEADERS = ("Severity", "Rule", "Message", "Offset", "Where")
FINDING_ROLE = Qt.ItemDataRole.UserRole + 1

AnyIndex = QModelIndex | QPersistentModelIndex
_NO_INDEX = QModelIndex()  # default argument of the Qt model API


class VerdictBanner(QFrame):
    """A coloured strip with icon and text: the verdict is readable by colour, shape and words."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("verdict")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        self.icon = QLabel()
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # file content is never rich text
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = QFont(self.label.font())
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        self.label.setFont(font)
        # Grey, beside the verdict: what Airlock did not read (never hidden behind a green check).
        self.badge = QLabel()
        self.badge.setObjectName("not_inspected")
        self.badge.setTextFormat(Qt.TextFormat.PlainText)
        self.badge.setWordWrap(True)
        self.badge.setStyleSheet(f"QLabel#not_inspected {{ background: {theme.NOT_INSPECTED}; color: white; "
                                 "border-radius: 4px; padding: 2px 8px; }")
        self.badge.setVisible(False)
        self.inspected = inspection.FULL
        self.verdict: Verdict | None = None
        layout.addWidget(self.icon)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.badge)
        self.set_pending("Analysing…")

    def set_pending(self, text: str) -> None:
        self.verdict = None
        self.badge.setVisible(False)
        self._paint(Severity.INFO, text)

    def set_verdict(self, findings: list[Finding], fmt: str, inspected: str = inspection.FULL) -> None:
        self.show_verdict(of_findings(findings, fmt, inspected))

    def set_failed(self, message: str) -> None:
        self.show_verdict(could_not_open(message))

    def show_verdict(self, verdict: Verdict) -> None:
        """Paint a verdict core worded (airlock.core.verdict)."""
        self.verdict = verdict
        self._paint(verdict.severity, verdict.text)
        self.inspected = verdict.inspected
        self.badge.setVisible(bool(verdict.badge))
        if verdict.badge:
            self.badge.setText(verdict.badge)
            self.badge.setToolTip(plain_tooltip("\n".join(verdict.reasons)))

    def _paint(self, severity: Severity, text: str) -> None:
        self.severity = severity
        self.icon.setPixmap(theme.severity_pixmap(severity, 28))
        self.label.setText(text)
        self.setStyleSheet(f"QFrame#verdict {{ background: {theme.BADGE[severity]}; border-radius: 6px; }}"
                           "QFrame#verdict QLabel { color: white; }")


class FindingsModel(QAbstractTableModel):
    def __init__(self, findings: list[Finding], parent: Any = None, marks: Marks | None = None) -> None:
        super().__init__(parent)
        self.marks: Marks = marks or {}
        ordered = sorted_findings(findings)  # what a policy suppressed goes last, still shown
        self.findings = [f for f in ordered if not is_suppressed(f, self.marks)] + \
                        [f for f in ordered if is_suppressed(f, self.marks)]

    def rowCount(self, parent: AnyIndex = _NO_INDEX) -> int:
        return 0 if parent.isValid() else len(self.findings)

    def columnCount(self, parent: AnyIndex = _NO_INDEX) -> int:
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(HEADERS):
            return HEADERS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.findings):
            return None
        f = self.findings[index.row()]
        col = index.column()
        marks = self.marks.get(id(f))
        if marks:
            marked = policy_data(f, marks, col, role)
            if marked is not None:
                return marked
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_SEVERITY:
                return f.severity.label.upper()
            if col == COL_RULE:
                return f.rule
            if col == COL_MESSAGE:
                return safe_text(f.message, 400)
            if col == COL_OFFSET:
                return "" if f.offset is None else f"{f.offset:,}"
            if col == COL_WHERE:
                return safe_text(f.member, 120) if f.member else safe_text(f.node_path() or "", 200)
        if role == FINDING_ROLE:
            return f
        if role == Qt.ItemDataRole.DecorationRole and col == COL_SEVERITY:
            return theme.severity_icon(f.severity)
        if role == Qt.ItemDataRole.ForegroundRole and col == COL_SEVERITY:
            return theme.text_color(f.severity)
        if role == Qt.ItemDataRole.BackgroundRole:
            return theme.tint(f.severity)
        if role == Qt.ItemDataRole.ToolTipRole:
            title = rule_title(f.rule)
            where = f"\nin member {safe_text(f.member, 200)}" if f.member else ""
            return plain_tooltip(f"{f.rule} {title}\n{safe_text(f.message, 1000)}{where}")
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_OFFSET:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class FindingsPanel(QTableView):
    """The findings table. Emits `activated_finding` when the selection moves to a finding."""

    activated_finding = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.verticalHeader().setVisible(False)
        self.setAccessibleName("Findings")
        self.set_findings([])

    def set_findings(self, findings: list[Finding], marks: Marks | None = None) -> None:
        model = FindingsModel(findings, self, marks)
        old = self.model()
        self.setModel(model)
        if old is not None:
            old.deleteLater()
        self.selectionModel().currentRowChanged.connect(self._row_changed)
        header = self.horizontalHeader()
        header.setSectionResizeMode(COL_SEVERITY, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_RULE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_MESSAGE, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_OFFSET, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_WHERE, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(COL_WHERE, 260)

    @property
    def findings(self) -> list[Finding]:
        model = self.model()
        return model.findings if isinstance(model, FindingsModel) else []

    def select_row(self, row: int) -> None:
        model = self.model()
        if 0 <= row < model.rowCount():
            self.setCurrentIndex(model.index(row, COL_MESSAGE))

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.activated_finding.emit(current.data(FINDING_ROLE))
