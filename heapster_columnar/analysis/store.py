"""A Parquet store opened for analysis: Polars LazyFrames and a DuckDB connection with views.

The store is what the Parquet sink (``run --sink parquet:PATH``) or ``simulate --backfill``
writes: ``points/date=/hour=/*.parquet`` in the points schema (docs/schema.md), dimension
snapshots ``pods/``, ``containers/``, ``namespaces/``, ``nodes/`` with ``valid_from``, and the
daily rollups ``rollups/container_days/`` and ``rollups/node_days/`` (:mod:`.rollups`).

Every read is lazy and filtered before it is collected: a time range becomes a filter on the
``date`` partition column (whole directories skipped) and on ``timestamp`` (row groups skipped by
their statistics), metric / type / namespace filters reach the row-group statistics of the sorted
files. Local paths are scanned by Polars' own reader; object-store and fsspec URLs through a
pyarrow dataset on the same filesystem the sink writes with.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from heapster_columnar._sql import literal
from heapster_columnar.errors import ConfigError, StoreError
from heapster_columnar.sinks._parquet_fs import open_store
from heapster_columnar.sinks._parquet_layout import DIMENSION_TABLES, POINTS, parse_name

__all__ = ["ALL_TIME", "DIMENSION_TABLES", "ROLLUP_TABLES", "Store", "TimeRange", "parse_duration"]

ROLLUP_TABLES = ("container_days", "node_days")
ROLLUPS = "rollups"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w`` → timedelta (ConfigError naming the text otherwise)."""
    m = _DURATION.match(text)
    if m is None:
        raise ConfigError(f"{text!r} is not a duration (examples: 15m, 12h, 7d, 2w)")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{text!r}: a duration must be positive")
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start, end)`` in UTC; either bound may be open."""

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def day(cls, day: date) -> TimeRange:
        """The UTC day ``day``, midnight to midnight."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(start, start + timedelta(days=1))

    def days(self) -> tuple[date | None, date | None]:
        """The UTC dates the range touches (for partition pruning)."""
        last = None
        if self.end is not None:
            last = (self.end - timedelta(microseconds=1)).astimezone(UTC).date()
        return (self.start.astimezone(UTC).date() if self.start else None), last


ALL_TIME = TimeRange()


