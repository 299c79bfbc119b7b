"""``demo``: the embedded default. Starts a simulated cluster in this process (an API server and
one kubelet per node on 127.x addresses, HTTPS with a generated CA and a bearer token), collects a
few windows from it with the real collector, and prints what it saw.

No Kubernetes needed; takes about half a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta

import polars as pl
from rich.console import Console

from heapster_columnar.analysis.top import MEMORY, top_namespaces, top_pods
from heapster_columnar.manager.build import RunConfig, build
from heapster_columnar.manager.loop import WindowOutcome
from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(name, help="collect from a simulated cluster and show the result", description=__doc__)
    parser.add_argument("--nodes", type=int, default=20, help="simulated nodes (default 20)")
    parser.add_argument("--pods-per-node", type=int, default=10, help="pods per node (default 10)")
    parser.add_argument("--windows", type=int, default=3, help="windows to collect (the first has no rates)")
    parser.add_argument("--resolution", default=5, type=int, help="window length in seconds (>= 5)")


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    spec = ClusterSpec(
        nodes=args.nodes, pods_per_node=args.pods_per_node, https=True, token="demo-token", kubelet_port=0
    )
    with console.status(f"starting a simulated cluster: {spec.nodes} nodes x {spec.pods_per_node} pods"):
        cluster = SimulatedCluster(spec)
        cluster.start()
    try:
        config = RunConfig(
            source=cluster.source_uri,
            resolution=timedelta(seconds=args.resolution),
            offset=timedelta(seconds=1),
        )
        outcome = asyncio.run(_collect(config, args.windows, console))
    finally:
        cluster.close()
    window = outcome.window
    print(
        f"Collected {args.windows} windows of {args.resolution} s from {window.nodes} simulated nodes; "
        f"the last one: {window.points.num_rows} points, {len(window.failures)} nodes failed, "
        f"ready {outcome.seconds:.1f} s after the window ended."
    )
    with pl.Config(tbl_rows=-1, tbl_width_chars=160, fmt_str_lengths=50, tbl_hide_dataframe_shape=True):
        print("\nNamespaces by CPU (millicores, MiB):")
        print(top_namespaces(window.batch))
        print("\nTop pods by CPU:")
        print(top_pods(window.batch, 5))
        print("\nTop pods by memory working set:")
        print(top_pods(window.batch, 5, by=MEMORY))
    print("\nNext: heapster-columnar simulate, then heapster-columnar run --source=... (see README).")
    return 0


async def _collect(config: RunConfig, windows: int, console: Console) -> WindowOutcome:
    collector = build(config)
    collector.state.wait_ready(30)
    started = time.perf_counter()
    done: list[WindowOutcome] = []
    try:
        with console.status("") as status:

            def progress(outcome: WindowOutcome) -> None:
                done.append(outcome)
                status.update(f"window {len(done)}/{windows}: {outcome.window.points.num_rows} points")

            collector.manager.on_window = progress
            status.update(f"waiting for window 1/{windows} (aligned to {config.resolution.total_seconds():g} s)")
            await collector.manager.run(asyncio.Event(), windows=windows)
    finally:
        await collector.aclose()
    if not done:
        raise RuntimeError("no window completed")
    console.print(f"collected in {time.perf_counter() - started:.0f} s", style="dim")
    return done[-1]
