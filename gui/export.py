"""Export: one-click SafeTensors conversion (a worker calling core's `convert`), and reports.

Conversion runs `airlock.core.convert.convert` in a worker with a progress dialog and cancel;
a file with critical findings needs an explicit confirmation. Reports are the CLI's JSON, SARIF and
HTML documents (airlock.core.report), in which every string is escaped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog, QPushButton, QWidget

from airlock.core.findings import Severity
from airlock.core.scan import ScanResult
from airlock.core.text import human_size, safe_text
from airlock.core.verdict import sentence
from airlock.gui.workers import FunctionWorker, pool

CONVERTIBLE = ("npz", "npy", "gguf", "onnx")  # and torch_*; what airlock convert reads
SHARDED_INDEX = ".bin.index.json"  # a sharded torch checkpoint: the converter reads its shards

_FLOWS: set[ConvertFlow] = set()  # alive until they finish


def converter() -> Callable[..., Any] | None:
    try:
        from airlock.core.convert import convert
    except ImportError:
        return None
    return convert


def can_convert(view: Any) -> bool:
    result = getattr(view, "result", None)
    if result is None or converter() is None:
        return False
    fmt = str(result.format)
    return fmt.startswith("torch") or fmt in CONVERTIBLE or str(result.path).endswith(SHARDED_INDEX)


def default_output(path: str) -> str:
    if path.endswith(SHARDED_INDEX):  # the whole checkpoint, as `airlock convert FOLDER` names it
        return os.path.join(os.path.dirname(path), "model.safetensors")
    stem, _ = os.path.splitext(path)
    return stem + ".safetensors"


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_umask_mode(paths: list[str], created: set[str]) -> None:
    """Files this conversion created get the mode any new file gets (0666 less the umask), not the 0600
    of the temporary file they were renamed from; files it replaced keep theirs."""
    mode = 0o666 & ~umask()
    for path in paths:
        try:
            if path in created and os.stat(path).st_mode & 0o777 == 0o600 and mode != 0o600:
                os.chmod(path, mode)
        except OSError:
            continue


def show_in_folder(path: str) -> bool:
    """Open the file manager on the folder holding `path` (QDesktopServices: xdg-open, Finder, Explorer)."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(os.path.abspath(path))))


def message_box(parent: QWidget | None, icon: QMessageBox.Icon, title: str, text: str,
                buttons: QMessageBox.StandardButton = QMessageBox.StandardButton.Ok) -> QMessageBox:
    box = QMessageBox(icon, title, text, buttons, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)  # messages quote file content
    return box


