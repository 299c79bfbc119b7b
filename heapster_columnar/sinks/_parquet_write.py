"""Points to Parquet bytes: row order, writer settings, and one window written as parallel parts.

Row order is what makes filters prune. A window's rows all carry the same timestamp, so inside a
window file the order is by ``metric`` (the filter almost every query has): row groups then hold
a few metrics each and their min/max statistics let readers skip the rest. A row-level sort of a
13 M-point window (gather of every column) costs more than writing it, but the points table
already comes grouped by metric (one run per metric and entity type, a few hundred runs), so the
runs are reordered instead: zero-copy slices, no row moves. Compaction, which has time, sorts
fully (``_parquet_compact``).

The Parquet writer is single-threaded per file; a large window is cut into as many parts as this
machine has cores (row ranges of the ordered table, so the parts cover disjoint metric ranges)
and written side by side.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from heapster_columnar.model.schema import is_text

__all__ = [
    "COMPACTED_ROW_GROUP",
    "STATISTICS_COLUMNS",
    "WriterOptions",
    "metric_ordered",
    "part_count",
    "type_row_groups",
    "write_parts",
    "write_row_groups",
]

# Columns whose min/max statistics readers use to skip row groups (time, what, where); statistics
# on the other dictionary columns cost ~0.1 s each per 13 M rows and prune nothing once sorted.
COMPACTED_ROW_GROUP = 1 << 18  # rows

STATISTICS_COLUMNS = ("timestamp", "type", "metric", "namespace_name", "nodename", "valid_from")
WINDOW_STATISTICS_COLUMNS = ("timestamp", "type", "metric", "valid_from")
# Window files: standard non-dictionary encodings cheaper than the default for these columns.
_WINDOW_ENCODINGS = {
    "sample_time": "DELTA_BINARY_PACKED",
    "start_time": "DELTA_BINARY_PACKED",
    "value_int": "DELTA_BINARY_PACKED",
    "value": "BYTE_STREAM_SPLIT",
}
_MIN_PART_ROWS = 1 << 20


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """Parquet writer settings, validated by the sink's ``from_uri``."""

    compression: str = "zstd"  # files kept: compacted, dimension snapshots, backfills
    compression_level: int | None = None
    row_group_size: int = 1 << 22  # rows; see ``kwargs`` for why not Arrow's 1 Mi
    compacted: bool = False  # the settings of compacted files (``for_compaction``)
    window_compression: str = "lz4"  # the per-window files, compacted within the hour (``for_windows``)

    def for_windows(self) -> WriterOptions:
        """Settings for the files each window writes on the collection path: ``window_compression``.

        Measured on a 4 M-point part of an 8 M-point window: the writer took 1.54 CPU-s with zstd
        (59 MB), 1.16 with LZ4 (71 MB), 1.17 with none (132 MB): a fifth of the window's time
        for 20 % more bytes, in files compaction rewrites with ``compression`` once their hour
        closes. pyarrow writes LZ4 as the standard ``LZ4_RAW`` codec.
        """
        codec = self.window_compression
        return replace(
            self, compression=codec, compression_level=self.compression_level if codec == self.compression else None
        )

    def for_compaction(self) -> WriterOptions:
        """Settings for compacted files: row groups of at most 256 Ki rows, statistics on every
        pruning column, every time column dictionary-encoded. Compacted files are fully sorted and
        are what history queries read, so finer groups let one namespace or node skip most of a
        file; the dictionary repeated per group, statistics and hashing every time value cost
        little there (one write per closed partition, off the window's path)."""
        return replace(self, row_group_size=min(self.row_group_size, COMPACTED_ROW_GROUP), compacted=True)

    def kwargs(self, schema: pa.Schema, sorting: Sequence[str] = ()) -> dict[str, Any]:
        """``pq.write_table`` keywords: standard encodings only (dictionary for strings and times,
        plain for numbers), ``timestamp[ms, UTC]`` kept as is, statistics on the pruning columns.

        Measured on a 5,000-node window (13.6 M points, ``bench_parquet_sink.py``): the writer
        stores an Arrow dictionary whole in every row group, so with 150,000 pods each 1 Mi-row
        group repeated ~10 MiB of pod names and ids; 4 Mi-row groups cut CPU by a quarter and size
        by a sixth. Window files (4 Mi-row groups, each spanning every node and namespace) differ
        from compacted ones in three ways, together a quarter of the writer's CPU for 5 % more
        bytes: statistics only on ``timestamp``, ``type`` and ``metric`` (for a dictionary column
        the writer runs ``unique`` and ``take`` on every batch to find the min/max, and no
        namespace or node could be pruned from such groups); ``sample_time`` and ``start_time``
        (repeated per node and per entity) in ``DELTA_BINARY_PACKED``, a standard encoding, where
        a dictionary hashes every value; 2 MiB data pages (fewer compressor set-ups). And
        ``value`` in ``BYTE_STREAM_SPLIT``, ``value_int`` in ``DELTA_BINARY_PACKED`` (both
        standard; read by pyarrow, Polars, DuckDB, Spark ≥ 3.2, Trino): 14 % less writer CPU
        than plain, and 17 % smaller columns.
        """
        names = schema.names
        times = [f.name for f in schema if pa.types.is_timestamp(f.type)]
        kinds = {f.name: f.type for f in schema}
        deltas = {
            name: encoding
            for name, encoding in _WINDOW_ENCODINGS.items()
            if not self.compacted and name in kinds and not pa.types.is_dictionary(kinds[name])
        }
        statistics = STATISTICS_COLUMNS if self.compacted else WINDOW_STATISTICS_COLUMNS
        return {
            "version": "2.6",
            "compression": self.compression,
            "compression_level": self.compression_level,
            "row_group_size": self.row_group_size,
            "use_dictionary": [f.name for f in schema if is_text(f.type)] + [n for n in times if n not in deltas],
            "column_encoding": deltas or None,
            "write_statistics": [n for n in statistics if n in names],
            "dictionary_pagesize_limit": 16 << 20,
            "data_page_size": 2 << 20,
            "write_batch_size": 1 << 16,  # fewer per-batch passes than the default 1,024 (~5 % CPU)
            "sorting_columns": [pq.SortingColumn(names.index(n)) for n in sorting if n in names] or None,
        }


