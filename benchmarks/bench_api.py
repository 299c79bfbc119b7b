"""API response times with a whole cluster in the store.

    python benchmarks/bench_api.py --nodes 5000 [--windows 4]

Puts ``--windows`` copies of one processed synthetic window (``_window.bench_window``; 5,000 nodes
x 30 pods = 150,000 pods), 15 s apart, into the memory sink, serves the real API on loopback and
times, over HTTP: the metrics.k8s.io pod and node lists (what ``kubectl top pods -A`` and the HPA
read), a one-pod model query (the first one after a window builds that window's entity index:
reported apart) and a namespace query. A collection thread burns CPU meanwhile (``--busy``) to
stand in for the collector working. Correctness is checked in the same run (item counts, the pod's
values equal the window's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from dataclasses import replace
from datetime import timedelta

import httpx
import orjson
import polars as pl
import pyarrow as pa
from _window import bench_window

from heapster_columnar.api.server import ApiOptions, create_app, serve
from heapster_columnar.sinks.memory import MemorySink
from heapster_columnar.telemetry import Telemetry


def _busy(stop: threading.Event) -> None:
    while not stop.is_set():  # pure-Python work holding the GIL, as decoding bookkeeping would
        sum(i * i for i in range(10_000))


async def _timed(client: httpx.AsyncClient, path: str, repeat: int) -> tuple[list[float], bytes]:
    seconds, body = [], b""
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(path)
        body = response.content
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:300]
    return seconds, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--busy", action="store_true", help="a CPU-bound thread runs meanwhile")
    args = parser.parse_args()

    window = bench_window(args.nodes)
    memory = MemorySink()
    windows = []
    for k in range(args.windows):  # the same cluster 15 s apart: each window its own points table
        end = window.end + timedelta(seconds=15 * k)
        stamps = pa.array([end] * window.points.num_rows, pa.timestamp("ms", "UTC"))
        points = window.points.set_column(window.points.schema.get_field_index("timestamp"), "timestamp", stamps)
        windows.append(replace(window, start=end - timedelta(seconds=15), end=end, points=points))
    for w in windows:
        memory.write(w)
    entities = pl.from_arrow(window.batch.entities)
    assert isinstance(entities, pl.DataFrame)
    pod = entities.filter(pl.col("type") == "pod").row(entities.filter(pl.col("type") == "pod").height // 2, named=True)
    ns, name = pod["namespace_name"], pod["pod_name"]
    print(f"store: {args.windows} windows of {window.points.num_rows:,} points, {args.nodes} nodes")

    async def scenario() -> None:
        options = ApiOptions(listen_ip="127.0.0.1", port=0)
        runner, port = await serve(create_app(memory, Telemetry(), options), options)
        stop = threading.Event()
        if args.busy:
            threading.Thread(target=_busy, args=(stop,), daemon=True).start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                one_pod = f"/api/v1/model/namespaces/{ns}/pods/{name}/metrics/memory/usage"
                first, body = await _timed(client, one_pod, 1)
                series = orjson.loads(body)["metrics"]
                assert [p["value"] for p in series] == [pod["memory/usage"]] * args.windows, series
                rows = [
                    ("metrics.k8s.io pods (all namespaces)", "/apis/metrics.k8s.io/v1beta1/pods"),
                    ("metrics.k8s.io nodes", "/apis/metrics.k8s.io/v1beta1/nodes"),
                    ("model: one pod, memory/usage (indexed)", one_pod),
                    ("model: one namespace, cpu/usage_rate", f"/api/v1/model/namespaces/{ns}/metrics/cpu/usage_rate"),
                ]
                print("| request | first after a window (ms) | then min / median (ms) | response |")
                print("|---|---|---|---|")
                cold = f"model: one pod, first query (builds {args.windows} window indices)"
                print(f"| {cold} | {first[0] * 1000:.0f} | — | |")  # (the pod → node map too)
                for label, path in rows:
                    seconds, body = await _timed(client, path, args.repeat + 1)
                    cold_ms, seconds = seconds[0] * 1000, seconds[1:]
                    if "pods" in path and "metrics.k8s.io" in path:
                        items = orjson.loads(body)["items"]
                        assert len(items) == entities.filter(pl.col("type") == "pod").height, len(items)
                    size = f"{len(body) / 2**20:.1f} MiB" if len(body) > 2**20 else f"{len(body)} B"
                    warm = f"{min(seconds) * 1000:.1f} / {statistics.median(seconds) * 1000:.1f}"
                    print(f"| {label} | {cold_ms:.1f} | {warm} | {size} |")
        finally:
            stop.set()
            await runner.cleanup()

    asyncio.run(scenario())


if __name__ == "__main__":
    main()
