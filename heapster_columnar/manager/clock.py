"""Window boundaries (HEAPSTER.md §6): pure functions, testable without sleeping.

Windows are ``[start, end)`` aligned to multiples of the resolution since the Unix epoch (Heapster
counted from Go's zero time, which is the same alignment for any resolution dividing a day); a
window is collected ``offset`` after it ends and stamped with its end.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from heapster_columnar.errors import ConfigError

MIN_RESOLUTION = timedelta(seconds=5)


def parse_duration(text: str) -> timedelta:
    """``15s``, ``1m``, ``2h``, ``30d``, ``500ms`` or plain seconds; anything else is a ConfigError."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip()
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix):
            number, factor = value[: -len(suffix)], units[suffix]
            break
    else:
        number, factor = value, 1
    try:
        seconds = float(number) * factor
    except ValueError:
        raise ConfigError(f"{text!r} is not a duration (examples: 15s, 1m, 30d)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{text!r} is not a duration (examples: 15s, 1m, 30d)")
    return timedelta(seconds=seconds)


def check_resolution(resolution: timedelta) -> timedelta:
    if resolution < MIN_RESOLUTION:
        raise ConfigError(f"--metric_resolution must be at least {MIN_RESOLUTION.total_seconds():g}s")
    return resolution


def window_of(now: datetime, resolution: timedelta) -> tuple[datetime, datetime]:
    """The window that contains ``now``."""
    step = resolution.total_seconds()
    start = math.floor(now.timestamp() / step) * step
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + step, UTC)


def next_collection(now: datetime, resolution: timedelta, offset: timedelta) -> tuple[datetime, datetime, datetime]:
    """(start, end, when to collect) of the next window whose collection time is after ``now``."""
    start, end = window_of(now - offset, resolution)
    return start, end, end + offset