def _metric_rank(column: pa.ChunkedArray) -> np.ndarray:
    """Per row, the rank of its metric name in string order (so runs sort by name, not by code)."""
    if pa.types.is_dictionary(column.type):
        dictionaries = {id(c.dictionary) for c in column.chunks}
        if len(dictionaries) > 1 and not all(c.dictionary.equals(column.chunk(0).dictionary) for c in column.chunks):
            column = pa.table({"m": column}).unify_dictionaries().column("m")
        if column.num_chunks == 0:
            return np.empty(0, np.int32)
        names = column.chunk(0).dictionary
        order = np.argsort(np.asarray(names.to_pylist(), dtype=object), kind="stable")
        rank = np.empty(len(order), np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        codes = [c.indices.to_numpy(zero_copy_only=False) for c in column.chunks]
        return rank[np.concatenate(codes)] if codes else np.empty(0, np.int32)
    encoded = pa.chunked_array(column).combine_chunks().dictionary_encode()
    return _metric_rank(pa.chunked_array([encoded]))


def metric_ordered(points: pa.Table) -> pa.Table:
    """``points`` with rows ordered by metric name (stable), moving runs rather than rows."""
    if points.num_rows == 0 or "metric" not in points.column_names:
        return points
    key = _metric_rank(points.column("metric"))
    boundaries = np.flatnonzero(key[1:] != key[:-1]) + 1
    starts = np.concatenate([[0], boundaries])
    if np.all(key[starts[1:]] >= key[starts[:-1]]):
        return points  # already in order
    if len(starts) > max(1024, points.num_rows // 1024):  # interleaved: moving runs would make tiny chunks
        return points.take(pa.array(np.argsort(key, kind="stable")))
    ends = np.concatenate([boundaries, [len(key)]])
    run_order = np.argsort(key[starts], kind="stable")
    return pa.concat_tables([points.slice(int(starts[i]), int(ends[i] - starts[i])) for i in run_order])


def part_count(rows: int, row_group_size: int) -> int:
    """How many files a window of ``rows`` becomes: one per core, each at least a row group or
    1 Mi rows, whichever is smaller, and a quarter of a row group (an 8 M-point window on two cores
    is two files of 4 M rows written side by side; a small cluster's window stays one file)."""
    smallest = max(row_group_size // 4, min(row_group_size, _MIN_PART_ROWS))
    return max(1, min(len(os.sched_getaffinity(0)), rows // max(1, smallest)))


def write_parts(
    table: pa.Table, parts: int, write: Callable[[int, pa.Table], None], pool: ThreadPoolExecutor | None = None
) -> list[pa.Table]:
    """Cut ``table`` into ``parts`` row ranges and call ``write(index, part)`` for each, in parallel.

    Returns the parts. The first error raised by any part is re-raised after all have finished,
    so no thread is still writing when the caller cleans up.
    """
    step = -(-table.num_rows // parts) if parts else 0
    slices = [table.slice(i * step, step) for i in range(parts)]
    if parts == 1 or pool is None:
        for i, part in enumerate(slices):
            write(i, part)
        return slices
    futures = [pool.submit(write, i, part) for i, part in enumerate(slices)]
    errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return slices


def type_row_groups(table: pa.Table, max_rows: int) -> list[int]:
    """Row counts of the row groups of a table sorted by entity ``type`` first: a new group at
    every change of type, none longer than ``max_rows``."""
    if table.num_rows == 0:
        return []
    column = table.column("type")
    if pa.types.is_dictionary(column.type) and column.num_chunks == 1:
        codes = column.chunk(0).indices.to_numpy(zero_copy_only=False)
    else:  # several chunks may hold several dictionaries: compare the names
        codes = np.asarray(pc.dictionary_encode(column.cast(pa.string()).combine_chunks()).indices)
    starts = np.concatenate([[0], np.flatnonzero(codes[1:] != codes[:-1]) + 1, [len(codes)]])
    sizes: list[int] = []
    for lo, hi in itertools.pairwise(starts):
        length = int(hi - lo)
        sizes += [max_rows] * (length // max_rows) + ([length % max_rows] if length % max_rows else [])
    return sizes


def write_row_groups(table: pa.Table, where: Any, sizes: Sequence[int], options: dict[str, Any]) -> None:
    """Write ``table`` with the given row-group sizes (``pq.write_table`` only cuts by count).

    pyarrow stores a dictionary column's whole Arrow dictionary in every row group; a small group
    (the cluster series of an hour) would repeat 150,000 pod names, so its dictionary columns are
    re-encoded with only the values it uses."""
    kwargs = {k: v for k, v in options.items() if k != "row_group_size"}
    with pq.ParquetWriter(where, table.schema, **kwargs) as writer:
        offset = 0
        for size in sizes:
            part = table.slice(offset, size)
            offset += size
            if size < max(1, table.num_rows // 8):
                part = _compact_dictionaries(part)
            writer.write_table(part, row_group_size=size)


def _compact_dictionaries(part: pa.Table) -> pa.Table:
    columns = []
    for field, column in zip(part.schema, part.columns, strict=True):
        if pa.types.is_dictionary(field.type):
            column = column.cast(field.type.value_type).combine_chunks().dictionary_encode().cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=part.schema)
