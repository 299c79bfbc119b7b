"""The Parquet sink on real files and real fixture windows: exact round trips through pyarrow,
Polars and DuckDB, the Hive layout and what it lets readers skip, dimension snapshots, compaction,
crashes (SIGKILL mid-write, and between a compaction's write and its deletions), unwritable and
full directories, corrupt files, and an fsspec target."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from permissions import shared_directory, unprivileged
from polars.testing import assert_frame_equal
from windows import decoded, fixture_dimensions, fixture_windows

from heapster_columnar.config.uri import parse_uri
from heapster_columnar.errors import ConfigError, SinkError
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.window import Window
from heapster_columnar.sinks._parquet_compact import META_INPUTS, META_WINDOWS, SORT_KEYS, sort_points
from heapster_columnar.sinks._parquet_layout import incomplete_windows
from heapster_columnar.sinks.parquet import ParquetSink
from heapster_columnar.sinks.registry import build_sink

HERE = Path(__file__).parent
HOUR12 = "points/date=2023-11-20/hour=12"
HOUR13 = "points/date=2023-11-20/hour=13"


@pytest.fixture(scope="module")
def made(kubelet_data: Path) -> list[Window]:
    """Four windows 15 s apart (hour 12), all with the same Dimensions object."""
    return fixture_windows(kubelet_data, 4)


@pytest.fixture(scope="module")
def spread(kubelet_data: Path) -> list[Window]:
    """Six windows 20 minutes apart: 12:00, 12:20, 12:40 (hour 12), 13:00, 13:20, 13:40 (hour 13)."""
    return fixture_windows(kubelet_data, 6, timedelta(minutes=20))


def sink_at(root: Path | str, query: str = "") -> ParquetSink:
    sink = build_sink(f"parquet:{root}{'?' + query if query else ''}")
    assert isinstance(sink, ParquetSink)
    return sink


def write_all(root: Path | str, windows: list[Window], query: str = "") -> None:
    sink = sink_at(root, query)
    for window in windows:
        sink.write(window)
    sink.wait_for_compaction()
    sink.close()


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """The row multiset, times as epoch milliseconds (readers differ in their tzinfo objects)."""
    return sorted((tuple(_plain(v) for v in row.values()) for row in table.to_pylist()), key=repr)


def _plain(value: Any) -> Any:
    return round(value.timestamp() * 1000) if isinstance(value, datetime) else value


def expected(windows: list[Window]) -> list[tuple[Any, ...]]:
    return rows(pa.concat_tables([w.points for w in windows]))


def stored(root: Path) -> pa.Table:
    """The points dataset as pyarrow reads it, partition columns dropped."""
    return ds.dataset(root / "points", partitioning="hive").to_table().drop_columns(["date", "hour"])


def files(root: Path, under: str = "") -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / under).rglob("*") if p.is_file())


# --- configuration ----------------------------------------------------------------------------


def test_every_option_is_read() -> None:
    sink = ParquetSink.from_uri(
        parse_uri(
            "parquet:/data/metrics?partition=day&compression=gzip&compression_level=5&row_group_size=4096"
            "&compact=false&compact_min_files=3&compact_size=2MB&fsync=false&window_compression=snappy"
        )
    )
    c = sink.config
    assert (c.target, c.partition, c.fsync) == ("/data/metrics", "day", False)
    assert (c.writer.compression, c.writer.compression_level, c.writer.row_group_size) == ("gzip", 5, 4096)
    assert c.writer.window_compression == "snappy"
    assert (c.writer.for_windows().compression, c.writer.for_windows().compression_level) == ("snappy", None)
    assert (c.compaction.enabled, c.compaction.min_files, c.compaction.target_bytes) == (False, 3, 2 << 20)
    defaults = ParquetSink.from_uri(parse_uri("parquet:s3://bucket/prefix")).config
    assert (defaults.partition, defaults.writer.compression, defaults.writer.row_group_size) == (
        "hour",
        "zstd",
        1 << 22,
    )
    assert (defaults.compaction.enabled, defaults.compaction.target_bytes, defaults.fsync) == (True, 64 << 20, True)
    assert defaults.writer.window_compression == "lz4"  # window files are compacted within the hour
    kept = ParquetSink.from_uri(parse_uri("parquet:/x?compact=false&compression=gzip&compression_level=4")).config
    assert (kept.writer.for_windows().compression, kept.writer.for_windows().compression_level) == ("gzip", 4)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("parquet:/x?partiton=hour", ["'partiton'", "known:"]),
        ("parquet:/x?partition=week", ["partition='week'", "hour or day"]),
        ("parquet:/x?compression=brotli", ["compression='brotli'", "zstd, snappy, gzip, lz4, none"]),
        ("parquet:/x?compression_level=30", ["compression_level=30", "at most 22"]),
        ("parquet:/x?compression=snappy&compression_level=3", ["compression_level", "compression=snappy"]),
        ("parquet:/x?window_compression=lzo", ["window_compression='lzo'", "zstd, snappy, gzip, lz4, none"]),
        ("parquet:/x?row_group_size=10", ["row_group_size='10'", "at least 1024"]),
        ("parquet:/x?row_group_size=many", ["row_group_size='many'", "not an integer"]),
        ("parquet:/x?compact=sometimes", ["compact='sometimes'", "boolean"]),
        ("parquet:/x?compact_min_files=1", ["compact_min_files='1'", "at least 2"]),
        ("parquet:/x?compact_size=big", ["compact_size='big'", "not a size"]),
        ("parquet:/x?compact_size=12", ["compact_size='12'", "at least 1KB"]),
        ("parquet:/x?fsync=perhaps", ["fsync='perhaps'", "boolean"]),
        ("parquet:", ["no target directory"]),
        ("parquet:nosuchfs://bucket/x", ["'nosuchfs'"]),
    ],
)
def test_bad_options_are_config_errors_naming_them(text: str, named: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        build_sink(text)
    for part in named:
        assert part in str(raised.value)


def test_building_the_sink_touches_no_file(made: list[Window], tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    sink = sink_at(root, "partition=hour&compression=zstd")
    assert not (tmp_path / "not").exists()
    sink.write(made[0])
    sink.close()
    assert files(root, "points") == [f"{HOUR12}/w-20231120T120000000Z-0of1.parquet"]


# --- round trip and layout --------------------------------------------------------------------


def test_round_trip_is_exact_in_pyarrow_polars_and_duckdb(made: list[Window], tmp_path: Path) -> None:
    write_all(tmp_path, made)
    want = pa.concat_tables([w.points for w in made])

    dataset = ds.dataset(tmp_path / "points", partitioning="hive")
    table = dataset.to_table()
    assert (
        table.schema.remove(table.schema.get_field_index("hour")).remove(table.schema.get_field_index("date"))
        == want.schema
    )
    assert [f.type for f in table.schema][:21] == [f.type for f in want.schema]
    assert table.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert set(table.column("date").to_pylist()) == {"2023-11-20"} and set(table.column("hour").to_pylist()) == {12}
    assert rows(table.drop_columns(["date", "hour"])) == rows(want)

    frame = pl.scan_parquet(tmp_path / "points", hive_partitioning=True).collect()
    reference = pl.from_arrow(want)
    assert isinstance(reference, pl.DataFrame)
    assert frame.drop("date", "hour").schema == reference.schema
    assert frame.schema["timestamp"] == pl.Datetime("ms", "UTC") and frame.schema["hour"] == pl.Int64
    as_text = [pl.col(c).cast(pl.String) for c, t in reference.schema.items() if t == pl.Categorical]
    assert_frame_equal(
        frame.drop("date", "hour").with_columns(as_text), reference.with_columns(as_text), check_row_order=False
    )

    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        source = f"read_parquet('{tmp_path}/points/**/*.parquet', hive_partitioning = true)"
        types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {source})").fetchall())
        got = con.sql(f"SELECT * EXCLUDE (date, hour) FROM {source}").to_arrow_table()
        partition = con.execute(f"SELECT DISTINCT date, hour FROM {source}").fetchall()
    assert types["timestamp"] == "TIMESTAMP WITH TIME ZONE" and types["metric"] == "VARCHAR"
    assert (types["value"], types["value_int"], types["date"]) == ("DOUBLE", "BIGINT", "DATE")
    assert partition == [(datetime(2023, 11, 20).date(), 12)]
    assert rows(got) == rows(want)


def test_files_land_in_hour_partitions_and_a_filter_on_one_hour_reads_only_its_files(
    spread: list[Window], tmp_path: Path
) -> None:
    write_all(tmp_path, spread, "compact=false")
    assert files(tmp_path, "points") == [
        f"{HOUR12}/w-20231120T120000000Z-0of1.parquet",
        f"{HOUR12}/w-20231120T122000000Z-0of1.parquet",
        f"{HOUR12}/w-20231120T124000000Z-0of1.parquet",
        f"{HOUR13}/w-20231120T130000000Z-0of1.parquet",
        f"{HOUR13}/w-20231120T132000000Z-0of1.parquet",
        f"{HOUR13}/w-20231120T134000000Z-0of1.parquet",
    ]
    dataset = ds.dataset(tmp_path / "points", partitioning="hive")
    fragments = list(dataset.get_fragments(filter=ds.field("hour") == 13))
    assert sorted(Path(f.path).parent.name for f in fragments) == ["hour=13"] * 3
    hour13 = dataset.to_table(filter=ds.field("hour") == 13).drop_columns(["date", "hour"])
    assert rows(hour13) == expected(spread[3:])

    with duckdb.connect() as con:
        source = f"read_parquet('{tmp_path}/points/**/*.parquet', hive_partitioning = true, filename = true)"
        names = con.execute(f"SELECT DISTINCT filename FROM {source} WHERE hour = 13 ORDER BY 1").fetchall()
    assert [Path(n).parent.name for (n,) in names] == ["hour=13"] * 3


def test_day_partitions(spread: list[Window], tmp_path: Path) -> None:
    write_all(tmp_path, spread[:2], "partition=day")
    assert files(tmp_path, "points") == [
        "points/date=2023-11-20/w-20231120T120000000Z-0of1.parquet",
        "points/date=2023-11-20/w-20231120T122000000Z-0of1.parquet",
    ]
    with pytest.raises(SinkError) as raised:  # the other granule on the same root would break Hive readers
        sink_at(tmp_path, "partition=hour").write(spread[2])
    assert "partition=hour" in str(raised.value) and not raised.value.retryable


def test_row_groups_are_sorted_by_metric_so_a_metric_filter_skips_the_others(
    made: list[Window], tmp_path: Path
) -> None:
    write_all(tmp_path, made[1:2], "row_group_size=1024")
    (path,) = (tmp_path / HOUR12).glob("*.parquet")
    metadata = pq.read_metadata(path)
    assert metadata.num_row_groups == 2 and metadata.num_rows == made[1].points.num_rows
    ranges = [metadata.row_group(i).column(2).statistics for i in range(2)]
    assert ranges[0].max <= ranges[1].min  # metric ranges do not overlap
    assert metadata.row_group(0).sorting_columns == (pq.SortingColumn(2),)
    stamps = metadata.row_group(0).column(0).statistics
    assert stamps.min == stamps.max == made[1].end

    # DuckDB, Polars, Spark and Trino skip a row group whose [min, max] misses the value; pyarrow.dataset
    # uses statistics of plain columns only (timestamp here), not of dictionary-typed ones
    assert [r.min <= "cpu/usage" <= r.max for r in ranges] == [True, False]
    assert [r.min <= "uptime" <= r.max for r in ranges] == [False, True]
    fragment = next(iter(ds.dataset(path).get_fragments()))
    later = pa.scalar(made[1].end + timedelta(seconds=1), pa.timestamp("ms", tz="UTC"))
    assert fragment.split_by_row_group(filter=ds.field("timestamp") >= later) == []
    with duckdb.connect() as con:
        found = con.sql(
            f"SELECT * FROM read_parquet('{path}', hive_partitioning = false) WHERE metric = 'uptime'"
        ).to_arrow_table()
    assert rows(found) == rows(made[1].points.filter(pc.equal(made[1].points["metric"].cast(pa.string()), "uptime")))


def test_a_window_written_twice_is_stored_once(made: list[Window], tmp_path: Path) -> None:
    write_all(tmp_path, [made[0], made[1], made[1]])
    sink = sink_at(tmp_path)  # a restarted sink replaying the spool
    sink.write(made[1])
    sink.close()
    assert rows(stored(tmp_path)) == expected(made[:2])


def test_a_window_without_points_writes_no_points_file(made: list[Window], tmp_path: Path) -> None:
    empty = replace(made[0], points=made[0].points.slice(0, 0), dimensions=None)
    write_all(tmp_path, [empty])
    assert files(tmp_path) == []


# --- dimension tables -------------------------------------------------------------------------


def pods_changed(dimensions: Dimensions) -> Dimensions:
    pods = dimensions.pods
    index = pods.schema.get_field_index("phase")
    phase = pc.if_else(pc.equal(pods["name"], "etcd-datagen-1-28"), pa.scalar("Failed"), pods["phase"])
    return replace(dimensions, pods=pods.set_column(index, pods.schema.field("phase"), phase))


def test_dimension_tables_are_written_once_while_unchanged_and_again_on_change(
    made: list[Window], kubelet_data: Path, tmp_path: Path
) -> None:
    dims = made[0].dimensions
    assert dims is not None
    changed = pods_changed(dims)
    windows = [made[0], made[1], made[2], replace(made[3], dimensions=changed)]
    write_all(tmp_path, windows)
    snapshots = [p for p in files(tmp_path) if not p.startswith("points/")]
    assert snapshots == [
        "containers/v-20231120T120000000Z.parquet",
        "namespaces/v-20231120T120000000Z.parquet",
        "nodes/v-20231120T120000000Z.parquet",
        "pods/v-20231120T120000000Z.parquet",
        "pods/v-20231120T120045000Z.parquet",
    ]
    pods = ds.dataset(tmp_path / "pods").to_table()
    assert pods.schema.field("valid_from").type == pa.timestamp("ms", tz="UTC")
    first = pods.filter(pc.equal(pods["valid_from"], pa.scalar(made[0].end, pods.schema.field("valid_from").type)))
    assert first.drop_columns(["valid_from"]).equals(dims.pods)
    assert first.num_rows == dims.pods.num_rows and pods.num_rows == 2 * dims.pods.num_rows

    # the snapshot in force at each window, as a notebook would join it
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        phases = con.execute(
            f"""SELECT p.timestamp, d.phase, count(*) FROM read_parquet('{tmp_path}/points/**/*.parquet') p
                ASOF JOIN read_parquet('{tmp_path}/pods/*.parquet') d
                  ON p.namespace_name = d.namespace AND p.pod_name = d.name AND p.timestamp >= d.valid_from
                WHERE p.pod_name = 'etcd-datagen-1-28' AND p.metric = 'memory/usage' AND p.type = 'pod'
                GROUP BY ALL ORDER BY 1"""
        ).fetchall()
    assert [(t.second, phase, n) for t, phase, n in phases] == [
        (0, "Running", 1),
        (15, "Running", 1),
        (30, "Running", 1),
        (45, "Failed", 1),
    ]

    # a restart compares content: equal new objects store nothing, a changed table is stored
    again = fixture_dimensions(kubelet_data)
    assert again is not dims and again.pods is not dims.pods
    sink = sink_at(tmp_path)
    sink.write(replace(made[3], end=made[3].end + timedelta(seconds=15), dimensions=changed))
    sink.write(
        replace(made[3], end=made[3].end + timedelta(seconds=30), dimensions=replace(changed, nodes=again.nodes))
    )
    sink.write(replace(made[3], end=made[3].end + timedelta(seconds=45), dimensions=again))
    sink.close()
    assert [p for p in files(tmp_path) if not p.startswith("points/")] == [
        *snapshots,
        "pods/v-20231120T120130000Z.parquet",
    ]


def test_a_restart_with_equal_dimension_tables_stores_no_copy(
    made: list[Window], kubelet_data: Path, tmp_path: Path
) -> None:
    write_all(tmp_path, made[:1])
    write_all(tmp_path, [replace(made[1], dimensions=fixture_dimensions(kubelet_data))])
    assert len([p for p in files(tmp_path) if p.startswith("pods/")]) == 1


# --- compaction -------------------------------------------------------------------------------


def test_a_closed_hour_is_compacted_into_one_sorted_file_equal_to_its_windows(
    spread: list[Window], tmp_path: Path
) -> None:
    write_all(tmp_path, spread[:4], "compact_size=1MB")
    (compacted,) = files(tmp_path, HOUR12)
    assert compacted.startswith(f"{HOUR12}/c-20231120T120000000Z-20231120T124000000Z-")
    assert files(tmp_path, HOUR13) == [f"{HOUR13}/w-20231120T130000000Z-0of1.parquet"]  # the open hour is left alone
    codecs = {
        pq.read_metadata(tmp_path / name).row_group(0).column(3).compression
        for name in (compacted, *files(tmp_path, HOUR13))
    }
    assert codecs == {"ZSTD", "LZ4"}  # window files fast (LZ4_RAW), compacted ones small
    table = pq.read_table(tmp_path / compacted)
    assert rows(table) == expected(spread[:3])
    assert decoded(table).equals(decoded(sort_points(table)))  # row groups carry their own dictionaries
    metadata = pq.read_metadata(tmp_path / compacted)
    assert metadata.metadata[META_WINDOWS] == b'["20231120T120000000Z", "20231120T122000000Z", "20231120T124000000Z"]'
    assert metadata.metadata[META_INPUTS].count(b"w-") == 3
    # one entity type per row group, types in order: a cluster or namespace query reads its own groups
    type_index = table.schema.get_field_index("type")
    kinds = [metadata.row_group(i).column(type_index).statistics for i in range(metadata.num_row_groups)]
    assert all(k.min == k.max for k in kinds)
    assert (
        [k.min for k in kinds]
        == sorted({k.min for k in kinds})
        == ["cluster", "node", "ns", "pod", "pod_container", "sys_container"]
    )
    assert [c.column_index for c in metadata.row_group(0).sorting_columns][: len(SORT_KEYS)] == [
        table.schema.get_field_index(k) for k in SORT_KEYS
    ]
    assert rows(stored(tmp_path)) == expected(spread[:4])
    assert files(tmp_path, "_staging") == []


def test_a_late_window_is_merged_into_the_compacted_hour_and_a_replayed_one_is_not_stored_again(
    spread: list[Window], tmp_path: Path
) -> None:
    late = replace(spread[0], end=spread[0].end + timedelta(minutes=10))  # 12:10, after 13:00 was written
    stamps = pa.array([late.end] * late.points.num_rows, late.points.schema.field(0).type)
    late = replace(late, points=late.points.set_column(0, late.points.schema.field(0), stamps))
    write_all(tmp_path, [*spread[:4], late, spread[1], spread[4]], "compact_size=1MB")
    (compacted,) = files(tmp_path, HOUR12)
    windows = pq.read_metadata(tmp_path / compacted).metadata[META_WINDOWS]
    assert windows.count(b"Z") == 4 and b"20231120T121000000Z" in windows
    assert rows(stored(tmp_path)) == expected([*spread[:5], late])


def test_small_files_below_the_minimum_count_are_left_alone(spread: list[Window], tmp_path: Path) -> None:
    write_all(tmp_path, spread[:4], "compact_min_files=4")
    assert len(files(tmp_path, HOUR12)) == 3


# --- crashes ----------------------------------------------------------------------------------

CHILD = """
import os, signal, sys, time
sys.path[:0] = [{here!r}, {tests!r}]
from datetime import timedelta
import pyarrow as pa
from windows import fixture_windows
from heapster_columnar.samples import kubelet_dir
from heapster_columnar.sinks.registry import build_sink
import heapster_columnar.sinks._parquet_compact as compact
from heapster_columnar.model.window import Window
windows = fixture_windows(kubelet_dir(), 6, timedelta(minutes=20))
sink = build_sink({uri!r})
"""

KILL_MID_WRITE = (
    CHILD
    + """
