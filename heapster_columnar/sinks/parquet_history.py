"""Write complete hours of history straight into a Parquet store, in the compacted layout.

The Parquet sink writes one file per window and compacts closed hours later; a writer that
already holds whole hours (``simulate --backfill``, imports, tests building known stores) skips
both steps and writes what compaction would have produced: one file per hour partition, rows in
the compactor's order, its writer settings, its name and footer (``c-<first>-<last>-<tag>``,
the window stamps it holds), so the sink and every reader treat the result exactly like
collected history. Dimension snapshots go through the sink's own writer (only changed tables),
rollups through :func:`heapster_columnar.analysis.rollups.write_rollups`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.errors import ConfigError
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.schema import POINTS_SCHEMA
from heapster_columnar.sinks._parquet_compact import META_INPUTS, META_WINDOWS, SORT_KEYS, sort_points
from heapster_columnar.sinks._parquet_dims import DimensionWriter
from heapster_columnar.sinks._parquet_fs import Store, open_store
from heapster_columnar.sinks._parquet_layout import POINTS, STAGING, compacted_name, partition_of, stamp
from heapster_columnar.sinks._parquet_write import WriterOptions, type_row_groups

__all__ = ["HistoryWriter", "conform_points"]


def conform_points(table: pa.Table) -> pa.Table:
    """``table`` in the points schema: missing columns as nulls, strings dictionary-encoded."""
    columns = []
    for field in POINTS_SCHEMA:
        if field.name in table.column_names:
            column = table.column(field.name)
            if column.type != field.type:
                column = column.cast(field.type.value_type if pa.types.is_dictionary(field.type) else field.type)
                if pa.types.is_dictionary(field.type):
                    column = pc.dictionary_encode(column).cast(field.type)
            columns.append(column)
        elif not field.nullable:
            raise ConfigError(f"points table: required column {field.name!r} is missing")
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=POINTS_SCHEMA)


class HistoryWriter:
    """Appends whole hours to the store at ``location`` (a path or any URL the sink accepts)."""

    def __init__(self, location: str, *, partition: str = "hour", fsync: bool = False) -> None:
        self.location = location
        self.store: Store = open_store(location, fsync=fsync)
        self.partition = partition
        self.options = WriterOptions().for_compaction()
        self._dimensions = DimensionWriter(self.store, WriterOptions())
        if self.store.local:
            self.store.create_dir(self.store.path(STAGING))

    def write_points(self, points: pa.Table) -> list[str]:
        """Write ``points`` (any hours; one file per partition it touches). Returns the paths."""
        if points.num_rows == 0:
            return []
        points = conform_points(points)
        stamps = points.column("timestamp").cast(pa.int64()).to_numpy()
        granule = 3600_000 if self.partition == "hour" else 86_400_000
        keys = stamps // granule
        order = np.argsort(keys, kind="stable")
        keys_sorted = keys[order]
        cuts = np.flatnonzero(np.diff(keys_sorted)) + 1
        written = []
        for rows in np.split(order, cuts):
            written.append(self.write_partition(points.take(pa.array(rows)), presorted=False))
        return written

    def write_dimensions(self, dimensions: Dimensions, valid_from: datetime) -> list[str]:
        """Store the tables that changed since the last call (snapshots valid from ``valid_from``)."""
        return self._dimensions.write(dimensions, valid_from)

    def write_partition(self, points: pa.Table, *, presorted: bool = False) -> str:
        """Write the rows of one partition (all in one hour, or day) as one compacted file.

        ``presorted``: the rows are in the points schema and already in the compactor's order
        (a generator that builds them that way), so the sort and its copies, which cost more
        than the encoding, are skipped."""
        ends = np.unique(points.column("timestamp").cast(pa.int64()).to_numpy())
        windows = [stamp(datetime.fromtimestamp(int(ms) / 1000, UTC)) for ms in ends]
        first = datetime.fromtimestamp(int(ends[0]) / 1000, UTC)
        partition = partition_of(first, self.partition)
        ordered = points if presorted else sort_points(conform_points(points))
        tag = hashlib.sha1(("backfill\n" + "\n".join(windows)).encode()).hexdigest()[:8]
        metadata = {
            **(ordered.schema.metadata or {}),
            META_INPUTS: json.dumps([]).encode(),
            META_WINDOWS: json.dumps(windows).encode(),
        }
        ordered = ordered.replace_schema_metadata(metadata)
        directory = self.store.path(POINTS, partition.path)
        self.store.create_dir(directory)
        path = f"{directory}/{compacted_name(windows[0], windows[-1], tag)}"
        bounds = type_row_groups(ordered, self.options.row_group_size)
        self.store.write_table(path, ordered, self.options.kwargs(ordered.schema, sorting=SORT_KEYS), row_groups=bounds)
        return path
