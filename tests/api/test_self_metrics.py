"""/metrics after a real collection: the timings are real (Heapster's read ~0 for two years)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from heapster_columnar.api.server import ApiOptions, create_app, serve
from heapster_columnar.manager.build import RunConfig, build
from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec, FaultSpec


def test_scrape_and_stage_timings_are_measured() -> None:
    """Two of four kubelets answer 1.5 s late: the per-node gauge, the scrape histogram and the
    window histogram must show it; processor stages take measurable time."""
    spec = ClusterSpec(nodes=4, pods_per_node=3, kubelet_port=0, faults=FaultSpec.parse("slow=2:1.5"))
    with SimulatedCluster(spec) as cluster:
        slow = {f"node-{i:05d}" for i, f in cluster.faults.items() if f}
        config = RunConfig(source=cluster.source_uri, resolution=timedelta(seconds=5), offset=timedelta(seconds=1))

        async def scenario() -> str:
            collector = build(config)
            assert collector.state.wait_ready(20) and collector.memory is not None
            options = ApiOptions(listen_ip="127.0.0.1", port=0)
            runner, port = await serve(create_app(collector.memory, collector.telemetry, options), options)
            try:
                await collector.manager.run(asyncio.Event(), windows=1)
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            finally:
                await runner.cleanup()
                await collector.aclose()

        text = asyncio.run(scenario())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    per_node = {
        dict(k[1])["node"]: v for k, v in samples.items() if k[0] == "heapster_columnar_kubelet_request_last_seconds"
    }
    assert len(slow) == 2 and set(per_node) == {f"node-{i:05d}" for i in range(4)}
    assert all(per_node[n] >= 1.5 for n in slow) and all(per_node[n] < 1.0 for n in set(per_node) - slow)
    assert samples[("heapster_columnar_scrape_seconds_sum", ())] >= 1.5
    assert samples[("heapster_columnar_window_seconds_count", ())] == 1
    assert samples[("heapster_columnar_window_seconds_sum", ())] >= 1.5  # (scrape offset 1 s + the slow nodes)
    stages = {
        dict(k[1])["processor"]: v for k, v in samples.items() if k[0] == "heapster_processor_duration_seconds_sum"
    }
    assert {"rate_calculator", "pod_enricher", "pod_aggregator", "to_points"} <= set(stages)
    assert all(v > 0 for v in stages.values())
    assert samples[("heapster_columnar_points", ())] > 100
