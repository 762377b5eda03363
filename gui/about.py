"""About Airlock: version, the formats it reads, and the licences of Airlock and its libraries."""

from __future__ import annotations

from importlib import resources

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from airlock.core import __version__


def supported_formats() -> list[str]:
    from airlock.core import formats

    lines = []
    for module in formats.load_all_modules():
        exts = ", ".join(getattr(module, "EXTENSIONS", ())) or "any name"
        lines.append(f"{module.NAME}  ({exts})")
    return lines


def licence_text() -> str:
    parts = ["Airlock is licensed under the Apache License 2.0.", ""]
    folder = resources.files("airlock.resources") / "licenses"
    for name in ("THIRD_PARTY.md", "LGPL-NOTICE.txt"):
        try:
            parts.append((folder / name).read_text(encoding="utf-8"))
        except OSError:
            parts.append(f"({name} is missing from this installation)")
    return "\n".join(parts)


def about_text() -> str:
    return "\n".join([
        f"Airlock {__version__}",
        "Looks inside machine-learning model files without ever loading or executing them.",
        "",
        "Formats it reads (decided by content, never by the name):",
        *(f"  • {line}" for line in supported_formats()),
        "  Anything else is reported as \"not inspected\", never as clean.",
    ])


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Airlock")
        self.resize(720, 640)
        header = QLabel(about_text())
        header.setTextFormat(Qt.TextFormat.PlainText)
        header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        licences = QPlainTextEdit(licence_text())
        licences.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(header)
        layout.addWidget(QLabel("Licences"))
        layout.addWidget(licences, 1)
        layout.addWidget(buttons)
