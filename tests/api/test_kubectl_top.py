"""``kubectl top`` against the simulator's API server, which fronts our metrics.k8s.io the way the
Kubernetes aggregation layer does: the numbers kubectl prints are the collected window's."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import timedelta
from typing import Any

import polars as pl
import pytest

from heapster_columnar.api.server import ApiOptions, create_app, serve
from heapster_columnar.manager.build import RunConfig, build
from heapster_columnar.model.window import Window
from heapster_columnar.simulator.apiserver import ApiService
from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec

MI = 1 << 20


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:  # the project's test set-up installs Debian's kubernetes-client when missing
        subprocess.run(["apt-get", "install", "-y", "kubernetes-client"], check=True, capture_output=True)
        found = shutil.which("kubectl")
    assert found is not None, "kubectl is neither on PATH nor installable with apt-get"
    return found


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()[1:]]


@pytest.fixture(scope="module")
def topped() -> tuple[Window, dict[str, list[list[str]]]]:
    """Collect two windows over HTTPS, then run kubectl top while the APIs keep serving."""
    spec = ClusterSpec(nodes=3, pods_per_node=4, https=True, token="s3cret", kubelet_port=0)
    binary = kubectl()
    with SimulatedCluster(spec) as cluster:
        config = RunConfig(source=cluster.source_uri, resolution=timedelta(seconds=5), offset=timedelta(seconds=1))

        async def scenario() -> tuple[Window, dict[str, list[list[str]]]]:
            collector = build(config)
            assert collector.state.wait_ready(20) and collector.memory is not None
            runner, port = await serve(
                create_app(collector.memory, collector.telemetry, ApiOptions(listen_ip="127.0.0.1", port=0)),
                ApiOptions(listen_ip="127.0.0.1", port=0),
            )
            stop = asyncio.Event()
            running = asyncio.create_task(collector.manager.run(stop))
            try:
                while len(collector.manager.outcomes) < 2:  # the second window has rates
                    await asyncio.sleep(0.2)
                seen = len(collector.manager.outcomes)
                while len(collector.manager.outcomes) == seen:  # start right after a window: 5 s for kubectl
                    await asyncio.sleep(0.05)
                cluster.register_api_service(ApiService("metrics.k8s.io", "v1beta1", f"http://127.0.0.1:{port}"))
                latest = collector.memory.latest()
                assert latest is not None
                outputs = {}
                for what in ("nodes", "pods"):
                    args = [
                        binary,
                        f"--kubeconfig={cluster.kubeconfig_path}",
                        "top",
                        what[:-1] if what == "nodes" else "pod",
                    ]
                    args += ["-A"] if what == "pods" else []
                    done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=60)
                    assert done.returncode == 0, done.stderr
                    outputs[what] = table(done.stdout)
                assert collector.memory.latest() is latest, "a window ended while kubectl ran: compare with it"
                return latest, outputs
            finally:
                stop.set()
                await running
                await runner.cleanup()
                await collector.aclose()

        return asyncio.run(scenario())


def _entities(window: Window) -> pl.DataFrame:
    frame = pl.from_arrow(window.batch.entities)
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_kubectl_top_nodes_prints_the_window(topped: Any) -> None:
    window, outputs = topped
    nodes = _entities(window).filter(pl.col("type") == "node")
    want = {
        row["nodename"]: (f"{row['cpu/usage_rate']}m", f"{row['memory/working_set'] // MI}Mi")
        for row in nodes.iter_rows(named=True)
    }
    got = {line[0]: (line[1], line[3]) for line in outputs["nodes"]}
    assert got == want and len(got) == 3


def test_kubectl_top_pods_prints_the_window(topped: Any) -> None:
    window, outputs = topped
    containers = _entities(window).filter(pl.col("type") == "pod_container")
    sums = containers.group_by("namespace_name", "pod_name").agg(
        pl.col("cpu/usage_rate").sum(), pl.col("memory/working_set").sum()
    )
    want = {
        (r["namespace_name"], r["pod_name"]): (f"{r['cpu/usage_rate']}m", f"{r['memory/working_set'] // MI}Mi")
        for r in sums.iter_rows(named=True)
    }
    got = {(line[0], line[1]): (line[2], line[3]) for line in outputs["pods"]}
    assert got == want and len(got) == 12
