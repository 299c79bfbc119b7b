"""The model API's stored history: points older than memory, from the Parquet or DuckDB store.

When ``run`` has a Parquet sink, a model query whose range starts before the in-memory windows
reads the rest from the Hive-partitioned ``points`` dataset that sink writes, with the entity and
metric pushed down as filters: files and row groups whose statistics cannot match are skipped
(the sink sorts row groups by metric, namespace, node and time for this). With only a DuckDB sink,
the rest comes from its read-only snapshot file (DuckDB admits one writer, and the collector's own
sink is it; the snapshot is refreshed every few minutes, well inside the 15-minute series store).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from heapster_columnar._sql import literal
from heapster_columnar.api.entity_index import KEY_COLUMNS
from heapster_columnar.errors import StoreError
from heapster_columnar.sinks._duckdb_schema import FACTS, POINT_SET, SET_ID, SETS, quote, vocabulary_table

__all__ = ["DuckDBHistory", "ParquetHistory"]

_STAMP = pa.timestamp("ms", "UTC")


class ParquetHistory:
    """Points of one entity and metric from ``<root>/points`` (any pyarrow filesystem).

    On a local disk DuckDB's ``read_parquet`` answers: it drops ``date=`` directories outside the
    range from the paths alone and row groups by the min/max statistics of the dictionary-encoded
    ``metric``, ``type``, ``namespace_name`` and ``nodename`` columns. pyarrow's dataset scanner
    ignores statistics of dictionary columns and reads every row group of every file (a 7-day
    namespace query: 3.8-4.2 s through pyarrow, see ``benchmarks/bench_history.py``); it remains
    the reader for object stores and fsspec targets, which DuckDB cannot open through a pyarrow
    filesystem.
    """

    def __init__(self, filesystem: pafs.FileSystem, points_dir: str) -> None:
        self.filesystem, self.points_dir = filesystem, points_dir
        self._database: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of one in-memory database kept across requests, so that the Parquet footers it
        has read stay cached (each request binds over every file of its range)."""
        with self._lock:
            if self._database is None:
                self._database = duckdb.connect()
                self._database.execute("SET parquet_metadata_cache = true")
            return self._database.cursor()

    def points(self, entity: tuple[str | None, ...], metric: str, start: datetime | None, end: datetime) -> pa.Table:
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            table = self._duckdb(entity, metric, start, end)
        else:
            table = self._pyarrow(entity, metric, start, end)
        if "value_int" not in table.column_names:
            table = table.append_column("value_int", pa.nulls(table.num_rows, pa.int64()))
        return table

    def _duckdb(self, entity: tuple[str | None, ...], metric: str, start: datetime | None, end: datetime) -> pa.Table:
        root = Path(self.points_dir)
        # only the date directories of the range, and literal filters (``heapster_columnar._sql``):
        # a week of a 1,000-node store took 1.1 s with a glob of the month and parameters
        first = start.astimezone(UTC).date() if start is not None else None
        last = end.astimezone(UTC).date()
        days = sorted(
            p
            for p in root.glob("date=*")
            if p.is_dir() and (first is None or p.name[5:] >= first.isoformat()) and p.name[5:] <= last.isoformat()
        )
        globs = [str(p / "**" / "*.parquet") for p in days if next(p.rglob("*.parquet"), None) is not None]
        if not globs:  # DuckDB errors on a glob without files
            return _empty()
        where = [f"metric = {literal(metric)}", f"timestamp < {literal(end)}"]
        if start is not None:
            where.append(f"timestamp >= {literal(start)}")
        for name, value in zip(KEY_COLUMNS, entity, strict=True):
            where.append(f"{name} IS NULL" if value is None else f"{name} = {literal(value)}")
        sql = (
            "SELECT COLUMNS('^(timestamp|metric|value|value_int)$') FROM "
            f"read_parquet([{', '.join(literal(g) for g in globs)}], hive_partitioning = true, "
            f"union_by_name = true) WHERE {' AND '.join(where)} ORDER BY timestamp"
        )
        try:
            with self._cursor() as con:
                con.execute("SET TimeZone = 'UTC'")
                table: pa.Table = con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"Parquet history {self.points_dir}: {exc}") from exc
        return table.set_column(0, "timestamp", table.column("timestamp").cast(_STAMP))

    def _pyarrow(self, entity: tuple[str | None, ...], metric: str, start: datetime | None, end: datetime) -> pa.Table:
        try:
            info = self.filesystem.get_file_info(self.points_dir)
            if info.type == pafs.FileType.NotFound:
                return _empty()
            dataset = ds.dataset(
                self.points_dir,
                filesystem=self.filesystem,
                format="parquet",
                partitioning="hive",
                exclude_invalid_files=False,
                ignore_prefixes=[".", "_"],
            )
            condition = (ds.field("metric") == metric) & (ds.field("timestamp") < pa.scalar(end, _STAMP))
            if start is not None:
                condition &= ds.field("timestamp") >= pa.scalar(start, _STAMP)
            for name, value in zip(KEY_COLUMNS, entity, strict=True):
                condition &= ds.field(name).is_null() if value is None else ds.field(name) == value
            table = dataset.to_table(filter=condition)
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"Parquet history {self.points_dir}: {exc}") from exc
        return table.sort_by("timestamp")