for w in windows[:2]:
    sink.write(w)
big = pa.concat_tables([windows[2].points] * 1500)
print("written", flush=True)
for k in range(20):
    end = windows[2].end + timedelta(seconds=k)
    stamps = pa.array([end] * big.num_rows, big.schema.field(0).type)
    sink.write(Window(end, end, windows[2].batch, big.set_column(0, big.schema.field(0), stamps), 1))
    print("big", k, flush=True)
"""
)

KILL_BEFORE_DELETIONS = (
    CHILD
    + """
for w in windows[:3]:
    sink.write(w)
compact.remove_inputs = lambda store, paths: os.kill(os.getpid(), signal.SIGKILL)
sink.write(windows[3])
sink.wait_for_compaction()
print("survived", flush=True)
"""
)


KILL_BETWEEN_PARTS = (
    CHILD
    + """
import heapster_columnar.sinks._parquet_fs as store_module
sink.write(windows[0])
publish = store_module.Store.publish
def first_then_die(self, staged):
    publish(self, staged[:1])
    os.kill(os.getpid(), signal.SIGKILL)
store_module.Store.publish = first_then_die
sink.write(windows[1].__class__(windows[1].start, windows[1].end, windows[1].batch,
    pa.concat_tables([windows[1].points] * 4), 1))
