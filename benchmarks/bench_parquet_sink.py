"""Parquet sink: seconds to write one window, file sizes, and the data read back in the same run.

    python benchmarks/bench_parquet_sink.py --nodes 5000 --repeat 5 [--options compression=lz4]

Each repeat writes into a fresh directory: the first window (points and the four dimension
snapshots), then a second window 15 s later with the same API state (points only: the steady
state). Wall and CPU seconds are reported as min / median over the repeats (this machine has two
cores and other work on them); the row counts are then checked through pyarrow and DuckDB.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

sys.path.insert(0, str(Path(__file__).parent))

from _window import bench_window

from heapster_columnar.config.uri import parse_uri
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.parquet import ParquetSink


def later(window: Window, seconds: int) -> Window:
    """The same points ``seconds`` later (a window with unchanged API state)."""
    end = window.end + timedelta(seconds=seconds)
    field = window.points.schema.field("timestamp")
    stamps = pa.array([end], field.type).take(pa.array([0] * window.points.num_rows))  # constant column
    points = window.points.set_column(0, field, stamps)
    return replace(window, start=window.start + timedelta(seconds=seconds), end=end, points=points)


def timed(sink: ParquetSink, window: Window) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    sink.write(window)
    return time.perf_counter() - wall, time.process_time() - cpu


def sizes(root: Path, under: str) -> list[int]:
    return sorted(p.stat().st_size for p in (root / under).rglob("*.parquet"))


def check(root: Path, windows: list[Window]) -> None:
    """Every point is back: row counts per window through pyarrow (metadata) and DuckDB (a scan)."""
    want = sum(w.points.num_rows for w in windows)
    got = ds.dataset(root / "points", partitioning="hive").count_rows()
    with duckdb.connect() as con:
        per_window = con.execute(
            f"SELECT count(*), count(DISTINCT metric) FROM read_parquet('{root}/points/**/*.parquet') "
            "GROUP BY timestamp"
        ).fetchall()
    metrics = len(windows[0].points.column("metric").unique())
    assert got == want, (got, want)
    assert sorted(n for n, _ in per_window) == sorted(w.points.num_rows for w in windows), per_window
    assert all(m == metrics for _, m in per_window), (per_window, metrics)
    print(f"  read back: {got:,} rows (pyarrow), per window {[n for n, _ in per_window]} (DuckDB): OK", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--options", default="", help="sink URI options, e.g. compression=lz4&fsync=false")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the dataset is written")
    args = parser.parse_args()

    window = bench_window(args.nodes)
    second = later(window, 15)
    points = window.points.num_rows
    print(f"{args.nodes} nodes: {points:,} points, options {args.options or '(defaults)'}", flush=True)
    first_runs: list[tuple[float, float]] = []
    steady_runs: list[tuple[float, float]] = []
    for k in range(args.repeat):
        root = Path(tempfile.mkdtemp(prefix="bench-parquet-", dir=args.dir))
        try:
            sink = ParquetSink.from_uri(parse_uri(f"parquet:{root}?{args.options}"))
            first_runs.append(timed(sink, window))
            steady_runs.append(timed(sink, second))
            sink.close()
            print(
                f"  repeat {k + 1}: first window {first_runs[-1][0]:.2f} s (cpu {first_runs[-1][1]:.2f} s), "
                f"steady window {steady_runs[-1][0]:.2f} s (cpu {steady_runs[-1][1]:.2f} s)",
                flush=True,
            )
            if k == args.repeat - 1:
                points_files = sizes(root, "points")
                dims = {name: sum(sizes(root, name)) for name in ("pods", "containers", "namespaces", "nodes")}
                total = sum(points_files)
                print(
                    f"  files: points {len(points_files)} files, {total / 2**20:.1f} MiB for two windows "
                    f"({total / (2 * points):.1f} bytes/point; files {[f'{s / 2**20:.1f}' for s in points_files]} MiB)"
                )
                print("  dimension snapshots: " + ", ".join(f"{n} {s / 2**20:.1f} MiB" for n, s in dims.items()))
                check(root, [window, second])
        finally:
            shutil.rmtree(root, ignore_errors=True)
    for label, runs in (("first window (points + dimensions)", first_runs), ("steady window (points)", steady_runs)):
        walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
        print(
            f"{label}: wall min {min(walls):.2f} s / median {statistics.median(walls):.2f} s; "
            f"cpu min {min(cpus):.2f} s / median {statistics.median(cpus):.2f} s; "
            f"{points / statistics.median(walls) / 1e6:.1f} M points/s"
        )


if __name__ == "__main__":
    main()
