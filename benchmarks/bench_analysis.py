"""The analysis helpers on a month of history: seconds per call, answers checked in the same run.

    python benchmarks/bench_analysis.py --nodes 1000 --days 30 --resolution 300 --repeat 3

Builds (once, cached under ``$TMPDIR/heapster-analysis-<nodes>x<pods>-<days>d-<resolution>s``) a
store with ``simulate --backfill``'s generator: points of every level, dimension snapshots, the
daily rollups of closed days (a store cached by an older version gets the missing ones the way
``report rollups`` adds them). Then times each helper the way a notebook or ``report`` calls
it, on a fresh ``Store`` object per call (no cache carried between repeats), and checks the
answers against DuckDB SQL over the same files.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from rich.progress import track

from heapster_columnar.analysis import Store, chargeback, nodes, rightsizing, top, usage
from heapster_columnar.analysis.rollups import materialize
from heapster_columnar.simulator.backfill import backfill

END = datetime(2024, 7, 1, tzinfo=UTC)  # a fixed end: every run of the same size reads the same store


def build(args: argparse.Namespace) -> Path:
    name = f"heapster-analysis-{args.nodes}x{args.pods_per_node}-{args.days}d-{args.resolution}s"
    root = Path(tempfile.gettempdir()) / name
    if (root / ".complete").exists():
        added = materialize(Store.open(root))  # what the daily ``report rollups`` job would have stored
        if added:
            print(f"stored the rollups of {', '.join(d.isoformat() for d in added)} (closed days without them)")
        return root
    if root.exists():
        raise SystemExit(f"{root} holds an unfinished store (an interrupted build): delete it and run again")
    began = time.perf_counter()
    report = backfill(
        str(root),
        nodes=args.nodes,
        pods_per_node=args.pods_per_node,
        duration=timedelta(days=args.days),
        resolution=timedelta(seconds=args.resolution),
        end=END,
        seed=0,
        progress=lambda days: track(list(days), description="backfilling days"),
    )
    (root / ".complete").write_text(str(report))
    print(f"built {root}: {report.rows:,} points, {report.pods:,} pods in {time.perf_counter() - began:.0f} s")
    return root


def timed(root: Path, call: Callable[[Store], Any], repeat: int) -> tuple[list[float], Any]:
    seconds, answer = [], None
    for _ in range(repeat):
        store = Store.open(root)  # fresh: nothing cached from the previous repeat
        began = time.perf_counter()
        answer = call(store)
        seconds.append(time.perf_counter() - began)
    return seconds, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=60, help="seconds between windows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="run only the helpers whose label contains this")
    args = parser.parse_args()
    root = build(args)
    since = f"{args.days}d"
    probe = Store.open(root)
    namespace = probe.dimension("namespaces")["name"].sort()[0]
    con = probe.duckdb()
    (container_days, containers) = con.sql(
        "SELECT count(*), count(DISTINCT (namespace_name, pod_name, container_name)) FROM container_days"
    ).fetchall()[0]
    size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    print(
        f"store: {args.nodes} nodes x {args.pods_per_node} pods, {args.days} days at {args.resolution} s; "
        f"{size / 2**30:.1f} GiB; {container_days:,} stored container-days of {containers:,} containers"
    )

    calls: dict[str, Callable[[Store], Any]] = {
        f"usage: cluster cpu, {since}, 1h steps": lambda s: usage.usage(s, level="cluster", since=since, step="1h"),
        f"usage: one namespace's cpu, {since}, 1h": lambda s: usage.usage(
            s, level="namespace", namespace=namespace, since=since, step="1h"
        ),
        f"top: 10 namespaces by cpu usage, {since}": lambda s: top.top(s, "usage", "cpu", "namespace", 10, since),
        f"top: 10 workloads by memory waste, {since}": lambda s: top.top(s, "waste", "memory", "workload", 10, since),
        f"rightsizing: every container, {since}": lambda s: rightsizing.recommend(s, since, level="container"),
        f"rightsizing: workloads, {since}": lambda s: rightsizing.recommend(s, since, level="workload"),
        f"rightsizing: one namespace's workloads, {since}": lambda s: rightsizing.recommend(
            s, since, level="workload", namespace=namespace
        ),
        f"chargeback: by namespace, {since}": lambda s: chargeback.allocation(s, since, by="namespace"),
        f"chargeback: by label app, {since}": lambda s: chargeback.allocation(s, since, by="label:app"),
        f"nodes: efficiency, {since}": lambda s: nodes.efficiency(s, since),
    }
    answers: dict[str, Any] = {}
    rows = []
    for label, call in calls.items():
        if args.only not in label:
            continue
        seconds, answers[label] = timed(root, call, args.repeat)
        rows.append((label, min(seconds), statistics.median(seconds), answers[label].height))
        print(f"  {label}: min {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s", flush=True)

    print("\n| helper | min | median | rows |\n|---|---|---|---|")
    for label, low, mid, height in rows:
        print(f"| {label} | {low:.2f} s | {mid:.2f} s | {height:,} |")
    if len(answers) == len(calls):
        check(con, answers, since, args)


def check(con: duckdb.DuckDBPyConnection, answers: dict[str, Any], since: str, args: argparse.Namespace) -> None:
    """The answers, checked against SQL over the same files."""
    cluster = answers[f"usage: cluster cpu, {since}, 1h steps"]
    (want,) = con.sql(
        "SELECT avg(value) FROM points WHERE type = 'cluster' AND metric = 'cpu/usage_rate'"
        f" AND timestamp >= TIMESTAMPTZ '{(END - timedelta(days=args.days)).isoformat()}'"
    ).fetchall()[0]
    got = (cluster["value"] * cluster["samples"]).sum() / cluster["samples"].sum()
    assert abs(got - want) <= 1e-6 * want, (got, want)
    allocation = answers[f"chargeback: by namespace, {since}"]
    by_label = answers[f"chargeback: by label app, {since}"]
    assert abs(allocation["total_cost"].sum() - by_label["total_cost"].sum()) < 1e-6 * allocation["total_cost"].sum()
    recommended = answers[f"rightsizing: every container, {since}"]
    assert recommended.height == recommended.select("namespace", "pod", "container").n_unique()
    efficiency = answers[f"nodes: efficiency, {since}"]
    assert efficiency.height == args.nodes, efficiency.height
    print("answers: cluster mean = SQL mean; cost by namespace = cost by label; one row per container and node: OK")


if __name__ == "__main__":
    main()