print("survived", flush=True)
"""
)


def sizes(directory: Path) -> list[int]:
    """Sizes of the files in ``directory``, skipping one renamed away meanwhile."""
    found = []
    for path in directory.glob("*"):
        try:
            found.append(path.stat().st_size)
        except FileNotFoundError:
            continue
    return found


def run_child(script: str, root: Path, query: str = "") -> subprocess.Popen[str]:
    uri = f"parquet:{root}{'?' + query if query else ''}"
    code = script.format(here=str(HERE), tests=str(HERE.parent), uri=uri)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_sigkill_mid_write_leaves_a_readable_dataset_missing_at_most_the_window_in_flight(
    spread: list[Window], tmp_path: Path
) -> None:
    with run_child(KILL_MID_WRITE, tmp_path) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "written\n"
        started, staged = time.monotonic(), False
        while not staged and time.monotonic() - started < 30:
            staged = any(size > 0 for size in sizes(tmp_path / "_staging"))  # a window part is being written
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        done = child.stdout.read().count("big")
    assert staged and child.returncode == -signal.SIGKILL

    # every visible file is a whole Parquet file; whole big windows only, at most the one in flight missing
    assert all(p.endswith(".parquet") for p in files(tmp_path, "points"))
    per_window = dict(
        duckdb.sql(
            f"SELECT timestamp, count(*) FROM read_parquet('{tmp_path}/points/**/*.parquet') GROUP BY ALL"
        ).fetchall()
    )
    assert len(per_window) == 2 + done
    assert sorted(per_window.values())[:2] == sorted([spread[0].points.num_rows, spread[1].points.num_rows])
    assert all(n == 1500 * spread[2].points.num_rows for n in sorted(per_window.values())[2:])
    assert pl.scan_parquet(tmp_path / "points", hive_partitioning=True).select(pl.len()).collect().item() == sum(
        per_window.values()
    )
    before = stored(tmp_path)
    assert rows(
        before.filter(pc.less(before["timestamp"], pa.scalar(spread[2].end, before.schema.field("timestamp").type)))
    ) == expected(spread[:2])
    assert files(tmp_path, "_staging")  # the temp file is still there ...

    sink = sink_at(tmp_path)
    sink.write(spread[3])
    sink.close()
    assert files(tmp_path, "_staging") == []  # ... until the restarted sink clears it
    assert stored(tmp_path).num_rows == before.num_rows + spread[3].points.num_rows


def test_a_crash_between_compaction_write_and_deletions_leaves_no_duplicate_after_restart(
    spread: list[Window], tmp_path: Path
) -> None:
    with run_child(KILL_BEFORE_DELETIONS, tmp_path, "compact_size=1MB") as child:
        assert child.stdout is not None
        out = child.stdout.read()
    assert child.returncode == -signal.SIGKILL and "survived" not in out
    hour12 = files(tmp_path, HOUR12)
    assert len(hour12) == 4 and sum("/c-" in p for p in hour12) == 1  # the moment a reader sees both
    assert stored(tmp_path).num_rows == 2 * sum(w.points.num_rows for w in spread[:3]) + spread[3].points.num_rows

    sink = sink_at(tmp_path, "compact_size=1MB")
    sink.write(spread[4])
    sink.close()
    (compacted,) = files(tmp_path, HOUR12)
    assert "/c-" in compacted
    assert rows(stored(tmp_path)) == expected(spread[:5])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a window is cut into parts only with 2+ cores")
def test_a_crash_between_publishing_a_windows_parts_leaves_no_half_window_after_restart(
    spread: list[Window], tmp_path: Path
) -> None:
    with run_child(KILL_BETWEEN_PARTS, tmp_path, "row_group_size=1024") as child:
        assert child.stdout is not None
        out = child.stdout.read()
    assert child.returncode == -signal.SIGKILL and "survived" not in out
    assert files(tmp_path, HOUR12) == [
        f"{HOUR12}/w-20231120T120000000Z-0of1.parquet",
        f"{HOUR12}/w-20231120T122000000Z-0of2.parquet",  # half of the window in flight
    ]
    sink = sink_at(tmp_path)
    sink.write(spread[2])
    sink.close()
    assert files(tmp_path, HOUR12) == [
        f"{HOUR12}/w-20231120T120000000Z-0of1.parquet",
        f"{HOUR12}/w-20231120T124000000Z-0of1.parquet",
    ]
    assert rows(stored(tmp_path)) == expected([spread[0], spread[2]])


def test_only_whole_windows_count_and_one_whole_copy_is_kept() -> None:
    names = [
        "w-20231120T120000000Z-0of1.parquet",
        "w-20231120T120015000Z-0of2.parquet",  # part 1 missing
        "w-20231120T120030000Z-0of2.parquet",
        "w-20231120T120030000Z-1of2.parquet",
        "w-20231120T120030000Z-0of1.parquet",  # a whole copy cut otherwise: the 2-part one is kept
        "w-20231120T120045000Z-0of3.parquet",
        "w-20231120T120045000Z-2of3.parquet",
        "c-20231120T120000000Z-20231120T120000000Z-0123abcd.parquet",
    ]
    assert incomplete_windows(names) == {
        "w-20231120T120015000Z-0of2.parquet",
        "w-20231120T120030000Z-0of1.parquet",
        "w-20231120T120045000Z-0of3.parquet",
        "w-20231120T120045000Z-2of3.parquet",
    }


# --- failures ---------------------------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    with shared_directory("parquet-sink-") as path:
        yield path


def test_a_read_only_directory_is_a_permanent_error_naming_the_path(made: list[Window], shared_dir: Path) -> None:
    directory = shared_dir / "ro"
    directory.mkdir()
    directory.chmod(0o555)
    sink = sink_at(directory / "metrics")
    with unprivileged(), pytest.raises(SinkError) as raised:
        sink.write(made[0])
    error = raised.value
    assert error.sink == "parquet" and not error.retryable
    assert str(directory / "metrics") in str(error) and "permission denied" in str(error)
    assert list(directory.iterdir()) == []


@contextmanager
def tiny_filesystem(size: str) -> Iterator[Path]:
    """A tmpfs of ``size``: a real full disk (needs root and mount rights; skipped otherwise)."""
    path = Path(tempfile.mkdtemp(prefix="parquet-full-"))
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        path.rmdir()
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)
        path.rmdir()


def test_a_full_disk_is_a_retryable_error_and_leaves_no_partial_file(made: list[Window]) -> None:
    big = replace(made[0], points=pa.concat_tables([made[0].points] * 200), dimensions=None)
    with tiny_filesystem("256k") as root:
        sink = sink_at(root, "compression=none&window_compression=none")
        sink.write(replace(made[1], dimensions=None))  # a small window fits
        with pytest.raises(SinkError) as raised:
            sink.write(big)
        assert raised.value.retryable and "no space left on device" in str(raised.value)
        assert str(root / HOUR12) in str(raised.value)
        assert files(root, "_staging") == []
        assert rows(stored(root)) == expected(made[1:2])
        sink.close()


def test_a_corrupt_file_is_quarantined_named_and_writing_goes_on(
    spread: list[Window], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = sink_at(tmp_path, "compact_size=1MB")
    for window in spread[:3]:
        sink.write(window)
    broken = tmp_path / HOUR12 / "w-20231120T122000000Z-0of1.parquet"
    garbage = b"PAR1 not really parquet" * 10
    broken.write_bytes(garbage)
    with caplog.at_level(logging.ERROR, logger="heapster_columnar.sinks.parquet"):
        sink.write(spread[3])
        sink.wait_for_compaction()
    sink.write(spread[4])
    sink.close()
    quarantined = tmp_path / "_quarantine" / HOUR12 / "w-20231120T122000000Z-0of1.parquet.corrupt"
    assert quarantined.read_bytes() == garbage
    assert any(str(broken) in r.getMessage() and "unreadable Parquet" in r.getMessage() for r in caplog.records)
    (compacted,) = files(tmp_path, HOUR12)
    assert "/c-20231120T120000000Z-20231120T124000000Z-" in compacted
    assert rows(stored(tmp_path)) == expected([spread[0], *spread[2:5]])


# --- another filesystem -----------------------------------------------------------------------


def test_an_fsspec_memory_target_holds_the_same_dataset(spread: list[Window]) -> None:
    fsspec = pytest.importorskip("fsspec")
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    root = f"memory://heapster-{uuid.uuid4().hex[:8]}"
    write_all(root, spread[:4], "compact_size=1MB")
    memory = fsspec.filesystem("memory")
    prefix = root[len("memory://") :]
    names = sorted(p.split(f"{prefix}/", 1)[1] for p in memory.find(prefix))
    points = [n for n in names if n.startswith("points/")]
    assert points[0].startswith(f"{HOUR12}/c-") and points[1:] == [f"{HOUR13}/w-20231120T130000000Z-0of1.parquet"]
    assert "pods/v-20231120T120000000Z.parquet" in names
    dataset = ds.dataset(f"/{prefix}/points", filesystem=PyFileSystem(FSSpecHandler(memory)), partitioning="hive")
    assert rows(dataset.to_table().drop_columns(["date", "hour"])) == expected(spread[:4])
    memory.rm(prefix, recursive=True)
