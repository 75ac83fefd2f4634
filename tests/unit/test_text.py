"""Text for people: strings from a DB others write are neutralised and bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchdogd.present.text import safe, table, when


@pytest.mark.parametrize(
    "hostile, shown",
    [
        ("ses_1\x1b[2J\x1b[31mred", "ses_1\\x1b[2J\\x1b[31mred"),
        ("line1\nline2\r\n", "line1\\x0aline2\\x0d\\x0a"),
        ("tab\there", "tab\\x09here"),
        ("bell\x07", "bell\\x07"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f c1\x9b", "del\\x7f c1\\x9b"),
        ("abc\u202eevil", "abc\\x202eevil"),  # right-to-left override
        ("\u2028sep", "\\x2028sep"),
    ],
)
def test_control_and_bidi_characters_are_escaped(hostile, shown):
    assert safe(hostile) == shown


def test_plain_text_is_unchanged():
    assert safe("prt_212b430de001gPxlWP3QDIFbxL — café ✓") == "prt_212b430de001gPxlWP3QDIFbxL — café ✓"


def test_none_and_non_strings():
    assert safe(None) == ""
    assert safe(42) == "42"


def test_length_bound():
    out = safe("x" * 500, 50)
    assert len(out) == 50 and out.endswith("…")
    assert safe("x" * 50, 50) == "x" * 50


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_safe_is_one_printable_bounded_line(text, limit):
    out = safe(text, limit)
    assert len(out) <= limit
    assert not any(
        ord(c) < 0x20
        or 0x7F <= ord(c) <= 0x9F
        or c in "\u2028\u2029"
        or 0x202A <= ord(c) <= 0x202E
        or 0x2066 <= ord(c) <= 0x2069
        for c in out
    )


def test_table_aligns_and_neutralises_cells():
    out = table(["ID", "TITLE"], [["1", "a\nb"], ["22", "x" * 100]])
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0] == "ID  TITLE"
    assert lines[1] == "1   a\\x0ab"
    assert len(lines[2]) == len("22  ") + 80


def test_when():
    assert when(None) == "-"
    assert len(when(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))) == len("2026-11-25 12:00:00")