class Store:
    """One store, opened read-only. ``Store.open(path_or_url)``; nothing is read until asked."""

    def __init__(self, location: str, filesystem: pafs.FileSystem, root: str, local: bool) -> None:
        self.location, self.filesystem, self.root, self.local = location, filesystem, root, local
        self.cache: dict[str, Any] = {}  # results derived from files, keyed by their listing

    @classmethod
    def open(cls, location: str | os.PathLike[str]) -> Store:
        """Open a local path, ``file://``, ``s3://``, ``gs://`` … or any fsspec URL.

        Raises ``StoreError`` when there is no ``points/`` directory (not a store, or a typo).
        """
        text = os.fspath(location)
        try:
            opened = open_store(text, fsync=False)
            info = opened.fs.get_file_info(opened.path(POINTS))
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise StoreError(f"cannot open store {text!r}: {exc}") from exc
        if info.type != pafs.FileType.Directory:
            raise StoreError(f"{text!r} is not a heapster-columnar store: it has no {POINTS}/ directory")
        return cls(text, opened.fs, opened.root, opened.local)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    # -- points ---------------------------------------------------------------------------------

    def points(
        self,
        time: TimeRange | None = None,
        *,
        metrics: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        namespaces: Sequence[str] | None = None,
        nodes: Sequence[str] | None = None,
    ) -> pl.LazyFrame:
        """The points in ``time``, filtered; string columns as ``String``, no partition columns."""
        time = time or ALL_TIME
        if self.local:
            return self._duckdb_points(time, metrics=metrics, types=types, namespaces=namespaces, nodes=nodes)
        frame = self._scan(self.path(POINTS))
        if frame is None:
            return _empty_points()
        try:
            names = frame.collect_schema().names()
        except (pl.exceptions.ComputeError, OSError) as exc:
            raise self.error(exc) from exc
        first, last = time.days()
        filters: list[pl.Expr] = []
        if first is not None:
            filters += [pl.col("date") >= first, pl.col("timestamp") >= time.start]
        if last is not None:
            filters += [pl.col("date") <= last, pl.col("timestamp") < time.end]
        for column, values in _value_filters(metrics, types, namespaces, nodes):
            # on the stored (categorical) column: a cast in front would keep Polars from
            # pushing the filter into the Parquet scan when a time filter is present
            filters.append(pl.col(column).is_in(values))
        if filters:
            frame = frame.filter(*filters)
        keep = [c for c in names if c not in ("date", "hour")]
        return frame.select(
            [
                pl.col(c)
                if c in ("timestamp", "sample_time", "start_time", "value", "value_int")
                else pl.col(c).cast(pl.String)
                for c in keep
            ]
        )

    def _duckdb_points(
        self,
        time: TimeRange,
        *,
        metrics: Sequence[str] | None,
        types: Sequence[str] | None,
        namespaces: Sequence[str] | None,
        nodes: Sequence[str] | None,
    ) -> pl.LazyFrame:
        """Local stores are scanned by DuckDB: over a month of hourly files (720 footers) it prunes
        partitions and row groups several times faster than Polars' reader (a cluster series of
        30 days at 1,000 nodes: 0.8 s against 3.5-9.5 s, ``benchmarks/bench_analysis.py``)."""
        sql = self.points_sql(time, metrics=metrics, types=types, namespaces=namespaces, nodes=nodes)
        if sql is None:
            return _empty_points()
        con = self.cache.get("duckdb")
        if con is None:
            con = self.cache["duckdb"] = _connect()
        try:
            frame: pl.LazyFrame = con.sql(sql).pl(lazy=True)
        except duckdb.Error as exc:
            raise self.error(exc) from exc
        stamps = [c for c, t in frame.collect_schema().items() if isinstance(t, pl.Datetime)]
        return frame.with_columns(pl.col(stamps).dt.convert_time_zone("UTC").dt.cast_time_unit("ms"))

    def points_sql(
        self,
        time: TimeRange,
        *,
        metrics: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        namespaces: Sequence[str] | None = None,
        nodes: Sequence[str] | None = None,
    ) -> str | None:
        """The DuckDB query a local store's :meth:`points` runs (None: no file in the range).

        Constants are inlined (see :mod:`heapster_columnar._sql`), and only the range's date
        directories are listed: binding reads the footer of every file it is given."""
        directory = Path(self.path(POINTS))
        where: list[str] = []
        first, last = time.days()
        if first is not None and time.start is not None:
            where += [f"date >= {literal(first)}", f"timestamp >= {literal(time.start)}"]
        if last is not None and time.end is not None:
            where += [f"date <= {literal(last)}", f"timestamp < {literal(time.end)}"]
        for column, values in _value_filters(metrics, types, namespaces, nodes):
            where.append(f"{column} IN ({', '.join(literal(v) for v in values)})" if values else "false")
        days = [
            directory / f"date={d.isoformat()}"
            for d in self.point_dates()
            if (first is None or d >= first) and (last is None or d <= last)
        ]
        globs = [literal(str(d / "**" / "*.parquet")) for d in days if next(d.rglob("*.parquet"), None) is not None]
        if not globs:  # DuckDB errors on a glob without files
            return None
        return (
            "SELECT COLUMNS(lambda c: c NOT IN ('date', 'hour')) FROM "
            f"read_parquet([{', '.join(globs)}], hive_partitioning = true, "
            f"union_by_name = true){' WHERE ' + ' AND '.join(where) if where else ''}"
        )

    def span(self) -> tuple[datetime, datetime] | None:
        """First and last window end in the store. Read from the names of the files in the oldest
        and newest partitions (every file of ours is named by its first and last window), so it
        costs two directory listings; files named otherwise are read instead."""
        days = self._partition_dates(self.path(POINTS))
        if not days:
            return None
        ends: list[datetime] = []
        for day in (days[0], days[-1]):
            for path in self._files(self.path(POINTS, f"date={day.isoformat()}")):
                parsed = parse_name(path.rsplit("/", 1)[-1])
                if parsed is None:
                    ends = []
                    break
                ends += [_stamp_time(parsed.first), _stamp_time(parsed.last)]
            else:
                continue
            break
        if ends:
            return min(ends), max(ends)
        first = self.points(TimeRange.day(days[0]))
        last = self.points(TimeRange.day(days[-1]))
        low = self.collect(first.select(pl.col("timestamp").min())).item()
        high = self.collect(last.select(pl.col("timestamp").max())).item()
        if low is None or high is None:
            return None
        return low, high

    def resolve(self, since: str | timedelta | datetime | None = None, until: datetime | None = None) -> TimeRange:
        """A report's range: ``since`` as a duration counts back from ``until``, which defaults to
        just after the store's newest window (not the wall clock: a store copied off a cluster or
        backfilled last month still answers "the last 7 days" with data)."""
        if until is None:
            span = self.span()
            until = (span[1] + timedelta(milliseconds=1)) if span else datetime.now(UTC)
        if isinstance(since, str):
            since = parse_duration(since)
        start = until - since if isinstance(since, timedelta) else since
        if start is not None and start >= until:
            raise ConfigError(f"the range is empty: since {start.isoformat()} is not before {until.isoformat()}")
        return TimeRange(start, until)

    # -- dimensions -----------------------------------------------------------------------------

    def snapshots(self, table: str, time: TimeRange | None = None) -> pl.LazyFrame:
        """The stored snapshots of a dimension table, each row with its ``valid_from``; with
        ``time``, only those in force at some moment of it (chosen from the file names, so a
        month of hourly snapshots is not read for one day)."""
        if table not in DIMENSION_TABLES:
            raise ConfigError(f"unknown dimension table {table!r} (one of {', '.join(DIMENSION_TABLES)})")
        empty = pl.LazyFrame(schema={"valid_from": pl.Datetime("ms", "UTC")})
        if time is None or time == ALL_TIME:
            frame = self._scan(self.path(table), hive=False)
            return empty if frame is None else frame
        files = self._files(self.path(table))
        stamps = [_snapshot_time(f) for f in files]
        starts = [t for t in stamps if t is not None and (time.start is None or t <= time.start)]
        floor = max(starts) if starts else None
        chosen = [
            f
            for f, t in zip(files, stamps, strict=True)
            if t is None or ((floor is None or t >= floor) and (time.end is None or t < time.end))
        ]
        if not chosen:
            return empty
        if self.local:
            return pl.scan_parquet(chosen, missing_columns="insert", extra_columns="ignore")
        return pl.scan_pyarrow_dataset(ds.dataset(chosen, filesystem=self.filesystem, format="parquet"))

    def dimension(self, table: str, at: datetime | None = None) -> pl.DataFrame:
        """The snapshot in force at ``at`` (the newest one when ``at`` is None)."""
        frame = self.snapshots(table)
        if at is not None:
            frame = frame.filter(pl.col("valid_from") <= at)
        return frame.filter(pl.col("valid_from") == pl.col("valid_from").max()).collect()

    def last_known(self, table: str, keys: Sequence[str], time: TimeRange | None = None) -> pl.LazyFrame:
        """Per key, the newest row of the snapshots in force during ``time`` (default: all): the
        attributes of pods and containers deleted since, which their history still needs."""
        frame = self.snapshots(table, time)
        if not set(keys) <= set(frame.collect_schema().names()):
            return frame  # no snapshot stored
        return frame.sort("valid_from").unique(subset=list(keys), keep="last", maintain_order=True)

    # -- rollups --------------------------------------------------------------------------------

    def rollups(self, table: str, time: TimeRange | None = None) -> pl.LazyFrame | None:
        """The materialized daily rollup rows of the days in ``time``, the partition's date as
        ``day`` (``None``: none stored)."""
        if table not in ROLLUP_TABLES:
            raise ConfigError(f"unknown rollup table {table!r} (one of {', '.join(ROLLUP_TABLES)})")
        time = time or ALL_TIME
        frame = self._scan(self.path(ROLLUPS, table))
        if frame is None:
            return None
        first, last = time.days()
        if first is not None:
            frame = frame.filter(pl.col("date") >= first)
        if last is not None:
            frame = frame.filter(pl.col("date") <= last)
        return frame.rename({"date": "day"})

    def rollup_dates(self, table: str) -> list[date]:
        """Days whose rollups are materialized."""
        return self._partition_dates(self.path(ROLLUPS, table))

    def day_signature(self, day: date) -> tuple[tuple[str, int, float], ...]:
        """Names, sizes and times of a day's points files: changes whenever the day does."""
        selector = pafs.FileSelector(self.path(POINTS, f"date={day.isoformat()}"), recursive=True, allow_not_found=True)
        infos = self.filesystem.get_file_info(selector)
        return tuple(
            sorted(
                (i.path, i.size or 0, i.mtime.timestamp() if i.mtime else 0.0)
                for i in infos
                if i.type == pafs.FileType.File
            )
        )

    def point_dates(self) -> list[date]:
        """Days that have points."""
        return self._partition_dates(self.path(POINTS))

    # -- SQL --------------------------------------------------------------------------------------

    def duckdb(self, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with views ``points`` (Hive partitions ``date``, ``hour`` included),
        ``pods``, ``containers``, ``namespaces``, ``nodes`` (every snapshot, with ``valid_from``)
        and the rollups present. Local stores only (DuckDB reads object stores through its own
        ``httpfs`` extension, configured by the user)."""
        if not self.local:
            raise StoreError(f"{self.location}: DuckDB views need a local store; use the Polars frames for URLs")
        con = con or _connect()
        con.execute("SET TimeZone = 'UTC'")
        views = {"points": self.path(POINTS)}
        views.update({t: self.path(t) for t in DIMENSION_TABLES})
        views.update({t: self.path(ROLLUPS, t) for t in ROLLUP_TABLES})
        for name, directory in views.items():
            if not any(Path(directory).rglob("*.parquet")):
                continue
            hive = "true" if name == "points" or name in ROLLUP_TABLES else "false"
            glob = literal(str(Path(directory) / "**" / "*.parquet"))
            con.execute(
                f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({glob}, "
                f"hive_partitioning = {hive}, union_by_name = true)"
            )
        return con

    # -- errors ---------------------------------------------------------------------------------

    def collect(self, frame: pl.LazyFrame) -> pl.DataFrame:
        """``frame.collect()``, with an unreadable file named (see :meth:`error`)."""
        try:
            return frame.collect()
        except (pl.exceptions.ComputeError, OSError, duckdb.Error) as exc:
            raise self.error(exc) from exc

    def error(self, exc: BaseException) -> StoreError:
        """The error to raise for a failed read: Polars reports a corrupt footer or page without
        its path, so the store's files are checked one by one to name the culprit."""
        bad = self.verify()
        if bad:
            return StoreError(
                f"{self.location}: unreadable Parquet file(s) {', '.join(bad)} ({exc}); move them aside "
                "(the Parquet sink quarantines such files into _quarantine/ on its next compaction)"
            )
        return StoreError(f"{self.location}: {exc}")

    def verify(self) -> list[str]:
        """Paths of files whose Parquet footer cannot be read (truncated, overwritten, not Parquet)."""
        directories = [self.path(POINTS), *(self.path(t) for t in DIMENSION_TABLES)]
        directories += [self.path(ROLLUPS, t) for t in ROLLUP_TABLES]
        bad = []
        for directory in directories:
            for path in self._files(directory):
                try:
                    with self.filesystem.open_input_file(path) as f:
                        pq.read_metadata(f)
                except (OSError, pa.ArrowException):
                    bad.append(path)
        return bad

    # -- helpers --------------------------------------------------------------------------------

    def _files(self, directory: str) -> list[str]:
        selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as exc:
            raise StoreError(f"{self.location}: cannot list {directory}: {exc}") from exc
        return sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and i.path.endswith(".parquet")
            and not any(part.startswith(("_", ".")) for part in i.path[len(directory) :].split("/"))
        )

    def _scan(self, directory: str, *, hive: bool = True) -> pl.LazyFrame | None:
        if self.local:
            if not any(Path(directory).rglob("*.parquet")):
                return None
            return pl.scan_parquet(
                str(Path(directory) / "**" / "*.parquet"),
                hive_partitioning=hive,
                missing_columns="insert",
                extra_columns="ignore",
            )
        files = self._files(directory)
        if not files:
            return None
        dataset = ds.dataset(
            files,
            filesystem=self.filesystem,
            format="parquet",
            partitioning=_hive_schema(files) if hive else None,
            partition_base_dir=directory if hive else None,
        )
        return pl.scan_pyarrow_dataset(dataset)

    def _partition_dates(self, directory: str) -> list[date]:
        try:
            infos = self.filesystem.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        except OSError as exc:
            raise StoreError(f"{self.location}: cannot list {directory}: {exc}") from exc
        out = []
        for info in infos:
            name = info.path.rsplit("/", 1)[-1]
            if info.type == pafs.FileType.Directory and name.startswith("date="):
                try:
                    out.append(date.fromisoformat(name[5:]))
                except ValueError:
                    continue
        return sorted(out)


