"""The verdict banner: coloured by severity, a grey "not fully inspected" badge with why, and never the
green check for a file Airlock did not fully read. Wording and state come from airlock.core.inspection."""

import struct

from fixtures import archive_files as af

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes
from airlock.gui import theme
from airlock.gui.findings_panel import VerdictBanner


def banner_for(qtbot, data, name):
    banner = VerdictBanner()
    qtbot.addWidget(banner)
    result = scan_bytes(data, name)
    banner.set_verdict(result.findings, result.format, result.inspected)
    result.close()
    return banner


def test_unknown_content_gets_the_grey_badge_and_no_green_check(qtbot):
    banner = banner_for(qtbot, bytes(range(256)) * 8, "weights.bin")
    assert not banner.badge.isHidden()
    assert banner.badge.text().startswith("NOT INSPECTED: unrecognised binary content")
    assert theme.NOT_INSPECTED in banner.badge.styleSheet()
    assert banner.badge.textFormat().name == "PlainText"
    assert banner.severity == Severity.MEDIUM  # coloured by severity, not green


def test_partly_inspected_archive_says_why(qtbot):
    banner = banner_for(qtbot, af.sevenz({"p.pkl": af.SYSTEM_PICKLE}, password="pw"), "m.7z")
    assert banner.badge.text().startswith("NOT FULLY INSPECTED: 1 member(s) packed with coder AES")
    assert banner.severity == Severity.MEDIUM


def test_claimed_format_that_fails_is_high_with_the_badge(qtbot):
    banner = banner_for(qtbot, struct.pack("<Q", 1 << 62), "model.safetensors")
    assert banner.severity == Severity.HIGH
    assert not banner.badge.isHidden()


def test_fully_inspected_files_have_no_badge(qtbot):
    clean = banner_for(qtbot, af.torch_zip_bytes(), "model.pt")
    assert clean.badge.isHidden() and clean.severity <= Severity.INFO
    inert = banner_for(qtbot, b"# readme\n", "README.md")
    assert inert.badge.isHidden() and inert.severity <= Severity.INFO  # a note only: read as clean


def test_pending_hides_the_badge(qtbot):
    banner = banner_for(qtbot, bytes(range(256)) * 8, "weights.bin")
    banner.set_pending("Analysing…")
    assert banner.badge.isHidden()


def test_a_file_airlock_could_not_open_has_its_own_wording(qtbot):
    banner = VerdictBanner()
    qtbot.addWidget(banner)
    banner.set_failed("Permission denied")
    assert banner.label.text().startswith("COULD NOT OPEN — Airlock failed on this file: Permission denied")
    assert banner.severity == Severity.HIGH and banner.verdict.word == "COULD NOT OPEN"
    assert banner.badge.isHidden()
