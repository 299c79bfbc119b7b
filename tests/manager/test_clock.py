"""Window boundaries and durations (HEAPSTER.md §6), without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from heapster_columnar.errors import ConfigError
from heapster_columnar.manager.clock import check_resolution, next_collection, parse_duration, window_of

S = timedelta(seconds=1)


def at(h: int, m: int, s: float) -> datetime:
    return datetime(2026, 11, 27, h, m, 0, tzinfo=UTC) + timedelta(seconds=s)


def test_windows_align_to_the_resolution_like_heapster() -> None:
    assert window_of(at(12, 0, 7), 15 * S) == (at(12, 0, 0), at(12, 0, 15))
    assert window_of(at(12, 0, 59.9), 60 * S) == (at(12, 0, 0), at(12, 1, 0))
    # Heapster with 60 s: scraped at hh:mm:05, stamped hh:mm:00 (the window end)
    start, end, when = next_collection(at(12, 0, 30), 60 * S, 5 * S)
    assert (start, end, when) == (at(12, 0, 0), at(12, 1, 0), at(12, 1, 5))
    start, end, when = next_collection(at(12, 1, 3), 60 * S, 5 * S)
    assert (start, end, when) == (at(12, 0, 0), at(12, 1, 0), at(12, 1, 5))  # still ahead: collect it


@pytest.mark.parametrize(
    ("text", "seconds"), [("15s", 15), ("1m", 60), ("2h", 7200), ("30d", 2_592_000), ("500ms", 0.5), ("90", 90)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["fast", "-5s", "1x", ""])
def test_bad_durations_are_named(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a duration"):
        parse_duration(text)


def test_resolution_below_five_seconds_is_rejected() -> None:
    assert check_resolution(5 * S) == 5 * S
    with pytest.raises(ConfigError, match="at least 5s"):
        check_resolution(4 * S)
