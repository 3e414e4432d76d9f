"""Prometheus duration and byte-size parsing/formatting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.model.duration import (
    DAY_MS,
    HOUR_MS,
    MAX_MS,
    MINUTE_MS,
    SECOND_MS,
    WEEK_MS,
    YEAR_MS,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0s", 0),
        ("0", 0),
        ("0ms", 0),
        ("1ms", 1),
        ("500ms", 500),
        ("1s", SECOND_MS),
        ("90s", 90 * SECOND_MS),
        ("5m", 5 * MINUTE_MS),
        ("1h30m", HOUR_MS + 30 * MINUTE_MS),
        ("15d", 15 * DAY_MS),
        ("2w", 2 * WEEK_MS),
        ("1y", 365 * DAY_MS),
        ("1m5ms", MINUTE_MS + 5),
        ("1y2w3d4h5m6s7ms", YEAR_MS + 2 * WEEK_MS + 3 * DAY_MS + 4 * HOUR_MS + 5 * MINUTE_MS + 6007),
        ("010s", 10 * SECOND_MS),
        ("106751991167d", 106751991167 * DAY_MS),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("forever", 'expected a duration like 15d, got "forever"'),
        ("", 'expected a duration like 15d, got ""'),
        ("15", 'expected a duration like 15d, got "15"'),
        ("1.5h", 'expected a duration like 15d, got "1.5h"'),
        ("-5m", 'expected a duration like 15d, got "-5m"'),
        ("1h1h", 'expected a duration like 15d, got "1h1h"'),
        ("30m1h", 'expected a duration like 15d, got "30m1h"'),  # units out of order
        ("1H", 'expected a duration like 15d, got "1H"'),
        (" 1h", 'expected a duration like 15d, got " 1h"'),
        ("1us", 'expected a duration like 15d, got "1us"'),
        ("d", 'expected a duration like 15d, got "d"'),
        ("١s", 'expected a duration like 15d, got "١s"'),  # non-ASCII digit
        ("300000000y", 'expected a duration like 15d, got "300000000y" (out of range)'),
        ("9" * 5000 + "s", "(out of range)"),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(text)
    assert message in str(exc.value)
    assert str(exc.value).startswith("expected a duration like 15d, got ")


def test_parse_duration_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match=r"^expected a duration like 15d, got 15$"):
        parse_duration(15)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (1, "1ms"),
        (1500, "1s500ms"),
        (90 * SECOND_MS, "1m30s"),
        (HOUR_MS + 30 * MINUTE_MS, "1h30m"),
        (15 * DAY_MS, "15d"),
        (14 * DAY_MS, "2w"),
        (90 * DAY_MS, "90d"),  # not 12w6d: weeks only when exact
        (YEAR_MS, "1y"),
        (YEAR_MS + DAY_MS, "366d"),
        (2 * YEAR_MS, "2y"),
        (YEAR_MS + HOUR_MS, "365d1h"),
        (-5 * MINUTE_MS, "-5m"),
    ],
)
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_format_duration_rejects_non_ints() -> None:
    with pytest.raises(TypeError):
        format_duration(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_duration(True)


@given(st.integers(min_value=0, max_value=MAX_MS))
def test_duration_round_trip(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms


@given(
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=7, max_size=7),
    st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_formatted_duration_is_canonical(counts: list[int], present: list[bool]) -> None:
    units = ["y", "w", "d", "h", "m", "s", "ms"]
    text = "".join(f"{c}{u}" for c, u, p in zip(counts, units, present, strict=True) if p) or "0s"
    canonical = format_duration(parse_duration(text))
    assert format_duration(parse_duration(canonical)) == canonical


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512MiB", 512 * 2**20),
        ("16MB", 16 * 10**6),
        ("1GiB", 2**30),
        ("1024", 1024),
        (1024, 1024),
        (0, 0),
        ("0", 0),
        ("100B", 100),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("2TiB", 2 * 2**40),
        ("3TB", 3 * 10**12),
        ("1PiB", 2**50),
        ("1.5KiB", 1536),
        ("0.5MB", 500_000),
        ("64 MiB", 64 * 2**20),
    ],
)
def test_parse_size(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", 'expected a size like 512MiB, got "lots"'),
        ("", 'expected a size like 512MiB, got ""'),
        ("MiB", 'expected a size like 512MiB, got "MiB"'),
        ("-1MiB", 'expected a size like 512MiB, got "-1MiB"'),
        (-1, "expected a size like 512MiB, got -1"),
        (True, "expected a size like 512MiB, got True"),
        (1.5, "expected a size like 512MiB, got 1.5"),
        ("1.5B", 'expected a size like 512MiB, got "1.5B" (not a whole number of bytes)'),
        (
            "512mib",
            'expected a size like 512MiB, got "512mib" (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)',
        ),
        ("1 GiB ", 'expected a size like 512MiB, got "1 GiB "'),
        ("99999999999TiB", 'expected a size like 512MiB, got "99999999999TiB" (out of range)'),
    ],
)
def test_parse_size_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_size(value)  # type: ignore[arg-type]
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (100, "100B"), (1000, "1KB"), (1024, "1KiB"), (16 * 10**6, "16MB"), (32 * 2**20, "32MiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size
