"""A model query over 7 days of Parquet history, for one namespace.

    python benchmarks/bench_history.py --nodes 20 --days 7 --resolution 60

Builds a store shaped as the Parquet sink leaves it after compaction: Hive ``date=/hour=``
partitions, one file per hour, sorted and written with the compactor's own order and writer
settings (``sinks/_parquet_compact.py``). The windows are one processed synthetic window
(``_window.bench_window``) re-stamped every ``--resolution`` seconds for ``--days`` days. Then the
model API (memory holding only the newest window) answers ``cpu/usage_rate`` of one namespace
over the whole range, through ``ParquetHistory``; the answer is checked against the store.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from _window import bench_window

from heapster_columnar.api.history import ParquetHistory
from heapster_columnar.api.model import ModelApi, Query
from heapster_columnar.sinks._parquet_compact import SORT_KEYS, sort_points
from heapster_columnar.sinks._parquet_write import WriterOptions, type_row_groups, write_row_groups
from heapster_columnar.sinks.memory import MemorySink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--resolution", type=int, default=60, help="seconds between stored windows")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    window = bench_window(args.nodes)
    root = Path(tempfile.mkdtemp(prefix="heapster-history-"))
    points_dir = root / "points"
    base = window.points
    per_hour = 3600 // args.resolution
    start = window.end - timedelta(days=args.days)
    built = time.perf_counter()
    rows = 0
    for hour in range(args.days * 24):  # one compacted file per hour, as the sink leaves it
        first = start + timedelta(hours=hour)
        stamps = [first + timedelta(seconds=args.resolution * k) for k in range(per_hour)]
        table = pa.concat_tables(
            [base.set_column(0, "timestamp", pa.array([s] * base.num_rows, base.schema.field(0).type)) for s in stamps]
        )
        table = sort_points(table)
        directory = points_dir / f"date={first:%Y-%m-%d}" / f"hour={first:%H}"
        directory.mkdir(parents=True, exist_ok=True)
        options = WriterOptions().for_compaction()
        kwargs = options.kwargs(table.schema, sorting=SORT_KEYS)
        write_row_groups(
            table, directory / f"c-{hour:04d}.parquet", type_row_groups(table, options.row_group_size), kwargs
        )
        rows += table.num_rows
    size = sum(p.stat().st_size for p in points_dir.rglob("*.parquet"))
    print(
        f"store: {args.days} days x {per_hour * 24} windows/day of {base.num_rows:,} points = {rows:,} rows, "
        f"{size / 2**30:.2f} GiB in {args.days * 24} files (built in {time.perf_counter() - built:.0f} s)"
    )

    namespaces = pc.unique(base.column("namespace_name").cast(pa.string())).drop_null().to_pylist()
    namespace = sorted(namespaces)[0]
    memory = MemorySink()
    memory.write(window)
    query = Query(("ns", None, namespace, None, None), "cpu/usage_rate", start, window.end, {})
    want = (
        ds.dataset(points_dir, format="parquet", partitioning="hive")
        .to_table(
            filter=(ds.field("metric") == "cpu/usage_rate")
            & (ds.field("type") == "ns")
            & (ds.field("namespace_name") == namespace)
        )
        .num_rows
    )
    # The same store through both readers: DuckDB (local disks, the default) and pyarrow's scanner
    # (what object stores and fsspec targets get; a SubTreeFileSystem stands for one here).
    readers = {
        "duckdb read_parquet (local disk)": ParquetHistory(pafs.LocalFileSystem(), str(points_dir)),
        "pyarrow dataset (object stores)": ParquetHistory(
            pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem()), "points"
        ),
    }
    answers = []
    for label, history in readers.items():
        api = ModelApi(memory, history)
        seconds = []
        series = None
        for _ in range(args.repeat):
            began = time.perf_counter()
            series = api.series(query)
            seconds.append(time.perf_counter() - began)
        assert series is not None
        assert series.height == want + 1, (series.height, want)  # the store's windows + memory's newest
        answers.append(series)
        print(f"{label}: min {min(seconds) * 1000:.0f} ms, median {statistics.median(seconds) * 1000:.0f} ms")
    assert answers[0].equals(answers[1]), "the two readers disagree"
    print(f"namespace {namespace!r}, cpu/usage_rate over {args.days} days: {want + 1:,} points, same from both readers")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
