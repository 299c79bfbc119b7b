"""The model API's stored history: points older than memory, from the Parquet or DuckDB store.

When ``run`` has a Parquet sink, a model query whose range starts before the in-memory windows
reads the rest from the Hive-partitioned ``points`` dataset that sink writes, with the entity and
metric pushed down as filters: files and row groups whose statistics cannot match are skipped
(the sink sorts row groups by metric, namespace, node and time for this). With only a DuckDB sink,
the rest comes from its read-only snapshot file (DuckDB admits one writer, and the collector's own
sink is it; the snapshot is refreshed every few minutes, well inside the 15-minute series store).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from heapster_columnar.api.entity_index import KEY_COLUMNS
from heapster_columnar.errors import StoreError

__all__ = ["DuckDBHistory", "ParquetHistory"]

_STAMP = pa.timestamp("ms", "UTC")


class ParquetHistory:
    """Points of one entity and metric from ``<root>/points`` (any pyarrow filesystem)."""

    def __init__(self, filesystem: pafs.FileSystem, points_dir: str) -> None:
        self.filesystem, self.points_dir = filesystem, points_dir

    def _dataset(self) -> ds.Dataset | None:
        try:
            info = self.filesystem.get_file_info(self.points_dir)
            if info.type == pafs.FileType.NotFound:
                return None
            return ds.dataset(
                self.points_dir,
                filesystem=self.filesystem,
                format="parquet",
                partitioning="hive",
                exclude_invalid_files=False,
                ignore_prefixes=[".", "_"],
            )
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"Parquet history {self.points_dir}: {exc}") from exc

    def points(self, entity: tuple[str | None, ...], metric: str, start: datetime | None, end: datetime) -> pa.Table:
        dataset = self._dataset()
        if dataset is None:
            return pa.table({"timestamp": pa.array([], _STAMP)})
        condition = (ds.field("metric") == metric) & (ds.field("timestamp") < pa.scalar(end, _STAMP))
        if start is not None:
            condition &= ds.field("timestamp") >= pa.scalar(start, _STAMP)
        for name, value in zip(KEY_COLUMNS, entity, strict=True):
            condition &= ds.field(name).is_null() if value is None else ds.field(name) == value
        try:
            table = dataset.to_table(filter=condition)
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"Parquet history {self.points_dir}: {exc}") from exc
        if "value_int" not in table.column_names:
            table = table.append_column("value_int", pa.nulls(table.num_rows, pa.int64()))
        return table.sort_by("timestamp")


class DuckDBHistory:
    """Points of one entity and metric from a DuckDB sink's read-only snapshot file."""

    def __init__(self, snapshot: Path) -> None:
        self.snapshot = snapshot

    def points(self, entity: tuple[str | None, ...], metric: str, start: datetime | None, end: datetime) -> pa.Table:
        if not self.snapshot.exists():
            return pa.table({"timestamp": pa.array([], _STAMP)})
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
        sql = f"SELECT timestamp, metric, value, value_int FROM points WHERE {' AND '.join(where)} ORDER BY timestamp"
        try:
            with duckdb.connect(str(self.snapshot), read_only=True) as con:
                table: pa.Table = con.sql(sql, params=parameters).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"DuckDB history {self.snapshot}: {exc}") from exc
        return table.set_column(0, "timestamp", table.column("timestamp").cast(_STAMP))