def _hive_schema(files: Sequence[str]) -> ds.Partitioning:
    """Typed partition columns (as Polars' own reader types them): ``date`` a date, ``hour`` an int."""
    fields = [pa.field("date", pa.date32())]
    if any("/hour=" in f for f in files):
        fields.append(pa.field("hour", pa.int32()))
    return ds.partitioning(pa.schema(fields), flavor="hive")


def _connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that keeps the Parquet footers it has read: with ``union_by_name``
    every bind reads the footer of each file of the range (720 for a month of hourly files,
    0.3-0.5 s), and a lazy query binds up to three times; with the cache only the first does."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET parquet_metadata_cache = true")
    return con


_SNAPSHOT = re.compile(r"/v-(\d{8}T\d{6})(\d{3})Z\.parquet$")


def _stamp_time(text: str) -> datetime:
    """``20240601T000030000Z`` (the layout's window stamp) → datetime. Sliced, not ``strptime``:
    a month of hourly snapshots is 720 names to parse on every call that reads them."""
    year, month, day = int(text[0:4]), int(text[4:6]), int(text[6:8])
    hour, minute, second, milli = int(text[9:11]), int(text[11:13]), int(text[13:15]), int(text[15:18])
    return datetime(year, month, day, hour, minute, second, milli * 1000, tzinfo=UTC)


def _snapshot_time(path: str) -> datetime | None:
    """``valid_from`` from a snapshot's name (``v-20240601T000030000Z.parquet``); None if not ours."""
    m = _SNAPSHOT.search(path)
    return None if m is None else _stamp_time(m.group(1) + m.group(2))


def _value_filters(*wanted: Sequence[str] | None) -> list[tuple[str, list[str]]]:
    """(column, values) of the given filters of :meth:`Store.points`, in its argument order."""
    columns = ("metric", "type", "namespace_name", "nodename")
    return [(c, list(w)) for c, w in zip(columns, wanted, strict=True) if w is not None]


def _empty_points() -> pl.LazyFrame:
    from heapster_columnar.model.schema import POINTS_SCHEMA

    frame = pl.from_arrow(POINTS_SCHEMA.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.lazy().with_columns(pl.col(pl.Categorical).cast(pl.String))
