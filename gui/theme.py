"""Light and dark palettes, and severity shown three ways: colour, icon shape and text.

The icons are drawn with QPainter (no image files to ship or keep in sync); each severity has its
own shape so that a colour-blind reviewer can tell them apart: octagon (critical), triangle
(high), diamond (medium), circle (low), "i" (info), tick (nothing found).
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QPointF, QRectF, QSettings, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QIcon,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import QApplication

from airlock.core import verdict
from airlock.core.findings import Severity

SYSTEM, LIGHT, DARK = "system", "light", "dark"

# Strong colours for icons and badges, the grey "not fully inspected" badge, the words of each
# verdict and the text colours for light themes: one definition for every view (airlock.core.verdict).
BADGE = verdict.BADGE
NOT_INSPECTED = verdict.NOT_INSPECTED
TEXT_LIGHT = verdict.TEXT_LIGHT
VERDICT_WORD = verdict.WORD
# Text colours for the Risk column on the dark theme's base colour.
TEXT_DARK = {
    Severity.CRITICAL: "#ff6b7d", Severity.HIGH: "#ff9a52", Severity.MEDIUM: "#f5c542",
    Severity.LOW: "#7fb0ff", Severity.INFO: "#b8c2d0", Severity.NONE: "#5fd48a",
}
# Row tints behind risky rows (alpha keeps the selection colour visible).
TINT_ALPHA = {Severity.CRITICAL: 70, Severity.HIGH: 50, Severity.MEDIUM: 35}


def severity_text(severity: Severity) -> str:
    return "" if severity == Severity.NONE else severity.label


def is_dark() -> bool:
    app = QGuiApplication.instance()
    if not isinstance(app, QGuiApplication):
        return False
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def text_color(severity: Severity) -> QColor:
    return QColor((TEXT_DARK if is_dark() else TEXT_LIGHT)[severity])


def tint(severity: Severity) -> QColor | None:
    alpha = TINT_ALPHA.get(severity)
    if alpha is None:
        return None
    color = QColor(BADGE[severity])
    color.setAlpha(alpha)
    return color


@cache
def severity_icon(severity: Severity, size: int = 16) -> QIcon:
    return QIcon(severity_pixmap(severity, size))


def severity_pixmap(severity: Severity, size: int = 16) -> QPixmap:
    pix = QPixmap(size * 2, size * 2)  # drawn at 2x for high-DPI screens
    pix.setDevicePixelRatio(2.0)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    color = QColor(BADGE[severity])
    s = float(size)
    m = s * 0.08
    path = QPainterPath()
    if severity == Severity.CRITICAL:
        k = s * 0.29
        pts = [(k, m), (s - k, m), (s - m, k), (s - m, s - k), (s - k, s - m), (k, s - m), (m, s - k), (m, k)]
        path.moveTo(*pts[0])
        for pt in pts[1:]:
            path.lineTo(*pt)
        path.closeSubpath()
    elif severity == Severity.HIGH:
        path.moveTo(s / 2, m)
        path.lineTo(s - m, s - m)
        path.lineTo(m, s - m)
        path.closeSubpath()
    elif severity == Severity.MEDIUM:
        path.moveTo(s / 2, m)
        path.lineTo(s - m, s / 2)
        path.lineTo(s / 2, s - m)
        path.lineTo(m, s / 2)
        path.closeSubpath()
    else:
        path.addEllipse(QRectF(m, m, s - 2 * m, s - 2 * m))
    p.fillPath(path, color)
    p.setPen(QPen(QColor("white"), max(1.5, s / 9), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    if severity in (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM):
        top = s * (0.38 if severity == Severity.HIGH else 0.28)
        p.drawLine(QPointF(s / 2, top), QPointF(s / 2, s * 0.58))
        p.drawPoint(QPointF(s / 2, s * 0.74))
    elif severity == Severity.INFO:
        p.drawPoint(QPointF(s / 2, s * 0.3))
        p.drawLine(QPointF(s / 2, s * 0.46), QPointF(s / 2, s * 0.72))
    elif severity == Severity.NONE:
        tick = [QPointF(s * 0.28, s * 0.52), QPointF(s * 0.44, s * 0.68), QPointF(s * 0.72, s * 0.34)]
        p.drawPolyline(tick)
    p.end()
    return pix


def app_icon() -> QIcon:
    pix = QPixmap(128, 128)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor("#1e293b"))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(QRectF(4, 4, 120, 120), 24, 24)
    p.setPen(QPen(QColor("#f8fafc"), 10))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRoundedRect(QRectF(30, 56, 68, 48), 8, 8)  # a padlock: the file is looked at, never opened
    p.drawArc(QRectF(42, 22, 44, 56), 0, 180 * 16)
    p.setPen(QPen(QColor("#f59e0b"), 10, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.drawPoint(QPointF(64, 80))
    p.end()
    return QIcon(pix)


def _palette(dark: bool) -> QPalette:
    pal = QPalette()
    if dark:
        window, base, alt, text, button, hl = "#1f2329", "#16191d", "#1c2026", "#e6e9ee", "#2a2f36", "#2f6fd6"
        disabled = "#7b838f"
    else:
        window, base, alt, text, button, hl = "#f3f4f6", "#ffffff", "#f6f7f9", "#111827", "#e9ebef", "#2563eb"
        disabled = "#8a929e"
    roles = QPalette.ColorRole
    pal.setColor(roles.Window, QColor(window))
    pal.setColor(roles.WindowText, QColor(text))
    pal.setColor(roles.Base, QColor(base))
    pal.setColor(roles.AlternateBase, QColor(alt))
    pal.setColor(roles.Text, QColor(text))
    pal.setColor(roles.Button, QColor(button))
    pal.setColor(roles.ButtonText, QColor(text))
    pal.setColor(roles.ToolTipBase, QColor(base))
    pal.setColor(roles.ToolTipText, QColor(text))
    pal.setColor(roles.PlaceholderText, QColor(disabled))
    pal.setColor(roles.Highlight, QColor(hl))
    pal.setColor(roles.HighlightedText, QColor("#ffffff"))
    pal.setColor(roles.Link, QColor("#7fb0ff" if dark else "#1d4ed8"))
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(disabled))
    return pal


def system_prefers_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    return scheme is not None and scheme() == Qt.ColorScheme.Dark


def saved_choice() -> str:
    value = QSettings().value("view/theme", SYSTEM)
    return value if value in (SYSTEM, LIGHT, DARK) else SYSTEM


def apply(choice: str | None = None, *, remember: bool = True) -> str:
    """Apply a theme ("system", "light", "dark"); remembers the choice if asked. Returns it."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return SYSTEM
    if choice is None:
        choice = saved_choice()
    elif remember:
        QSettings().setValue("view/theme", choice)
    dark = system_prefers_dark() if choice == SYSTEM else choice == DARK
    app.setStyle("Fusion")  # the same look on every platform, and palettes are honoured
    app.setPalette(_palette(dark))
    return choice


def monospace_font() -> QFont:
    font = QFont("monospace")
    font.setStyleHint(QFont.StyleHint.TypeWriter)
    font.setFixedPitch(True)
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication):
        font.setPointSizeF(app.font().pointSizeF())  # QFont("monospace") alone defaults to 12 pt
    return font
