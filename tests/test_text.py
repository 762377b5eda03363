"""Strings from files are escaped and elided before anything shows them."""

from airlock.core.text import escape, human_size, safe_text


def test_plain_text_is_unchanged():
    assert safe_text("model.layers.0.weight") == "model.layers.0.weight"
    assert safe_text("héllo wörld ✓") == "héllo wörld ✓"


def test_control_bidi_and_zero_width_characters_are_escaped():
    hostile = "a\x1b[31mred\u202eevil\u200bzw\nline\x00"
    shown = escape(hostile)
    for bad in ("\x1b", "\u202e", "\u200b", "\n", "\x00"):
        assert bad not in shown
    assert "\\x1b" in shown and "\\u202e" in shown and "\\u200b" in shown and "\\n" in shown


def test_long_strings_are_elided_with_their_length():
    shown = safe_text("x" * 1_000_000, 50)
    assert len(shown) < 80
    assert "1,000,000 chars" in shown


def test_invalid_utf8_bytes_are_shown_as_escapes():
    shown = safe_text(b"ok\xff\xfe\x1b")
    assert shown == "ok\\xff\\xfe\\x1b"


def test_human_size():
    assert human_size(512) == "512 B"
    assert human_size(2048) == "2.0 KiB"
    assert human_size(5 * 1024**3) == "5.0 GiB"
