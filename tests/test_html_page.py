"""The HTML report page (airlock.core.report.html), as the desktop app's Export Report builds it."""

import re

from fixtures.gguf_files import system_pickle

from airlock.core.report import html
from airlock.core.scan import scan_bytes


def test_one_result_page_is_self_contained_and_escaped():
    name = "evil<script>alert(1)</script>\u202e.pkl"
    result = scan_bytes(system_pickle(), name)
    try:
        page = html.render_result(result)
    finally:
        result.close()
    assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page
    assert "<script" not in page and "&lt;script&gt;" in page and "\u202e" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*['"]?(?:https?:|//)""", page)  # nothing loaded from outside
    assert "CRITICAL" in page and "os.system" in page and "PKL" in page
