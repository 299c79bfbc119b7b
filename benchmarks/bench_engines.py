"""Engines side by side on identical input: Polars (what the pipeline uses), pyarrow compute, DuckDB.

    python benchmarks/bench_engines.py --nodes 1000 [--repeat 5]

Two of the pipeline's core operations, on one processed window of ``_window.bench_window``:

- **pod sums** (the pod aggregator's grouped sum): per (namespace, pod) the sum of the containers'
  ``cpu/usage_rate`` and ``memory/working_set``;
- **rate join** (the rate calculator's join with the previous window): this window's container rows
  joined to the previous one's on (namespace, pod, container), ``cpu/usage`` delta per row.

Each engine runs the same operation on the same Arrow input; outputs are compared exactly (sorted)
in the same run, then min / median seconds and the ratio to the fastest are printed. The pipeline's
engine for each stage is the measured winner.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from _window import bench_window

KEY = ["namespace_name", "pod_name"]
CKEY = [*KEY, "container_name"]
SUMMED = ["cpu/usage_rate", "memory/working_set"]


def _containers(entities: pa.Table) -> pa.Table:
    rows = entities.filter(pc.equal(entities.column("type"), "pod_container"))
    return rows.select([*CKEY, "cpu/usage", *SUMMED]).combine_chunks()


def pod_sums_polars(rows: pa.Table) -> pa.Table:
    frame = pl.from_arrow(rows)
    assert isinstance(frame, pl.DataFrame)
    return frame.group_by(KEY).agg(pl.col(SUMMED).sum()).to_arrow()


def pod_sums_pyarrow(rows: pa.Table) -> pa.Table:
    grouped = rows.group_by(KEY).aggregate([(c, "sum") for c in SUMMED])
    return grouped.rename_columns([f"{c}" if not c.endswith("_sum") else c[:-4] for c in grouped.column_names])


def pod_sums_duckdb(rows: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.register("rows", rows)
    sql = 'SELECT namespace_name, pod_name, sum("cpu/usage_rate")::BIGINT AS "cpu/usage_rate", '
    sql += 'sum("memory/working_set")::BIGINT AS "memory/working_set" FROM rows GROUP BY ALL'
    return con.sql(sql).to_arrow_table()


def rate_join_polars(now: pa.Table, before: pa.Table) -> pa.Table:
    a, b = pl.from_arrow(now), pl.from_arrow(before.select([*CKEY, "cpu/usage"]))
    assert isinstance(a, pl.DataFrame) and isinstance(b, pl.DataFrame)
    joined = a.join(b, on=CKEY, how="inner", suffix="_prev")
    return joined.select(*CKEY, (pl.col("cpu/usage") - pl.col("cpu/usage_prev")).alias("delta")).to_arrow()


def rate_join_pyarrow(now: pa.Table, before: pa.Table) -> pa.Table:
    prev = before.select([*CKEY, "cpu/usage"]).rename_columns([*CKEY, "prev"])
    joined = now.select([*CKEY, "cpu/usage"]).join(prev, keys=CKEY, join_type="inner")
    return joined.select(CKEY).append_column("delta", pc.subtract(joined.column("cpu/usage"), joined.column("prev")))


def rate_join_duckdb(now: pa.Table, before: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.register("now_rows", now)
    con.register("before_rows", before)
    sql = 'SELECT n.namespace_name, n.pod_name, n.container_name, n."cpu/usage" - b."cpu/usage" AS delta '
    sql += "FROM now_rows n JOIN before_rows b USING (namespace_name, pod_name, container_name)"
    return con.sql(sql).to_arrow_table()


def _canonical(table: pa.Table) -> pa.Table:
    table = table.cast(
        pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type) for f in table.schema])
    )
    return table.sort_by([(c, "ascending") for c in table.column_names])


def _time(run: Callable[[], pa.Table], repeat: int) -> tuple[list[float], pa.Table]:
    seconds, out = [], pa.table({})
    for _ in range(repeat):
        started = time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - started)
    return seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    window = bench_window(args.nodes)
    now = _containers(window.batch.entities)
    # the previous window: the same containers with counters 15 s of usage lower
    before = now.set_column(
        now.schema.get_field_index("cpu/usage"),
        "cpu/usage",
        pc.subtract(now.column("cpu/usage"), pc.multiply(now.column("cpu/usage_rate"), 15_000_000)),
    )
    operations = {
        "pod sums": {
            "polars": lambda: pod_sums_polars(now),
            "pyarrow": lambda: pod_sums_pyarrow(now),
            "duckdb": lambda: pod_sums_duckdb(now),
        },
        "rate join": {
            "polars": lambda: rate_join_polars(now, before),
            "pyarrow": lambda: rate_join_pyarrow(now, before),
            "duckdb": lambda: rate_join_duckdb(now, before),
        },
    }
    print(f"{args.nodes} nodes: {now.num_rows:,} container rows")
    print("| operation | engine | min (ms) | median (ms) | x fastest |")
    print("|---|---|---|---|---|")
    for operation, engines in operations.items():
        results = {name: _time(run, args.repeat) for name, run in engines.items()}
        reference = _canonical(results["polars"][1])
        for name, (_, out) in results.items():
            assert _canonical(out).equals(reference), f"{operation}: {name} differs from polars"
        fastest = min(min(s) for s, _ in results.values())
        for name, (seconds, _) in results.items():
            ratio = min(seconds) / fastest
            median = statistics.median(seconds) * 1000
            print(f"| {operation} | {name} | {min(seconds) * 1000:.1f} | {median:.1f} | {ratio:.1f} |")


if __name__ == "__main__":
    main()