class DuckDBHistory:
    """Points of one entity and metric from a DuckDB sink's read-only snapshot file.

    The sink stores an entity's labels once per window (``metric_sets``), its points apart
    (``point_rows``) and each label string once, as an id (one ``label_values.<column>`` table per
    label; ``points`` is a view joining them back). Through the view every query runs all sixteen
    joins on the rows it keeps; instead the entity's strings are looked up in their tables, the
    sets filtered by those ids, as constants so that DuckDB skips row groups by their min/max, and
    only the matching sets' points joined. A string the file has never seen gets id 0, which no
    row has. A snapshot of an earlier layout (taken before the sink converted the file) is read
    through its ``points``.
    """

    def __init__(self, snapshot: Path) -> None:
        self.snapshot = snapshot

    def points(self, entity: tuple[str | None, ...], metric: str, start: datetime | None, end: datetime) -> pa.Table:
        if not self.snapshot.exists():
            return _empty()
        try:
            with duckdb.connect(str(self.snapshot), read_only=True) as con:
                query = self._by_ids if self._stores_sets(con) else self._by_strings
                table = query(con, entity, metric, start, end)
        except duckdb.Error as exc:
            raise StoreError(f"DuckDB history {self.snapshot}: {exc}") from exc
        return table.set_column(0, "timestamp", table.column("timestamp").cast(_STAMP))

    @staticmethod
    def _stores_sets(con: duckdb.DuckDBPyConnection) -> bool:
        found = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ?",
            [SETS],
        ).fetchall()
        return bool(found)

    @staticmethod
    def _by_ids(
        con: duckdb.DuckDBPyConnection,
        entity: tuple[str | None, ...],
        metric: str,
        start: datetime | None,
        end: datetime,
    ) -> pa.Table:
        labels = [("metric", metric), *zip(KEY_COLUMNS, entity, strict=True)]
        strings = [(name, value) for name, value in labels if value is not None]
        lookup = " UNION ALL ".join(
            f"SELECT ? AS label, id FROM {vocabulary_table(name)} WHERE value = ?" for name, _ in strings
        )
        found = con.execute(lookup, [item for pair in strings for item in pair]).fetchall()
        ids = {str(label): int(code) for label, code in found}
        where = [f"s.timestamp < {literal(end)}", f"f.metric = {ids.get('metric', 0)}"]
        if start is not None:
            where.append(f"s.timestamp >= {literal(start)}")
        for name, value in labels[1:]:
            column = f"s.{quote(name)}"
            where.append(f"{column} IS NULL" if value is None else f"{column} = {ids.get(name, 0)}")
        sql = (
            f"SELECT s.timestamp, {literal(metric)} AS metric, f.value, f.value_int FROM {FACTS} AS f "
            f"JOIN {SETS} AS s ON s.{SET_ID} = f.{POINT_SET} WHERE {' AND '.join(where)} ORDER BY s.timestamp"
        )
        table: pa.Table = con.sql(sql).to_arrow_table()
        return table

    @staticmethod
    def _by_strings(
        con: duckdb.DuckDBPyConnection,
        entity: tuple[str | None, ...],
        metric: str,
        start: datetime | None,
        end: datetime,
    ) -> pa.Table:
        where, parameters = _conditions(entity, metric, start, end)
        sql = f"SELECT timestamp, metric, value, value_int FROM points WHERE {' AND '.join(where)} ORDER BY timestamp"
        table: pa.Table = con.sql(sql, params=parameters).to_arrow_table()
        return table


def _conditions(
    entity: tuple[str | None, ...], metric: str, start: datetime | None, end: datetime
) -> tuple[list[str], list[object]]:
    """SQL conditions and parameters selecting one entity's metric in ``[start, end)``."""
    where = ["metric = ?", "timestamp < ?"]
    parameters: list[object] = [metric, end]
    if start is not None:
        where.append("timestamp >= ?")
        parameters.append(start)
    for name, value in zip(KEY_COLUMNS, entity, strict=True):
        if value is None:
            where.append(f"{name} IS NULL")
        else:
            where.append(f"{name} = ?")
            parameters.append(value)
    return where, parameters


def _empty() -> pa.Table:
    return pa.table({"timestamp": pa.array([], _STAMP)})
