"""Human durations and sizes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchdogd.durations import NEVER, check_size, duration_text, format_duration, parse_duration, size_text


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("45s", 45),
        ("10m", 600),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1d", 86400),
        ("1w", 604800),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("90", 90),
        ("0", 0),
        ("0s", 0),
        (" 2H ", 7200),
        ("1h 30m", 5400),
        ("2h15m10s", 8110),
    ],
)
def test_parse_duration_text(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["never", "NEVER", "inf", "off"])
def test_never_is_infinite(text):
    assert parse_duration(text) == NEVER == math.inf


@pytest.mark.parametrize("value, seconds", [(30, 30.0), (1.5, 1.5), (0, 0.0)])
def test_numbers_are_seconds(value, seconds):
    result = parse_duration(value)
    assert result == seconds and isinstance(result, float)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "abc",
        "10x",
        "-5s",
        "5s-",
        "h",
        "1h30",
        "s10",
        "1,5h",
        "1e3",
        "nan",
        -1,
        -0.5,
        float("nan"),
        True,
        False,
        None,
        [],
        {},
    ],
)
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_error_message_suggests_forms():
    with pytest.raises(ValueError, match=r"not a duration: '10x'.*45s, 10m, 2h"):
        parse_duration("10x")


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0s"),
        (45, "45s"),
        (60, "1m"),
        (90, "1m30s"),
        (5400, "1h30m"),
        (7200, "2h"),
        (86400, "1d"),
        (90061, "1d1h"),
        (10802, "3h"),
        (86460, "1d"),
        (0.5, "0.5s"),
        (2.25, "2.2s"),
        (9.96, "10s"),
        (59.6, "1m"),
        (NEVER, "never"),
        (-90, "-1m30s"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@given(
    st.integers(min_value=0, max_value=6),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=23),
    st.sampled_from(["hm", "ms", "dh"]),
)
def test_two_unit_values_round_trip(a, b, c, kind):
    seconds = {"hm": a * 3600 + b * 60, "ms": b * 60 + (c % 60), "dh": a * 86400 + c * 3600}[kind]
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_format_never_fails_and_parses_back(seconds):
    text = format_duration(seconds)
    assert "\n" not in text and len(text) <= 12
    # at most two units are kept: the rest is dropped, never added
    back = parse_duration(text)
    assert back <= seconds + 0.5 + 1e-9


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["s", "m", "h", "d"]))
def test_integer_with_unit(count, unit):
    assert parse_duration(f"{count}{unit}") == count * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


@pytest.mark.parametrize(
    "seconds, text",
    [
        (8110, "2h15m10s"),
        (0, "0s"),
        (0.5, "0.5s"),
        (90061, "1d1h1m1s"),
        (604800, "7d"),
        (NEVER, "never"),
        (3600.25, "1h0.25s"),
        (59.999, "59.999s"),
    ],
)
def test_duration_text_is_exact(seconds, text):
    assert duration_text(seconds) == text
    assert parse_duration(text) == seconds


@given(st.floats(min_value=0, max_value=1e10, allow_nan=False, allow_infinity=False))
def test_duration_text_never_loses_anything(seconds):
    assert parse_duration(duration_text(seconds)) == seconds


@pytest.mark.parametrize(
    "size, text",
    [
        (268435456, "256MiB"),
        (1024**3, "1GiB"),
        (2 * 10**6, "2MB"),
        (1000001, "1000001B"),
        (0, "0B"),
        (1536, "1536B"),
        (3 * 1024**4, "3TiB"),
        (1500, "1500B"),
    ],
)
def test_size_text_is_exact_and_short(size, text):
    assert size_text(size) == text


@pytest.mark.parametrize(
    "value", [0, 1048576, "1048576", "256MiB", "256 MiB", "1GiB", "1GB", "1.5k", "2KiB", "10b", "3mb"]
)
def test_check_size_keeps_every_accepted_form(value):
    assert check_size(value) == value


@pytest.mark.parametrize("bad", ["", "MiB", "-1MiB", "12 parsecs", "1e6", -1, 1.5, True, None])
def test_check_size_rejects(bad):
    with pytest.raises(ValueError, match="size"):
        check_size(bad)