class ConvertFlow(QObject):
    """Confirm → choose output → convert in a worker with progress and cancel → summary."""

    done = Signal(str, object)  # "ok" | "error" | "cancelled" | "declined", report or message

    def __init__(self, window: QWidget, view: Any, *, convert_fn: Callable[..., Any] | None = None,
                 ask_output: Callable[[str], str | None] | None = None,
                 confirm_critical: Callable[[str], bool] | None = None, quiet: bool = False) -> None:
        super().__init__(window)
        self.window = window
        self.view = view
        self.convert_fn = convert_fn or converter()
        self.ask_output = ask_output or self._ask_output
        self.confirm_critical = confirm_critical or self._confirm_critical
        self.quiet = quiet  # tests: no modal summary boxes
        self.dialog: QProgressDialog | None = None
        self.worker: FunctionWorker | None = None
        self.summary: QMessageBox | None = None
        self.show_folder: QPushButton | None = None
        self.fraction = 0.0  # last progress the converter reported
        self.output = ""
        self.existed: set[str] = set()

    def start(self) -> bool:
        result: ScanResult | None = self.view.result
        if result is None or self.convert_fn is None:
            return False
        critical = result.severity >= Severity.CRITICAL
        if critical and not self.confirm_critical(sentence(result.findings, result.format)):
            self.done.emit("declined", None)
            return False
        output = self.ask_output(default_output(self.view.path))
        if not output:
            self.done.emit("declined", None)
            return False
        self.output = output
        self.existed = {p for p in (output,) if os.path.exists(p)}
        dialog = QProgressDialog("Converting to SafeTensors (nothing in the input is executed)…", "Cancel",
                                 0, 1000, self.window)
        dialog.setWindowTitle("Export to SafeTensors")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setValue(0)
        # A quantized GGUF has no SafeTensors dtype for its weights: the only complete export is F32.
        extra = {"dequantize": True} if str(result.format) == "gguf" else {}
        worker = FunctionWorker(self.convert_fn, self.view.path, output, allow_critical=critical,
                                overwrite=True, **extra)
        worker.signals.progress.connect(self._progress)
        worker.signals.returned.connect(self._returned)
        worker.signals.errored.connect(self._errored)
        dialog.canceled.connect(worker.cancel)
        self.dialog, self.worker = dialog, worker
        _FLOWS.add(self)
        pool().start(worker)
        return True

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        if self.dialog is not None:
            self.dialog.cancel()

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction = fraction
        if self.dialog is not None and not self.dialog.wasCanceled():
            self.dialog.setValue(int(fraction * 1000))
            if message:
                self.dialog.setLabelText(safe_text(message, 120))

    def _finish(self, status: str, payload: object, title: str, text: str, icon: QMessageBox.Icon,
                folder_of: str | None = None) -> None:
        if self.dialog is not None:
            self.dialog.close()
        _FLOWS.discard(self)
        self.summary = message_box(self.window, icon, title, text)
        if folder_of is not None:
            self.show_folder = self.summary.addButton("Show in Folder", QMessageBox.ButtonRole.ActionRole)
            self.show_folder.clicked.connect(lambda: show_in_folder(folder_of))
        self.summary.addButton(QMessageBox.StandardButton.Ok)
        if not self.quiet:
            self.summary.open()
        self.done.emit(status, payload)

    def _returned(self, report: Any) -> None:
        if report is None or (self.worker is not None and self.worker.is_cancelled):
            self._finish("cancelled", None, "Export cancelled",
                         "The conversion was cancelled; nothing was written.", QMessageBox.Icon.Information)
            return
        outputs = [str(p) for p in getattr(report, "outputs", None) or []]
        index = getattr(report, "index_path", None)
        written = outputs + ([str(index)] if index else [])
        give_umask_mode(written, {p for p in written if p not in self.existed})
        self._finish("ok", report, "Export finished", summary_text(report), QMessageBox.Icon.Information,
                     folder_of=outputs[0] if outputs else self.output)

    def _errored(self, message: str) -> None:
        if self.worker is not None and self.worker.is_cancelled:
            self._finish("cancelled", message, "Export cancelled",
                         "The conversion was cancelled; nothing was written.", QMessageBox.Icon.Information)
            return
        self._finish("error", message, "Export failed", f"The conversion failed:\n{safe_text(message, 600)}",
                     QMessageBox.Icon.Warning)

    def _ask_output(self, suggested: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export to SafeTensors", suggested,
                                              "SafeTensors (*.safetensors)")
        return path or None

    def _confirm_critical(self, verdict: str) -> bool:
        box = message_box(self.window, QMessageBox.Icon.Warning, "This file has critical findings",
                          f"{verdict}\n\nThe conversion copies only tensor bytes and never runs the file, "
                          "but the file itself is hostile. Convert anyway?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        return box.exec() == QMessageBox.StandardButton.Yes


def summary_text(report: Any) -> str:
    outputs = getattr(report, "outputs", None) or []
    written = human_size(int(getattr(report, "bytes", 0) or 0))
    seconds = float(getattr(report, "seconds", 0.0) or 0.0)
    lines = [f"{getattr(report, 'tensors', '?')} tensor(s), {written} written in {seconds:.2f} s"]
    lines += [f"→ {safe_text(str(p), 300)}" for p in outputs[:10]]
    verified = getattr(report, "verified", None)
    detail = safe_text(str(getattr(report, "verification", "")), 300)
    lines.append("Verification: " + ("passed" if verified else "off" if verified is None else "FAILED")
                 + (f" ({detail})" if detail else ""))
    skipped = getattr(report, "skipped", None) or []
    if skipped:
        lines.append(f"{len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} not converted, e.g. "
                     f"{safe_text(str(skipped[0][0]), 80)}: {safe_text(str(skipped[0][1]), 120)}")
    return "\n".join(lines)


# Reports


def report_text(result: ScanResult, kind: str) -> str:
    from airlock.core.report.json_report import file_dict

    entry = file_dict(result)
    if kind == "json":
        from airlock.core.report import json_report

        return json_report.render([entry])
    if kind == "sarif":
        from airlock.core.report import sarif

        return sarif.render([entry])
    return html_report(result)


def html_report(result: ScanResult) -> str:
    """A standalone page: the same code as `airlock scan --format html` (airlock.core.report.html),
    with the review trail the app knows for this file (its sha256 and decision, once looked up)."""
    from airlock.core.report import html as html_page
    from airlock.gui import review

    return html_page.render_result(result, review.known_fields(result.path))


def save_report_dialog(window: QWidget, result: ScanResult, kind: str) -> str | None:
    suffix = {"json": ".json", "sarif": ".sarif", "html": ".html"}[kind]
    stem = os.path.splitext(os.path.basename(result.path))[0] or "report"
    filters = {"json": "JSON (*.json)", "sarif": "SARIF (*.sarif *.json)", "html": "HTML (*.html)"}[kind]
    path, _ = QFileDialog.getSaveFileName(window, f"Export {kind.upper()} report",
                                          stem + ".airlock" + suffix, filters)
    if not path:
        return None
    try:
        write_report(result, kind, path)
    except OSError as exc:
        message_box(window, QMessageBox.Icon.Warning, "Export failed",
                    f"Could not write {path}: {exc}").exec()
        return None
    return path


def write_report(result: ScanResult, kind: str, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(report_text(result, kind))
