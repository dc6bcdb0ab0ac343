"""Durations and sizes: parsing, formatting, and their errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.config import format_duration, format_size, parse_duration, parse_size
from trunkline.errors import ConfigError

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("30s", 30 * SECOND),
        ("15m", 15 * MINUTE),
        ("36h", 36 * HOUR),
        ("7d", 7 * DAY),
        ("2w", 14 * DAY),
        ("1h30m", 90 * MINUTE),
        ("1d2h3m4s5ms", DAY + 2 * HOUR + 3 * MINUTE + 4 * SECOND + 5),
        ("1.5h", 90 * MINUTE),
        (" 7d ", 7 * DAY),
        ("1 h 30 m", 90 * MINUTE),
        ("0", 0),
        ("0s", 0),
        (0, 0),
    ],
)
def test_parse_duration(text: str | int, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            7,
            "expected a duration such as '7d', '36h' or '500ms', found 7"
            " - add a unit, e.g. '7d' or '500ms'",
        ),
        (
            "7",
            "expected a duration such as '7d', '36h' or '500ms', found '7'"
            " - add a unit, e.g. '7d' or '500ms'",
        ),
        (
            "-5d",
            "expected a duration such as '7d', '36h' or '500ms', found '-5d'"
            " - durations cannot be negative",
        ),
        (
            -1,
            "expected a duration such as '7d', '36h' or '500ms', found -1"
            " - durations cannot be negative",
        ),
        (
            "7D",
            "expected a duration such as '7d', '36h' or '500ms', found '7D'"
            " - did you mean '7d'? units are case-sensitive",
        ),
        (
            "1H30M",
            "expected a duration such as '7d', '36h' or '500ms', found '1H30M'"
            " - did you mean '1h30m'? units are case-sensitive",
        ),
        (
            "3y",
            "expected a duration such as '7d', '36h' or '500ms', found '3y'"
            " - unknown unit 'y'; units are w, d, h, m, s, ms",
        ),
        (
            "0.5ms",
            "expected a duration such as '7d', '36h' or '500ms', found '0.5ms'"
            " - it is not a whole number of milliseconds",
        ),
        ("", "expected a duration such as '7d', '36h' or '500ms', found ''"),
        ("d", "expected a duration such as '7d', '36h' or '500ms', found 'd'"),
        (True, "expected a duration such as '7d', '36h' or '500ms', found True"),
        (1.5, "expected a duration such as '7d', '36h' or '500ms', found 1.5"),
    ],
)
def test_parse_duration_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(value)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1GiB", 1024**3),
        ("64MiB", 64 * 1024**2),
        ("512KiB", 512 * 1024),
        ("2TiB", 2 * 1024**4),
        ("1KB", 1000),
        ("1kB", 1000),
        ("10MB", 10 * 1000**2),
        ("1GB", 1000**3),
        ("3TB", 3 * 1000**4),
        ("100B", 100),
        ("4096", 4096),
        (4096, 4096),
        (0, 0),
        ("1.5KiB", 1536),
        ("1 GiB", 1024**3),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "1gb",
            "expected a size such as '1GiB', '512MB' or a number of bytes, found '1gb'"
            " - did you mean '1GB'? units are case-sensitive",
        ),
        (
            "1gib",
            "expected a size such as '1GiB', '512MB' or a number of bytes, found '1gib'"
            " - did you mean '1GiB'? units are case-sensitive",
        ),
        (
            "1XB",
            "expected a size such as '1GiB', '512MB' or a number of bytes, found '1XB'"
            " - unknown unit 'XB'; units are TiB, GiB, MiB, KiB, TB, GB, MB, KB, kB, B",
        ),
        (
            -1,
            "expected a size such as '1GiB', '512MB' or a number of bytes, found -1"
            " - sizes cannot be negative",
        ),
        (
            "-1KiB",
            "expected a size such as '1GiB', '512MB' or a number of bytes, found '-1KiB'"
            " - sizes cannot be negative",
        ),
        (
            "1.5B",
            "expected a size such as '1GiB', '512MB' or a number of bytes, found '1.5B'"
            " - it is not a whole number of bytes",
        ),
        ("GiB", "expected a size such as '1GiB', '512MB' or a number of bytes, found 'GiB'"),
        (False, "expected a size such as '1GiB', '512MB' or a number of bytes, found False"),
    ],
)
def test_parse_size_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_size(value)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (1, "1ms"),
        (90 * MINUTE, "90m"),
        (36 * HOUR, "36h"),
        (DAY + HOUR + MINUTE, "1501m"),
        (DAY + 30 * SECOND + 5, "1d30s5ms"),
        (7 * DAY, "7d"),
        (14 * DAY, "14d"),
        (DAY + 1, "1d1ms"),
        (None, "forever"),
    ],
)
def test_format_duration(ms: int | None, text: str) -> None:
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (100, "100B"),
        (1024, "1KiB"),
        (1024**3, "1GiB"),
        (64 * 1024**2, "64MiB"),
        (1000, "1KB"),
        (10 * 1000**2, "10MB"),
        (1_024_000, "1000KiB"),  # the smaller number wins over 1024KB
        (1023, "1023B"),
        (None, "unlimited"),
    ],
)
def test_format_size(size: int | None, text: str) -> None:
    assert format_size(size) == text


def test_format_size_approximate() -> None:
    assert format_size(1_234_567, exact=False) == "1.18MiB"
    assert format_size(3 * 1024**4, exact=False) == "3TiB"
    assert format_size(999, exact=False) == "999B"


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError, match="found -1"):
        format_duration(-1)
    with pytest.raises(ValueError, match="found -1"):
        format_size(-1)


@given(st.integers(min_value=0, max_value=10**15))
def test_duration_round_trip(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms


@given(st.integers(min_value=0, max_value=10**18))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["GiB", "MiB", "KiB", "MB"]))
def test_sizes_with_units_round_trip(count: int, unit: str) -> None:
    size = parse_size(f"{count}{unit}")
    assert parse_size(format_size(size)) == size
