"""Where the Parquet sink puts things: one function per name, so writer, compactor and recovery agree.

::

    <root>/points/date=2024-06-01/hour=00/w-20240601T000030000Z-0of1.parquet   one window (part 0 of 1)
    <root>/points/date=2024-06-01/hour=00/c-20240601T000015000Z-...parquet  compacted small windows
    <root>/pods/v-20240601T000030000Z.parquet                               a dimension snapshot
    <root>/_staging/                                                        files being written (local)
    <root>/_quarantine/points/date=.../hour=.../<name>.corrupt              unreadable files set aside

Names sort in time order (the stamp is the window end, UTC, to the millisecond). Nothing but
partition directories and finished ``.parquet`` files ever sits under ``points/``: Polars' and
DuckDB's scans read hidden files too (only pyarrow skips ``.`` and ``_``), so temporary and
quarantined files live outside the dataset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "DIMENSION_TABLES",
    "POINTS",
    "QUARANTINE",
    "STAGING",
    "FileName",
    "Partition",
    "compacted_name",
    "incomplete_windows",
    "parse_name",
    "parse_partition",
    "partition_of",
    "snapshot_name",
    "stamp",
    "window_name",
]

POINTS = "points"
STAGING = "_staging"
QUARANTINE = "_quarantine"
DIMENSION_TABLES = ("pods", "containers", "namespaces", "nodes")

_STAMP = "%Y%m%dT%H%M%S"
_NAME = re.compile(
    r"^(?P<kind>[wc])-(?P<first>\d{8}T\d{9}Z)-"
    r"(?:(?P<last>\d{8}T\d{9}Z)-(?P<tag>[0-9a-f]{8})|(?P<part>\d+)of(?P<parts>\d+))\.parquet$"
)
_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$|^hour=(\d{2})$")


def stamp(when: datetime) -> str:
    """``20240601T000030000Z``: UTC to the millisecond, sortable as text."""
    when = when.astimezone(UTC)
    return f"{when.strftime(_STAMP)}{when.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One Hive partition of the points dataset; ``hour`` is None when partitioned by day."""

    date: str
    hour: int | None = None

    @property
    def path(self) -> str:
        """Relative to the points directory."""
        return f"date={self.date}" if self.hour is None else f"date={self.date}/hour={self.hour:02d}"


def partition_of(when: datetime, by: str) -> Partition:
    when = when.astimezone(UTC)
    return Partition(when.strftime("%Y-%m-%d"), when.hour if by == "hour" else None)


def parse_partition(relative_dir: str) -> Partition | None:
    """The partition of a directory path relative to ``points/`` (None if it is not one of ours)."""
    parts = relative_dir.split("/")
    matches = [_DIR.match(p) for p in parts]
    if not 1 <= len(parts) <= 2 or not all(matches) or matches[0] is None or matches[0].group(1) is None:
        return None
    if len(parts) == 1:
        return Partition(matches[0].group(1))
    second = matches[1]
    if second is None or second.group(2) is None:
        return None
    return Partition(matches[0].group(1), int(second.group(2)))


def window_name(end: datetime, part: int, parts: int) -> str:
    """Part ``part`` of the ``parts`` files of one window: the listing alone tells a whole window."""
    return f"w-{stamp(end)}-{part}of{parts}.parquet"


def compacted_name(first: str, last: str, tag: str) -> str:
    """``tag`` (8 hex digits of a hash of the inputs) tells two compactions of the same span apart."""
    return f"c-{first}-{last}-{tag}.parquet"


def snapshot_name(valid_from: datetime) -> str:
    return f"v-{stamp(valid_from)}.parquet"


@dataclass(frozen=True, slots=True)
class FileName:
    """A parsed points file name: a window part or a compacted file spanning ``first``..``last``."""

    name: str
    compacted: bool
    first: str  # window stamp (of the first window, for a compacted file)
    last: str
    part: int = 0
    parts: int = 1


def parse_name(name: str) -> FileName | None:
    """None for anything the sink did not write (left alone)."""
    m = _NAME.match(name)
    if m is None:
        return None
    if m.group("kind") == "w":
        if m.group("part") is None or not 0 <= int(m.group("part")) < int(m.group("parts")):
            return None
        return FileName(name, False, m.group("first"), m.group("first"), int(m.group("part")), int(m.group("parts")))
    if m.group("last") is None:
        return None
    return FileName(name, True, m.group("first"), m.group("last"))


def incomplete_windows(names: Iterable[str]) -> set[str]:
    """Window files that do not make a whole window (a crash between publishing a window's parts),
    and copies cut into another number of parts when a whole copy exists (a crash during a rewrite)."""
    cuts: dict[str, dict[int, set[int]]] = {}
    for name in names:
        parsed = parse_name(name)
        if parsed is not None and not parsed.compacted:
            cuts.setdefault(parsed.first, {}).setdefault(parsed.parts, set()).add(parsed.part)
    drop: set[str] = set()
    for when, by_parts in cuts.items():
        whole = [n for n, present in by_parts.items() if len(present) == n]
        keep = max(whole) if whole else None
        for n, present in by_parts.items():
            if n != keep:
                drop.update(f"w-{when}-{i}of{n}.parquet" for i in present)
    return drop
