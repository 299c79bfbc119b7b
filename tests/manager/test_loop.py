"""The collector against a real simulated cluster over HTTPS: rates equal the simulator's truth."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import polars as pl

from heapster_columnar.manager.build import RunConfig, build
from heapster_columnar.manager.loop import WindowOutcome
from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec, FaultSpec


def collect(cluster: SimulatedCluster, *, windows: int) -> list[WindowOutcome]:
    """Run the real collector (5 s windows) against ``cluster`` for ``windows`` windows."""
    config = RunConfig(source=cluster.source_uri, resolution=timedelta(seconds=5), offset=timedelta(seconds=1))

    async def run() -> list[WindowOutcome]:
        collector = build(config)
        assert collector.state.wait_ready(20)
        try:
            await collector.manager.run(asyncio.Event(), windows=windows)
        finally:
            await collector.aclose()
        return collector.manager.outcomes

    return asyncio.run(run())


def test_rates_requests_and_partial_windows_against_the_simulator() -> None:
    spec = ClusterSpec(
        nodes=6, pods_per_node=4, https=True, token="t0k", kubelet_port=0, faults=FaultSpec.parse("http500=1")
    )
    with SimulatedCluster(spec) as cluster:
        outcomes = collect(cluster, windows=2)
        assert len(outcomes) == 2
        last = outcomes[-1].window
        failed = [i for i, f in cluster.faults.items() if f]
        assert list(last.failures) == [f"node-{failed[0]:05d}"] and "500" in next(iter(last.failures.values()))
        entities = pl.from_arrow(last.batch.entities)
        assert isinstance(entities, pl.DataFrame)
        for index in range(spec.nodes):
            if index in failed:
                continue
            name = f"node-{index:05d}"
            node = entities.filter((pl.col("type") == "node") & (pl.col("nodename") == name)).row(0, named=True)
            truth = cluster.summary(index, last.end.timestamp())["node"]["cpu"]["usageNanoCores"]
            # counters grow at exactly usageNanoCores per second, so the rate is exact, in millicores
            assert node["cpu/usage_rate"] == truth // 1_000_000
            assert node["cpu/request"] == sum(
                int(c["resources"]["requests"]["cpu"].removesuffix("m"))
                for pod in cluster.pods(index)
                for c in pod["spec"]["containers"]
            )
        cluster_row = entities.filter(pl.col("type") == "cluster").row(0, named=True)
        assert cluster_row["cpu/usage_rate"] > 0 and cluster_row["memory/request"] > 0


def test_restarting_containers_never_give_negative_rates() -> None:
    spec = ClusterSpec(nodes=4, pods_per_node=3, kubelet_port=0, faults=FaultSpec.parse("restart=4:4"))
    with SimulatedCluster(spec) as cluster:
        outcomes = collect(cluster, windows=3)
    rates = [c for c in ("cpu/usage_rate", "memory/page_faults_rate", "network/rx_rate")]
    seen_null = 0
    for outcome in outcomes[1:]:
        entities = pl.from_arrow(outcome.window.batch.entities)
        assert isinstance(entities, pl.DataFrame)
        containers = entities.filter(pl.col("type") == "pod_container")
        for rate in rates:
            assert entities.filter(pl.col(rate) < 0).height == 0, rate
        # every first container restarts every 4 s: across a 5 s window its counter start moved
        seen_null += containers.filter(pl.col("cpu/usage_rate").is_null()).height
    assert seen_null > 0


def test_a_pod_deleted_between_windows_disappears() -> None:
    """Churn replaces one pod per node every 5 s (DELETED then ADDED in the API, a new pod at the
    kubelet): a replaced pod is gone from the next windows, no placeholder stands in for it, and the
    new pod is enriched from the API like the others."""
    spec = ClusterSpec(nodes=3, pods_per_node=3, kubelet_port=0, faults=FaultSpec.parse("churn=3:5"))
    with SimulatedCluster(spec) as cluster:
        outcomes = collect(cluster, windows=4)
    windows = []
    for outcome in outcomes:
        entities = pl.from_arrow(outcome.window.batch.entities)
        assert isinstance(entities, pl.DataFrame)
        windows.append(entities.filter(pl.col("type") == "pod"))
    names = [set(w["pod_name"].to_list()) for w in windows]
    gone = names[0] - names[-1]
    assert gone, "churn replaced no pod in 20 s"
    for k in range(1, len(names)):
        left = names[k - 1] - names[k]
        assert all(not left & later for later in names[k:]), f"a pod deleted before window {k} came back"
    for pods in windows:
        # exactly the kubelet's pods on every node: no stale placeholder for a deleted API pod
        assert pods.group_by("nodename").len()["len"].to_list() == [spec.pods_per_node] * spec.nodes
    last = windows[-1]
    new = last.filter(~pl.col("pod_name").is_in(list(names[0])))
    assert new.height > 0
    assert new["cpu/request"].null_count() == 0 and new["labels"].null_count() == 0
