"""Export: one-click SafeTensors conversion (a worker calling core's `convert`), and reports.

Conversion runs `airlock.core.convert.convert` in a worker with a progress dialog and cancel;
a file with critical findings needs an explicit confirmation. Reports are the CLI's JSON and
SARIF documents, or a standalone HTML page in which every string is escaped.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog, QWidget

from airlock.core import __version__
from airlock.core.findings import Severity
from airlock.core.scan import ScanResult
from airlock.core.text import human_size, safe_text
from airlock.gui import theme
from airlock.gui.findings_panel import rule_title, sorted_findings, verdict_text
from airlock.gui.workers import FunctionWorker, pool

CONVERTIBLE = ("npz", "npy", "gguf")

_FLOWS: set[ConvertFlow] = set()  # alive until they finish


def converter() -> Callable[..., Any] | None:
    try:
        from airlock.core.convert import convert
    except ImportError:
        return None
    return convert  # type: ignore[no-any-return]


def can_convert(view: Any) -> bool:
    result = getattr(view, "result", None)
    if result is None or converter() is None:
        return False
    fmt = str(result.format)
    return fmt.startswith("torch") or fmt in CONVERTIBLE


def default_output(path: str) -> str:
    stem, _ = os.path.splitext(path)
    return stem + ".safetensors"


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
        self.fraction = 0.0  # last progress the converter reported

    def start(self) -> bool:
        result: ScanResult | None = self.view.result
        if result is None or self.convert_fn is None:
            return False
        critical = result.severity >= Severity.CRITICAL
        if critical and not self.confirm_critical(verdict_text(result.findings, result.format)):
            self.done.emit("declined", None)
            return False
        output = self.ask_output(default_output(self.view.path))
        if not output:
            self.done.emit("declined", None)
            return False
        dialog = QProgressDialog("Converting to SafeTensors (nothing in the input is executed)…", "Cancel",
                                 0, 1000, self.window)
        dialog.setWindowTitle("Export to SafeTensors")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setValue(0)
        worker = FunctionWorker(self.convert_fn, self.view.path, output, allow_critical=critical,
                                overwrite=True)
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

    def _finish(self, status: str, payload: object, title: str, text: str, icon: QMessageBox.Icon) -> None:
        if self.dialog is not None:
            self.dialog.close()
        _FLOWS.discard(self)
        if not self.quiet:
            self.summary = message_box(self.window, icon, title, text)
            self.summary.open()
        self.done.emit(status, payload)

    def _returned(self, report: Any) -> None:
        if self.worker is not None and self.worker.is_cancelled:
            self._finish("cancelled", None, "Export cancelled",
                         "The conversion was cancelled; nothing was written.", QMessageBox.Icon.Information)
            return
        self._finish("ok", report, "Export finished", summary_text(report), QMessageBox.Icon.Information)

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


def _detail(detail: str | None) -> str:
    """A finding's several-line detail (a template's drift diff), escaped line by line."""
    if not detail:
        return ""
    lines = (html.escape(safe_text(line, 400), quote=True) for line in detail.splitlines()[:200])
    return "<pre>" + "\n".join(lines) + "</pre>"


def html_report(result: ScanResult) -> str:
    """A standalone page. Every value from the file goes through safe_text, then html.escape."""

    def e(value: object, n: int = 400) -> str:
        return html.escape(safe_text(str(value), n), quote=True)

    sev = result.severity
    rows = []
    for f in sorted_findings(result.findings):
        rows.append(
            f"<tr class='s{int(f.severity)}'><td>{e(f.severity.label.upper())}</td><td>{e(f.rule)}</td>"
            f"<td>{e(rule_title(f.rule))}</td><td>{e(f.message, 2000)}{_detail(f.detail)}</td>"
            f"<td class='num'>{'' if f.offset is None else f'{f.offset:,}'}</td>"
            f"<td>{e(f.member or '', 300)}</td><td>{e(f.node_path() or '', 600)}</td></tr>")
    table = "\n".join(rows) or "<tr><td colspan='7'>No findings.</td></tr>"
    colors = "\n".join(f".s{int(s)} td:first-child {{ color: {c}; font-weight: bold; }}"
                       for s, c in theme.TEXT_LIGHT.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Airlock report: {e(os.path.basename(result.path), 120)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #111827; }}
.verdict {{ background: {theme.BADGE[sev]}; color: white; padding: .8em 1em; border-radius: 6px;
  font-size: 1.2em; font-weight: bold; }}
table {{ border-collapse: collapse; width: 100%; margin-top: 1em; }}
td, th {{ border: 1px solid #d1d5db; padding: .3em .5em; text-align: left; vertical-align: top;
  font-size: .9em; overflow-wrap: anywhere; }}
th {{ background: #f3f4f6; }} .num {{ text-align: right; font-variant-numeric: tabular-nums; }}
{colors}
</style></head><body>
<h1>Airlock report</h1>
<p class="verdict">{e(verdict_text(result.findings, result.format), 600)}</p>
<table>
<tr><th>File</th><td>{e(result.path, 1000)}</td></tr>
<tr><th>Format</th><td>{e(result.format)}</td></tr>
<tr><th>Size</th><td>{e(human_size(result.size) if result.size is not None else "?")}</td></tr>
<tr><th>Verdict</th><td>{e(sev.label)}</td></tr>
<tr><th>Airlock</th><td>{e(__version__)} — the file was read, never loaded or executed</td></tr>
</table>
<h2>Findings ({len(result.findings)})</h2>
<table>
<tr><th>Severity</th><th>Rule</th><th>Title</th><th>Message</th><th>Offset</th><th>Member</th><th>Node</th></tr>
{table}
</table>
</body></html>
"""


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
