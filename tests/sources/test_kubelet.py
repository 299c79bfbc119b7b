"""KubeletScraper against a real simulated cluster over loopback HTTP and HTTPS (no mocks)."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec, Fault, FaultSpec, node_name
from heapster_columnar.sources.config import SummarySourceConfig
from heapster_columnar.sources.kubelet import Collected, KubeletScraper
from heapster_columnar.sources.objects import nodes_table

TOKEN = "s3cret"
T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def _clock() -> float:
    return T0.timestamp()


def _nodes(cluster: SimulatedCluster) -> pa.Table:
    headers = {"Authorization": f"Bearer {cluster.spec.token}"} if cluster.spec.token else {}
    verify = ssl.create_default_context(cafile=str(cluster.ca_path)) if cluster.ca_path else True
    items: list[dict[str, Any]] = httpx.get(cluster.api_url + "/api/v1/nodes", headers=headers, verify=verify).json()[
        "items"
    ]
    return nodes_table(items)


def _config(cluster: SimulatedCluster, options: str = "") -> SummarySourceConfig:
    https = "true" if cluster.spec.https else "false"
    uri = f"kubernetes.summary_api:{cluster.api_url}?inClusterConfig=false&kubeletHttps={https}"
    return SummarySourceConfig.from_uri(uri + (f"&{options}" if options else ""))


def _collect(
    cluster: SimulatedCluster,
    config: SummarySourceConfig,
    *,
    token: str | None = TOKEN,
    ca: bool = True,
    within: float = 10.0,
    windows: int = 1,
) -> list[Collected]:
    """Run ``windows`` collections with one scraper (as the manager would) and close it."""
    nodes = _nodes(cluster)

    async def run() -> list[Collected]:
        scraper = KubeletScraper(
            config, api_token=token, ca_file=str(cluster.ca_path) if ca and cluster.ca_path else None, seed=1
        )
        try:
            out = []
            for _ in range(windows):
                deadline = asyncio.get_running_loop().time() + within
                out.append(await scraper.collect(nodes, now=T0, deadline=deadline))
            return out
        finally:
            await scraper.aclose()

    return asyncio.run(run())


def _cpu_by_node(collected: Collected) -> dict[str, int]:
    entities = collected.batch.entities
    rows = entities.filter(pc.equal(entities.column("type"), "node"))
    return dict(zip(rows.column("nodename").to_pylist(), rows.column("cpu/usage").to_pylist(), strict=True))


def _truth(cluster: SimulatedCluster, indices: range | list[int]) -> dict[str, int]:
    return {node_name(i): cluster.summary(i, _clock())["node"]["cpu"]["usageCoreNanoSeconds"] for i in indices}


# --- plain HTTP, faults --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty() -> Iterator[SimulatedCluster]:
    faults = FaultSpec.parse("http500=1,garbage=1,truncated=1,notready=1")
    with SimulatedCluster(ClusterSpec(nodes=10, pods_per_node=3, seed=5, faults=faults), clock=_clock) as cluster:
        yield cluster


def _faulted(cluster: SimulatedCluster, fault: Fault) -> int:
    return next(i for i, faults in cluster.faults.items() if fault in faults)


@pytest.mark.parametrize("mode", ["direct", "proxy"])
def test_http_scrape_matches_truth_and_names_each_failure(faulty: SimulatedCluster, mode: str) -> None:
    [got] = _collect(faulty, _config(faulty, f"kubeletMode={mode}"), token=None)
    healthy = [i for i in range(10) if i not in faulty.faults]
    assert len(healthy) == 6
    assert _cpu_by_node(got) == _truth(faulty, healthy)
    assert got.scraped == 6 and got.partial
    assert got.failures[node_name(_faulted(faulty, Fault.NOT_READY))] == "not ready"
    assert got.failures[node_name(_faulted(faulty, Fault.HTTP500))].startswith("HTTP 500")
    assert got.failures[node_name(_faulted(faulty, Fault.GARBAGE))].startswith("not JSON: body starts b'<html>")
    assert got.failures[node_name(_faulted(faulty, Fault.TRUNCATED))].startswith("bad Summary: ")
    assert len(got.failures) == 4
    assert set(got.request_seconds) == {node_name(i) for i in range(10)} - {
        node_name(_faulted(faulty, f)) for f in (Fault.NOT_READY, Fault.HTTP500)
    }
    assert got.bytes > 6 * 1000


def test_connections_are_reused_across_windows(faulty: SimulatedCluster) -> None:
    first, second = _collect(faulty, _config(faulty), token=None, windows=2)
    assert _cpu_by_node(first) == _cpu_by_node(second)
    assert first.failures == second.failures


def test_fixed_port_overrides_daemon_endpoints(faulty: SimulatedCluster) -> None:
    [got] = _collect(faulty, _config(faulty, "kubeletPort=1&timeout=2"), token=None)
    reasons = {r for n, r in got.failures.items() if r != "not ready"}
    assert got.scraped == 0 and all(r.startswith("connect: ") for r in reasons), reasons


# --- deadline and timeout ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hanging() -> Iterator[SimulatedCluster]:
    spec = ClusterSpec(nodes=20, pods_per_node=3, seed=2, faults=FaultSpec.parse("hang=0.1"))
    with SimulatedCluster(spec, clock=_clock) as cluster:
        yield cluster


@pytest.mark.parametrize(
    ("options", "within", "reason"), [("timeout=30", 1.5, "deadline"), ("timeout=1", 5.0, "timeout")]
)
def test_hanging_kubelets_cost_only_themselves(
    hanging: SimulatedCluster, options: str, within: float, reason: str
) -> None:
    hung = sorted(i for i, f in hanging.faults.items() if Fault.HANG in f)
    assert len(hung) == 2
    started = time.monotonic()
    [got] = _collect(hanging, _config(hanging, options), token=None, within=within)
    assert time.monotonic() - started < within + 1.0
    assert got.failures == {node_name(i): reason for i in hung}
    assert got.partial and got.scraped == 18
    assert _cpu_by_node(got) == _truth(hanging, [i for i in range(20) if i not in hung])


# --- HTTPS, CA, token ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secure() -> Iterator[SimulatedCluster]:
    spec = ClusterSpec(nodes=4, pods_per_node=3, seed=3, https=True, token=TOKEN)
    with SimulatedCluster(spec, clock=_clock) as cluster:
        yield cluster


@pytest.mark.parametrize("mode", ["direct", "proxy"])
def test_https_with_ca_and_token(secure: SimulatedCluster, mode: str) -> None:
    [got] = _collect(secure, _config(secure, f"kubeletMode={mode}"))
    assert got.failures == {} and not got.partial
    assert _cpu_by_node(got) == _truth(secure, range(4))


@pytest.mark.parametrize("mode", ["direct", "proxy"])
def test_wrong_token_fails_every_node_with_401(secure: SimulatedCluster, mode: str) -> None:
    [got] = _collect(secure, _config(secure, f"kubeletMode={mode}"), token="wrong")
    assert got.failures == {node_name(i): "401 Unauthorized" for i in range(4)}
    assert got.batch.entities.num_rows == 0


def test_without_ca_kubelet_certificates_are_refused(secure: SimulatedCluster) -> None:
    [got] = _collect(secure, _config(secure), ca=False)
    assert len(got.failures) == 4
    assert all(r.startswith("TLS: certificate verify failed") for r in got.failures.values()), got.failures


def test_insecure_only_when_asked(secure: SimulatedCluster) -> None:
    [got] = _collect(secure, _config(secure, "insecure=true"), ca=False)
    assert got.failures == {} and got.scraped == 4


def test_wrong_ca_is_a_tls_reason() -> None:
    spec = ClusterSpec(nodes=3, pods_per_node=2, https=True, token=TOKEN)
    with SimulatedCluster(spec, clock=_clock, bad_certificate=True) as cluster:
        nodes = _nodes_insecure(cluster)
        config = _config(cluster, f"caFile={cluster.ca_path}")

        async def run() -> Collected:
            scraper = KubeletScraper(config, api_token=TOKEN)
            try:
                return await scraper.collect(nodes, now=T0, deadline=asyncio.get_running_loop().time() + 10)
            finally:
                await scraper.aclose()

        got = asyncio.run(run())
    assert set(got.failures) == {node_name(i) for i in range(3)}
    assert all(r.startswith("TLS: certificate verify failed") for r in got.failures.values()), got.failures


def _nodes_insecure(cluster: SimulatedCluster) -> pa.Table:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return nodes_table(httpx.get(cluster.api_url + "/api/v1/nodes", headers=headers, verify=False).json()["items"])


def test_token_file_is_reread_when_it_rotates(secure: SimulatedCluster, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("stale\n")
    config = _config(secure, f"tokenFile={token_file}")
    nodes = _nodes(secure)

    async def run() -> tuple[Collected, Collected, Collected]:
        scraper = KubeletScraper(config, api_token="ignored: the file wins", ca_file=str(secure.ca_path))
        try:
            loop = asyncio.get_running_loop()
            before = await scraper.collect(nodes, now=T0, deadline=loop.time() + 10)
            token_file.write_text(TOKEN + "\n")
            os.utime(token_file, ns=(time.time_ns(), time.time_ns() + 1_000_000))
            rotated = await scraper.collect(nodes, now=T0, deadline=loop.time() + 10)
            token_file.write_text("revoked")
            after = await scraper.collect(nodes, now=T0, deadline=loop.time() + 10)
            return before, rotated, after
        finally:
            await scraper.aclose()

    before, rotated, after = asyncio.run(run())
    assert set(before.failures.values()) == {"401 Unauthorized"}
    assert rotated.failures == {} and rotated.scraped == 4
    assert set(after.failures.values()) == {"401 Unauthorized"}


# --- scale through the API-server proxy ---------------------------------------------------------


def test_200_nodes_through_the_proxy() -> None:
    spec = ClusterSpec(nodes=200, pods_per_node=5, seed=9, https=True, token=TOKEN)
    with SimulatedCluster(spec, clock=_clock) as cluster:
        started = time.monotonic()
        [got] = _collect(cluster, _config(cluster, "kubeletMode=proxy&concurrency=32"), within=15)
        elapsed = time.monotonic() - started
        truth = _truth(cluster, range(200))
    assert got.failures == {} and got.scraped == 200
    assert _cpu_by_node(got) == truth
    assert elapsed < 15
