"""Writer settings of window files and compacted files, read back from the files' own metadata."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from windows import fixture_windows

from heapster_columnar.model.window import Window
from heapster_columnar.sinks import _parquet_write
from heapster_columnar.sinks._parquet_write import WriterOptions, metric_ordered, part_count


@pytest.fixture(scope="module")
def window(kubelet_data: Path) -> Window:
    return fixture_windows(kubelet_data, 2)[1]


def encodings(path: Path, column: str) -> set[str]:
    meta = pq.read_metadata(path)
    index = meta.schema.names.index(column)
    return {e for g in range(meta.num_row_groups) for e in meta.row_group(g).column(index).encodings}


def has_statistics(path: Path, column: str) -> bool:
    meta = pq.read_metadata(path)
    return meta.row_group(0).column(meta.schema.names.index(column)).is_stats_set


def test_window_files_and_compacted_files_are_encoded_for_their_use(window: Window, tmp_path: Path) -> None:
    """Window files: delta-encoded sample/start times and value_int, byte-stream-split values,
    LZ4, statistics only on time, type and metric. Compacted files: dictionaries for every time,
    zstd, statistics on namespace and node too. Both read back equal in Polars and DuckDB
    (standard encodings only)."""
    table = metric_ordered(window.points)
    paths = {"window": tmp_path / "w.parquet", "compacted": tmp_path / "c.parquet"}
    for kind, options in (("window", WriterOptions().for_windows()), ("compacted", WriterOptions().for_compaction())):
        pq.write_table(table, paths[kind], **options.kwargs(table.schema, sorting=("metric",)))
    window_file, compacted = paths["window"], paths["compacted"]
    assert "DELTA_BINARY_PACKED" in encodings(window_file, "sample_time")
    assert "DELTA_BINARY_PACKED" in encodings(window_file, "start_time")
    assert "DELTA_BINARY_PACKED" in encodings(window_file, "value_int")
    assert "BYTE_STREAM_SPLIT" in encodings(window_file, "value")
    assert "BYTE_STREAM_SPLIT" not in encodings(compacted, "value")
    codec = {name: pq.read_metadata(path).row_group(0).column(3).compression for name, path in paths.items()}
    assert codec == {"window": "LZ4", "compacted": "ZSTD"}
    assert "RLE_DICTIONARY" in encodings(compacted, "sample_time")
    for column in ("timestamp", "type", "metric"):
        assert has_statistics(window_file, column) and has_statistics(compacted, column)
    for column in ("namespace_name", "nodename"):
        assert not has_statistics(window_file, column) and has_statistics(compacted, column)
    original = pl.from_arrow(table.cast(pq.read_schema(window_file)))
    assert isinstance(original, pl.DataFrame)
    strings = {pl.Categorical: pl.String}
    for path in paths.values():
        assert pl.read_parquet(path).cast(strings).equals(original.cast(strings))
        with duckdb.connect() as con:
            (count, stamps, exact, values) = con.sql(
                f"SELECT count(*), count(DISTINCT start_time), sum(value_int), list(value ORDER BY value) "
                f"FROM read_parquet('{path}')"
            ).fetchall()[0]
        assert count == table.num_rows and stamps == len(table.column("start_time").unique().drop_null())
        assert exact == sum(v for v in table.column("value_int").to_pylist() if v is not None)
        assert values == sorted(table.column("value").to_pylist())  # every double bit for bit


@pytest.mark.parametrize(
    ("rows", "row_group_size", "parts"),
    [
        (8_151_072, 1 << 22, 2),  # 3,000 nodes: two 4 M-row files side by side
        (13_585_072, 1 << 22, 2),  # 5,000 nodes: never more files than cores
        (900_000, 1 << 22, 1),  # a small cluster: one file
        (2_047, 1024, 1),  # small row groups: a part is at least one group
        (2_048, 1024, 2),
    ],
)
def test_a_window_is_cut_into_one_file_per_core_when_big_enough(
    rows: int, row_group_size: int, parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_parquet_write.os, "sched_getaffinity", lambda _pid: {0, 1})
    assert part_count(rows, row_group_size) == parts
