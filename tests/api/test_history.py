"""Model queries older than memory come from the Parquet history, transparently."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from heapster_columnar.api.history import ParquetHistory
from heapster_columnar.api.model import ModelApi, Query
from heapster_columnar.sinks.memory import MemorySink

sys.path.insert(0, str(Path(__file__).parents[1] / "sinks"))
from windows import T0, fixture_windows

POD = ("pod", "datagen-1-28", "kube-system", "coredns-5dd5756b68-xmx7l", None)


def test_a_range_older_than_memory_reads_the_store(kubelet_data: Path, tmp_path: Path) -> None:
    windows = fixture_windows(kubelet_data, 4)
    stored = pa.concat_tables([w.points for w in windows[:3]])  # what a Parquet sink wrote
    stored = stored.append_column("date", pc.strftime(stored.column("timestamp"), "%Y-%m-%d"))
    stored = stored.append_column("hour", pc.strftime(stored.column("timestamp"), "%H"))
    ds.write_dataset(
        stored, tmp_path / "points", format="parquet", partitioning=["date", "hour"], partitioning_flavor="hive"
    )
    memory = MemorySink(window_retention=timedelta(seconds=20), series_retention=timedelta(seconds=20))
    for window in windows:
        memory.write(window)
    assert [w.end for w in memory.windows()] == [windows[-2].end, windows[-1].end]  # the older two: disk only

    api = ModelApi(memory, ParquetHistory(pafs.LocalFileSystem(), str(tmp_path / "points")))
    series = api.series(Query(POD, "memory/usage", T0, None, {}))
    want = []
    for window in windows:
        entities = pl.from_arrow(window.batch.entities)
        assert isinstance(entities, pl.DataFrame)
        row = entities.filter((pl.col("type") == "pod") & (pl.col("pod_name") == POD[3])).row(0, named=True)
        want.append((window.end, row["memory/usage"]))
    assert list(zip(series["timestamp"].to_list(), series["value_int"].to_list(), strict=True)) == want

    without = ModelApi(memory).series(Query(POD, "memory/usage", T0, None, {}))
    assert without.height == 2  # memory alone
    assert (
        ModelApi(memory, ParquetHistory(pafs.LocalFileSystem(), str(tmp_path / "none")))
        .series(Query(POD, "memory/usage", T0, None, {}))
        .height
        == 2
    )  # no store yet: no error


def test_with_only_duckdb_the_snapshot_answers(kubelet_data: Path, tmp_path: Path) -> None:
    from heapster_columnar.api.history import DuckDBHistory
    from heapster_columnar.config.uri import parse_uri
    from heapster_columnar.sinks.duckdb import DuckDBSink

    windows = fixture_windows(kubelet_data, 4)
    sink = DuckDBSink.from_uri(parse_uri(f"duckdb:{tmp_path / 'm.duckdb'}?snapshot=15s"))
    for window in windows:
        sink.write(window)
    sink.close()
    assert sink.snapshot_path.exists()
    memory = MemorySink(window_retention=timedelta(seconds=20), series_retention=timedelta(seconds=20))
    for window in windows:
        memory.write(window)
    series = ModelApi(memory, DuckDBHistory(sink.snapshot_path)).series(Query(POD, "memory/usage", T0, None, {}))
    stamps = series["timestamp"].to_list()
    assert stamps == [w.end for w in windows]  # the two oldest from the snapshot, the rest from memory
    assert DuckDBHistory(tmp_path / "missing.duckdb").points(POD, "memory/usage", T0, windows[-1].end).num_rows == 0


def test_both_readers_agree_across_midnight(kubelet_data: Path, tmp_path: Path) -> None:
    """DuckDB (local disks) and pyarrow (object stores) return the same points, and the date
    pruning keeps a range that crosses midnight whole: [23:40, 00:10) holds windows 23:40, 23:50,
    00:00 of the six written by the real sink."""
    from datetime import UTC, datetime

    from heapster_columnar.config.uri import parse_uri
    from heapster_columnar.sinks.parquet import ParquetSink

    first = datetime(2024, 6, 1, 23, 30, tzinfo=UTC)
    windows = fixture_windows(kubelet_data, 6, timedelta(minutes=10), start=first)
    sink = ParquetSink.from_uri(parse_uri(f"parquet:{tmp_path}?compact=false"))
    for window in windows:
        sink.write(window)
    sink.close()
    assert sorted(p.name for p in (tmp_path / "points").iterdir()) == ["date=2024-06-01", "date=2024-06-02"]

    begin, end = first + timedelta(minutes=10), first + timedelta(minutes=40)
    local = ParquetHistory(pafs.LocalFileSystem(), str(tmp_path / "points")).points(POD, "memory/usage", begin, end)
    remote = ParquetHistory(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "points").points(
        POD, "memory/usage", begin, end
    )
    want = []
    for window in windows[1:4]:
        entities = pl.from_arrow(window.batch.entities)
        assert isinstance(entities, pl.DataFrame)
        row = entities.filter((pl.col("type") == "pod") & (pl.col("pod_name") == POD[3])).row(0, named=True)
        want.append((window.end, row["memory/usage"]))
    for table in (local, remote):
        assert list(zip(table["timestamp"].to_pylist(), table["value_int"].to_pylist(), strict=True)) == want
        assert table.schema.field("timestamp").type == pa.timestamp("ms", "UTC")
