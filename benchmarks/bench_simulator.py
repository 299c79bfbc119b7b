"""Simulator cost: start-up time and the simulator's own CPU per full scrape of every kubelet.

    python benchmarks/bench_simulator.py --nodes 1000 --scrapes 2

Runs ``heapster-columnar simulate`` in its own process (as it would run beside a collector),
scrapes every kubelet once per round with httpx from this process, and reads the simulator's CPU
time from /proc, so the client's cost is not counted. Every body is checked to decode.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import httpx
from _simulator import cpu_seconds, simulator

from heapster_columnar.sources.summary import decode_summaries


async def _scrape(api: str, rounds: int, pid: int, concurrency: int) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency), timeout=60) as client:
        nodes = (await client.get(api + "/api/v1/nodes")).json()["items"]
        urls = [
            f"http://{n['status']['addresses'][0]['address']}:{n['status']['daemonEndpoints']['kubeletEndpoint']['Port']}"
            "/stats/summary"
            for n in nodes
        ]
        gate = asyncio.Semaphore(concurrency)

        async def get(url: str) -> bytes:
            async with gate:
                return (await client.get(url)).content

        for round_ in range(rounds):
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            bodies = await asyncio.gather(*(get(u) for u in urls))
            wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
            result = decode_summaries(bodies, now=datetime.now(UTC))
            assert not result.errors, result.errors[:3]
            mb = sum(map(len, bodies)) / 1e6
            print(f"scrape {round_}: {len(urls)} kubelets, {mb:.0f} MB, {wall:.1f} s wall, simulator CPU {cpu:.1f} s")
            await asyncio.sleep(1.1)  # a new second: kubelets render fresh samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--scrapes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    started = time.perf_counter()
    with simulator(args.nodes, args.pods_per_node) as sim:
        print(f"start-up: {time.perf_counter() - started:.1f} s until the --source line ({sim.banner.splitlines()[0]})")
        asyncio.run(_scrape(sim.api_url, args.scrapes, sim.process.pid, args.concurrency))


if __name__ == "__main__":
    main()
