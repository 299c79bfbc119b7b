"""The collector's own CPU per kubelet request (HTTP client only, decoding excluded).

    python benchmarks/bench_kubelet.py --nodes 1000 --windows 3 [--https] [--mode direct proxy]

Runs ``heapster-columnar simulate`` in its own process (as bench_simulator.py does), then collects
windows with :class:`KubeletScraper` built with ``decode=False``, so ``time.process_time()`` around
``collect`` is the client's cost: httpx/httpcore, TLS, the event loop, our bookkeeping. One more
window with decoding on gives the decoder's CPU per document for comparison. The first window of
each mode is a warm-up (connections, TLS sessions) and is not counted. ``--profile`` prints the
top functions of one more window (``PROFILE_SORT=cumulative``, ``PROFILE_TOP=40`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import ssl
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
from _simulator import cpu_seconds, simulator

from heapster_columnar.sources.config import SummarySourceConfig
from heapster_columnar.sources.kubelet import Collected, KubeletScraper
from heapster_columnar.sources.objects import nodes_table

TOKEN = "bench-token"


async def _window(scraper: KubeletScraper, nodes: pa.Table) -> Collected:
    loop = asyncio.get_running_loop()
    return await scraper.collect(nodes, now=datetime.now(UTC), deadline=loop.time() + 120)


async def _measure(
    config: SummarySourceConfig, api: str, ca: str | None, nodes: pa.Table, windows: int, sim: int, profile: bool
) -> str:
    scraper = KubeletScraper(config, api_url=api, api_token=TOKEN, ca_file=ca, decode=False, seed=0)
    try:
        await _window(scraper, nodes)  # warm-up
        cpu = wall = sim_cpu = 0.0
        requests = body = 0
        for _ in range(windows):
            await asyncio.sleep(1.1)  # a new second: kubelets render fresh samples
            c0, w0, s0 = time.process_time(), time.perf_counter(), cpu_seconds(sim)
            got = await _window(scraper, nodes)
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            sim_cpu += cpu_seconds(sim) - s0
            assert not got.failures, list(got.failures.items())[:3]
            requests += len(got.request_seconds)
            body += got.bytes
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await _window(scraper, nodes)
            profiler.disable()
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text).sort_stats(os.environ.get("PROFILE_SORT", "tottime"))
            stats.print_stats(int(os.environ.get("PROFILE_TOP", "15")))
            print(text.getvalue())
    finally:
        await scraper.aclose()
    decoder = KubeletScraper(config, api_url=api, api_token=TOKEN, ca_file=ca, seed=0)
    try:
        await _window(decoder, nodes)
        c0 = time.process_time()
        decoded = await _window(decoder, nodes)
        decode_cpu = time.process_time() - c0 - cpu / windows  # minus the client's share
        assert decoded.scraped == len(nodes), list(decoded.failures.items())[:3]
    finally:
        await decoder.aclose()
    per = 1000 * cpu / requests
    return (
        f"| {len(nodes)} | {config.kubelet_mode} | {'https' if config.kubelet_https else 'http'} | "
        f"{config.concurrency} | {body / requests / 1e3:.0f} KB | {per:.2f} ms | "
        f"{1000 * decode_cpu / len(nodes):.2f} ms | {wall / windows:.1f} s | {1000 * sim_cpu / requests:.2f} ms |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--https", action="store_true", help="TLS + bearer token on the API server and kubelets")
    parser.add_argument("--mode", nargs="+", default=["direct", "proxy"], choices=["direct", "proxy"])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-kubelet-"))
    extra = ["--workdir", str(workdir), *(["--https", "--token", TOKEN] if args.https else [])]
    with simulator(args.nodes, args.pods_per_node, extra) as sim:
        api = sim.api_url
        ca = str(workdir / "ca.crt") if args.https else None
        verify = ssl.create_default_context(cafile=ca) if ca else True
        headers = {"Authorization": f"Bearer {TOKEN}"} if args.https else {}
        nodes = nodes_table(httpx.get(api + "/api/v1/nodes", headers=headers, verify=verify).json()["items"])
        print(
            "| nodes | mode | scheme | concurrency | body | client CPU/request | decode CPU/doc | wall/window "
            "| simulator CPU/request |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for mode in args.mode:
            https = "true" if args.https else "false"
            config = SummarySourceConfig.from_uri(
                f"kubernetes.summary_api:{api}?inClusterConfig=false&kubeletHttps={https}"
                f"&kubeletMode={mode}&concurrency={args.concurrency}&timeout=60&deadline=120"
            )
            print(
                asyncio.run(_measure(config, api, ca, nodes, args.windows, sim.process.pid, args.profile)), flush=True
            )


if __name__ == "__main__":
    main()
