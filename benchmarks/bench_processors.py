"""Processor benchmark: Heapster's eight stages on synthetic windows of a whole cluster.

    python benchmarks/bench_processors.py --nodes 5000 --windows 3

Builds N nodes x 30 pods once (the simulator's documents and Pod objects), renders K windows 15 s
apart, decodes each, and runs ``Pipeline.heapster()`` on them in order (the first window has no
rates: there is no previous one). Reports per stage the min / median across windows 2..K, the
window's own size (entity + labeled tables), the RSS growth while processing the first window (a cold
allocator pool) and the later ones (the previous window's freed pages are reused, see
``heapster_columnar/_allocator.py``), and the process's peak RSS before and after processing.
Correctness is checked in the same run: every node gets its autoscaling metrics, the cluster's
``cpu/request`` equals the sum of the API's container requests, and rates exist for every node.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.simulator.cluster import prepare_nodes
from heapster_columnar.simulator.objects import namespace_object, node_object
from heapster_columnar.simulator.payloads import NodeShape
from heapster_columnar.sources.objects import namespaces_table, nodes_table, pods_tables
from heapster_columnar.sources.summary import decode_summaries

AT = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp())
STEP = 15


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRss:
    """Samples this process's RSS every few ms while a block runs: the growth a stage really
    costs (``ru_maxrss`` only ever shows the lifetime peak)."""

    def __enter__(self) -> _PeakRss:
        self.start = self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def _progress(items: range, label: str) -> Any:
    if not sys.stderr.isatty():
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description=label, console=Console(stderr=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument(
        "--predecode",
        action="store_true",
        help="decode every window before processing any (as in a collector, where the next window decodes "
        "while this one is processed, minus the allocator churn of a decode right before each window)",
    )
    args = parser.parse_args()
    shape = NodeShape(pods_per_node=args.pods_per_node, memory_wave=False)

    started = time.perf_counter()
    pods: list[dict[str, Any]] = []
    templates = []
    for first in _progress(range(0, args.nodes, 100), "cluster"):
        for node_pods, template in prepare_nodes(range(first, min(first + 100, args.nodes)), shape, {}, AT):
            pods.extend(node_pods)
            templates.append(template)
    namespaces = sorted({p["metadata"]["namespace"] for p in pods})
    pod_table, container_table = pods_tables(pods)
    dims = Dimensions(
        pod_table,
        container_table,
        namespaces_table([namespace_object(n, seed=0) for n in namespaces]),
        nodes_table(
            [
                node_object(i, shape=shape, port=10250, ready=True, created=datetime(2024, 1, 1, tzinfo=UTC))
                for i in range(args.nodes)
            ]
        ),
    )
    del pods
    print(f"set-up: {args.nodes} nodes, {pod_table.num_rows} pods in {time.perf_counter() - started:.1f} s")

    pipeline = Pipeline.heapster()
    stages: dict[str, list[float]] = {}
    totals: list[float] = []
    rss_before = _peak_rss_mib()
    window_mib = 0.0
    growth: list[float] = []

    def window(k: int) -> tuple[datetime, MetricBatch]:
        second = AT + STEP * (k + 1)
        now = datetime.fromtimestamp(second, UTC)
        return now, decode_summaries([t.render(second) for t in templates if t is not None], now=now).batch

    decoded = [window(k) for k in range(args.windows)] if args.predecode else []
    for k in range(args.windows):
        now, batch = decoded[k] if decoded else window(k)
        window_mib = (batch.entities.nbytes + batch.labeled.nbytes) / 2**20
        t0 = time.perf_counter()
        with _PeakRss() as rss:
            out = pipeline.process(batch, now, dims)
        total = time.perf_counter() - t0
        growth.append(rss.peak - rss.start)
        assert not out.failures, out.failures
        if k == 0:
            continue
        totals.append(total)
        for name, seconds in out.seconds.items():
            stages.setdefault(name, []).append(seconds)
        _check(out.to_batch().entities, container_table, args.nodes)

    later = max(growth[1:], default=0.0)
    print(f"window: {window_mib:.0f} MiB (entity + labeled tables); RSS growth while processing a window:")
    print(f"  first window {growth[0]:.0f} MiB ({growth[0] / window_mib:.1f}x the window; cold allocator pool)")
    print(f"  later ones   {later:.0f} MiB at most ({later / window_mib:.1f}x; the last window's freed pages reused)")
    print(f"process peak RSS {rss_before:.0f} MiB before the first window, {_peak_rss_mib():.0f} MiB after all")
    print("| stage | min (s) | median (s) |")
    print("|---|---|---|")
    for name, values in stages.items():
        print(f"| {name} | {min(values):.3f} | {statistics.median(values):.3f} |")
    print(f"| **all eight** | **{min(totals):.3f}** | **{statistics.median(totals):.3f}** |")
    print(orjson.dumps({"nodes": args.nodes, "stages": stages, "totals": totals}).decode(), file=sys.stderr)


def _check(entities: pa.Table, containers: pa.Table, nodes: int) -> None:
    types = entities.column("type")
    node_rows = entities.filter(pc.equal(types, "node"))
    assert node_rows.num_rows == nodes
    assert node_rows.column("cpu/node_utilization").null_count == 0
    assert node_rows.column("cpu/usage_rate").null_count == 0, "every node has a rate from the second window on"
    cluster = entities.filter(pc.equal(types, "cluster"))
    want = pc.sum(containers.column("cpu_request")).as_py()
    assert cluster.column("cpu/request")[0].as_py() == want, (cluster.column("cpu/request")[0], want)


if __name__ == "__main__":
    main()
