"""DuckDB sink benchmark: append whole synthetic windows to one database file.

    python benchmarks/bench_duckdb_sink.py --nodes 5000 --repeat 4

Takes the cached window of ``_window.bench_window(nodes)`` (the simulator's cluster through
Heapster's chain, ~13.6 M points at 5,000 nodes) and appends it ``--repeat`` times, 15 s of window
time apart, to a fresh file through ``DuckDBSink.write``: the first append also creates the tables
and stores the pods / containers / namespaces / nodes tables, the later ones reuse the same
Dimensions object (as the collector does while the API state is unchanged) and store points
only. Reports wall and CPU seconds per append (min / median over the later ones, the first on its
own), the file's growth per window, and one reader snapshot (CHECKPOINT + copy). Correctness is
checked in the same run: per window, the row count, the exact sum of ``value_int`` and the sum of
``value`` read back with SQL equal the input's (computed with Polars, not DuckDB); and, since the
sink stores label strings as ids that the ``points`` view joins back, per string column the number
of non-null values, their total bytes and the sum of bytes x (``value_int`` mod 997), which ties
each string to its rows (computed from the Arrow dictionaries).

The cache keeps the points table in 64 K-row chunks (each with the full dictionaries); the sink
gets it as ``to_points`` hands it over, one chunk per column, which is done before timing.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.manager.clock import parse_duration
from heapster_columnar.model.schema import TIME
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.duckdb import DuckDBConfig, DuckDBSink

sys.path.insert(0, str(Path(__file__).parent))
from _window import STEP, bench_window


def _cpu_seconds() -> float:
    """User + system time of every thread of this process (DuckDB's workers included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _size(path: Path) -> int:
    wal = Path(f"{path}.wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _shifted(window: Window, points: pa.Table, k: int) -> Window:
    """The window ``k`` steps later: same rows, a new timestamp column (built outside the timing)."""
    step = timedelta(seconds=STEP * k)
    end = window.end + step
    stamp = np.full(points.num_rows, int(end.timestamp() * 1000), dtype=np.int64)
    column = pa.Array.from_buffers(TIME, points.num_rows, [None, pa.py_buffer(stamp)])
    return replace(window, start=window.start + step, end=end, points=points.set_column(0, points.field(0), column))


def _expected(points: pa.Table) -> tuple[int, int, float]:
    """(rows, exact sum of value_int, correctly rounded sum of value), without DuckDB."""
    frame = pl.from_arrow(points.select(["value", "value_int"]))
    assert isinstance(frame, pl.DataFrame)
    ints = frame["value_int"].drop_nulls()
    high, low = (ints // 2**32).sum(), (ints % 2**32).sum()  # each part fits int64: no overflow
    return points.num_rows, int(high) * 2**32 + int(low), math.fsum(frame["value"].to_numpy())


def _strings(points: pa.Table) -> list[str]:
    return [f.name for f in points.schema if pa.types.is_dictionary(f.type)]


def _expected_labels(points: pa.Table) -> dict[str, tuple[int, int, int]]:
    """Per string column: (non-null values, their bytes, sum of bytes x (value_int mod 997)), from
    the dictionaries' lengths taken at each row's index (no string is materialized)."""
    value_int = points.column("value_int")
    valid = pc.is_valid(value_int).to_numpy()
    weight = np.where(valid, np.mod(pc.fill_null(value_int, 0).to_numpy(), 997), 0)
    out = {}
    for name in _strings(points):
        lengths = np.concatenate(
            [
                pc.fill_null(pc.binary_length(chunk.dictionary).take(chunk.indices), 0).to_numpy().astype(np.int64)
                for chunk in points.column(name).chunks
            ]
        )
        out[name] = (len(lengths) - points.column(name).null_count, int(lengths.sum()), int((lengths * weight).sum()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=4, help="windows appended (the first one is reported apart)")
    parser.add_argument("--dir", type=Path, default=None, help="where the database goes (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: one per core)")
    parser.add_argument(
        "--retention", default="0", help="the sink's retention option, e.g. 30s: shows the file stop growing"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database file")
    args = parser.parse_args()

    window = bench_window(args.nodes, args.pods_per_node)
    points = window.points.combine_chunks()
    dims = window.dimensions
    assert dims is not None
    print(
        f"{args.nodes} nodes: {points.num_rows:,} points, {dims.pods.num_rows:,} pods, "
        f"{dims.containers.num_rows:,} containers, {dims.nodes.num_rows:,} nodes; {os.cpu_count()} cores",
        flush=True,
    )
    directory = Path(tempfile.mkdtemp(prefix="bench-duckdb-", dir=args.dir))
    path = directory / "metrics.duckdb"
    retention = parse_duration(args.retention)
    sink = DuckDBSink(DuckDBConfig(path=path, snapshot=timedelta(0), threads=args.threads, retention=retention))
    walls: list[float] = []
    cpus: list[float] = []
    growth: list[int] = []
    written: list[Window] = []
    try:
        for k in range(args.repeat):
            shifted = _shifted(window, points, k)
            size = _size(path) if path.exists() else 0
            wall, cpu = time.perf_counter(), _cpu_seconds()
            sink.write(shifted)
            walls.append(time.perf_counter() - wall)
            cpus.append(_cpu_seconds() - cpu)
            growth.append(_size(path) - size)
            written.append(shifted)
            print(
                f"  window {k + 1}: {walls[-1]:.2f} s wall, {cpus[-1]:.2f} s CPU, "
                f"file {growth[-1] / 1e6:+.0f} MB = {_size(path) / 1e6:.0f} MB",
                flush=True,
            )
        started = time.perf_counter()
        snapshot = sink.snapshot()
        snapshot_seconds = time.perf_counter() - started
        sink.close()

        started = time.perf_counter()
        names = _strings(points)
        weight = "(((value_int % 997) + 997) % 997)"
        per_label = ", ".join(
            f'count("{n}"), sum(strlen("{n}"))::BIGINT, sum(strlen("{n}") * {weight})::BIGINT' for n in names
        )
        with duckdb.connect(str(path), read_only=True) as con:
            stored = {
                int(row[0]): row[1:]
                for row in con.sql(
                    f"SELECT epoch_ms(timestamp), count(*), sum(value_int)::VARCHAR, fsum(value), {per_label} "
                    "FROM points GROUP BY ALL"
                ).fetchall()
            }
        read_seconds = time.perf_counter() - started
        rows, ints, values = _expected(points)
        labels = _expected_labels(points)
        kept = [w for w in written if not retention or w.end >= written[-1].end - retention]
        for shifted in kept:
            n, s, f, *by_label = stored[int(shifted.end.timestamp() * 1000)]
            assert (int(n), int(s)) == (rows, ints), f"read back {(n, s)}, wrote {(rows, ints)}"
            assert math.isclose(f, values, rel_tol=1e-12), f"sum(value) read back {f!r}, wrote {values!r}"
            for k, name in enumerate(names):
                got = tuple(int(x or 0) for x in by_label[3 * k : 3 * k + 3])
                assert got == labels[name], f"{name}: read back {got}, wrote {labels[name]}"
        assert len(stored) >= len(kept)  # retention runs every few minutes, so more may still be there

        later_wall, later_cpu = walls[1:] or walls, cpus[1:] or cpus
        print(f"append, first window (tables + dimensions): {walls[0]:.2f} s wall, {cpus[0]:.2f} s CPU")
        print(
            f"append, later windows: wall min {min(later_wall):.2f} / median {statistics.median(later_wall):.2f} s, "
            f"CPU min {min(later_cpu):.2f} / median {statistics.median(later_cpu):.2f} s "
            f"({points.num_rows / min(later_wall) / 1e6:.1f} M points/s at best)"
        )
        per_window = statistics.median(growth[1:] or growth)
        print(
            f"file growth per window: {per_window / 1e6:.0f} MB ({per_window / points.num_rows:.1f} bytes/point); "
            f"total {_size(path) / 1e6:.0f} MB after {len(written)} windows"
        )
        print(f"snapshot (CHECKPOINT + copy of {snapshot.stat().st_size / 1e6:.0f} MB): {snapshot_seconds:.2f} s")
        print(
            f"read back ({read_seconds:.1f} s): {rows:,} rows, sum(value_int) = {ints}, sum(value) = {values:.6e} "
            f"and {len(names)} string columns per window: OK"
        )
    finally:
        if not args.keep:
            shutil.rmtree(directory)
        else:
            print(f"kept {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
