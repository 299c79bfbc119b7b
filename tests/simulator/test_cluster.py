"""The simulated cluster end to end: the official kubernetes client, HTTPS + token kubelets, truth."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from kubernetes import client, config, watch

from heapster_columnar.model.points import to_points
from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec, Fault, FaultSpec
from heapster_columnar.sources.summary import decode_summaries

TOKEN = "s3cret"
T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def cluster(clock: Clock) -> Iterator[SimulatedCluster]:
    spec = ClusterSpec(nodes=4, pods_per_node=6, seed=3, https=True, token=TOKEN)
    with SimulatedCluster(spec, clock=clock) as running:
        yield running


@pytest.fixture
def v1(cluster: SimulatedCluster) -> Iterator[client.CoreV1Api]:
    api = config.new_client_from_config(str(cluster.kubeconfig_path))
    yield client.CoreV1Api(api)
    api.close()


def _ca(cluster: SimulatedCluster) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cluster.ca_path))


def _get(cluster: SimulatedCluster, index: int, token: str = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(cluster.kubelet_url(index) + "/stats/summary", verify=_ca(cluster), headers=headers)


def test_client_lists_nodes_with_their_own_kubelet_endpoints(cluster: SimulatedCluster, v1: client.CoreV1Api) -> None:
    nodes = v1.list_node().items
    assert [n.metadata.name for n in nodes] == ["node-00000", "node-00001", "node-00002", "node-00003"]
    addresses = [n.status.addresses[0].address for n in nodes]
    assert addresses == ["127.1.0.1", "127.1.0.2", "127.1.0.3", "127.1.0.4"]
    assert [n.status.daemon_endpoints.kubelet_endpoint.port for n in nodes] == cluster.fleet.ports
    assert all(n.status.conditions[0].type == "Ready" and n.status.conditions[0].status == "True" for n in nodes)
    assert nodes[0].status.allocatable["cpu"] == "7840m"


def test_pods_agree_with_the_kubelet(cluster: SimulatedCluster, v1: client.CoreV1Api) -> None:
    pods = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-00002").items
    truth = cluster.summary(2, T0)
    assert sorted(p.metadata.uid for p in pods) == sorted(p["podRef"]["uid"] for p in truth["pods"])
    for pod in pods:
        assert pod.metadata.owner_references[0].kind in {"ReplicaSet", "DaemonSet"}
        assert all(c.resources.requests["cpu"].endswith("m") for c in pod.spec.containers)
    namespaces = {n.metadata.name for n in v1.list_namespace().items}
    assert {p.metadata.namespace for p in pods} <= namespaces


def test_summaries_decode_to_the_simulators_truth(cluster: SimulatedCluster, clock: Clock) -> None:
    clock.t = T0
    bodies = [_get(cluster, i).content for i in range(4)]
    result = decode_summaries(bodies, now=datetime.fromtimestamp(T0, UTC))
    assert result.errors == ()
    points = to_points(result.batch, datetime.fromtimestamp(T0, UTC)).to_pylist()
    for index in range(4):
        truth = cluster.summary(index, T0)["node"]
        node_cpu = [
            p["value_int"]
            for p in points
            if p["nodename"] == truth["nodeName"] and p["type"] == "node" and p["metric"] == "cpu/usage"
        ]
        assert node_cpu == [truth["cpu"]["usageCoreNanoSeconds"]]


def test_counters_advance_at_the_published_rate(cluster: SimulatedCluster, clock: Clock) -> None:
    clock.t = T0
    before = _get(cluster, 1).json()
    clock.t = T0 + 15
    after = _get(cluster, 1).json()
    clock.t = T0
    for old, new in zip(before["pods"], after["pods"], strict=True):
        elapsed = (datetime.fromisoformat(new["cpu"]["time"]) - datetime.fromisoformat(old["cpu"]["time"])).seconds
        assert elapsed == 15  # whole seconds, like a real kubelet
        delta = new["cpu"]["usageCoreNanoSeconds"] - old["cpu"]["usageCoreNanoSeconds"]
        assert delta == new["cpu"]["usageNanoCores"] * 15


def test_wrong_token_is_rejected(cluster: SimulatedCluster) -> None:
    assert _get(cluster, 0, token="wrong").status_code == 401
    api = httpx.get(cluster.api_url + "/api/v1/nodes", verify=_ca(cluster))
    assert api.status_code == 401


def test_api_server_proxies_to_the_kubelet(cluster: SimulatedCluster, clock: Clock) -> None:
    clock.t = T0
    url = cluster.api_url + "/api/v1/nodes/node-00003/proxy/stats/summary"
    proxied = httpx.get(url, verify=_ca(cluster), headers={"Authorization": f"Bearer {TOKEN}"})
    assert proxied.status_code == 200
    assert proxied.content == _get(cluster, 3).content


def test_watch_sees_a_pod_deletion(cluster: SimulatedCluster, v1: client.CoreV1Api) -> None:
    listing = v1.list_namespaced_pod("kube-system")
    victim = listing.items[0].metadata
    events: list[tuple[str, str]] = []
    w = watch.Watch()

    def consume() -> None:
        for event in w.stream(
            v1.list_namespaced_pod, "kube-system", resource_version=listing.metadata.resource_version, timeout_seconds=5
        ):
            events.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.2)
    cluster.delete_pod("kube-system", victim.name)
    thread.join(timeout=10)
    assert ("DELETED", victim.name) in events
    assert victim.name not in {p.metadata.name for p in v1.list_namespaced_pod("kube-system").items}


def test_a_certificate_from_another_ca_fails_verification() -> None:
    spec = ClusterSpec(nodes=1, pods_per_node=1, https=True)
    with (
        SimulatedCluster(spec, bad_certificate=True) as bad,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        httpx.get(bad.kubelet_url(0) + "/stats/summary", verify=_ca(bad))


FAULTS = "hang=1,slow=1:1,http500=1,garbage=1,truncated=1,uint64max=1,missing=1,notready=1"


def test_each_fault_does_what_it_says() -> None:
    spec = ClusterSpec(nodes=8, pods_per_node=4, seed=5, faults=FaultSpec.parse(FAULTS))
    with SimulatedCluster(spec) as sim:
        by_fault = {fault.value: node for node, faults in sim.faults.items() for fault in faults}
        assert len(by_fault) == 8  # each node got exactly one fault here

        def get(fault: str, timeout: float = 5) -> httpx.Response:
            return httpx.get(sim.kubelet_url(by_fault[fault]) + "/stats/summary", timeout=timeout)

        with pytest.raises(httpx.ReadTimeout):
            get("hang", timeout=0.5)
        started = time.perf_counter()
        assert get("slow").status_code == 200
        assert time.perf_counter() - started >= 1
        assert get("http500").status_code == 500
        now = datetime.now(UTC)
        for fault in ("garbage", "truncated"):
            assert len(decode_summaries([get(fault).content], now=now).errors) == 1
        assert decode_summaries([get("uint64max").content], now=now).unknown_values > 0
        missing = get("missing").json()
        assert "network" not in missing["pods"][0] and "memory" not in missing["pods"][0]["containers"][0]
        node = httpx.get(sim.api_url + f"/api/v1/nodes/node-{by_fault['notready']:05d}").json()
        assert node["status"]["conditions"][0]["status"] == "False"


def test_large_clusters_build_objects_in_worker_processes() -> None:
    spec = ClusterSpec(nodes=201, pods_per_node=1, seed=9)  # three chunks of 100: the process pool
    with SimulatedCluster(spec) as sim:
        nodes = httpx.get(sim.api_url + "/api/v1/nodes").json()["items"]
        pods = httpx.get(sim.api_url + "/api/v1/pods").json()["items"]
        assert len(nodes) == 201
        assert len(pods) == 201
        assert sim.pods(200)[0]["spec"]["nodeName"] == "node-00200"
        assert sim.pods(200)[0]["metadata"]["uid"] == sim.summary(200, time.time())["pods"][0]["podRef"]["uid"]


def test_restart_fault_resets_counters_and_counts_restarts() -> None:
    clock = Clock(T0 + 30)  # T0 is a multiple of 60: the last restart was 30 s ago
    spec = ClusterSpec(nodes=1, pods_per_node=3, seed=4, faults=FaultSpec.parse("restart=1:60"))
    with SimulatedCluster(spec, clock=clock) as sim:
        served = httpx.get(sim.kubelet_url(0) + "/stats/summary").json()
        first = served["pods"][0]["containers"][0]
        assert first["startTime"] == datetime.fromtimestamp(T0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        elapsed = (datetime.fromisoformat(first["cpu"]["time"]) - datetime.fromtimestamp(T0, UTC)).total_seconds()
        assert first["cpu"]["usageCoreNanoSeconds"] <= first["cpu"]["usageNanoCores"] * elapsed + 1
        pod = served["pods"][0]["podRef"]

        def restart_count() -> int:
            obj = httpx.get(sim.api_url + f"/api/v1/namespaces/{pod['namespace']}/pods/{pod['name']}").json()
            count: int = obj["status"]["containerStatuses"][0]["restartCount"]
            return count

        deadline = time.monotonic() + 5
        while restart_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = restart_count()
        assert before > 1000  # a container started years ago, restarting every minute
        clock.t += 60
        deadline = time.monotonic() + 5
        while restart_count() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert restart_count() == before + 1


def test_churn_replaces_a_pod_on_the_kubelet_and_in_the_api() -> None:
    clock = Clock(T0 + 30)
    spec = ClusterSpec(nodes=1, pods_per_node=4, seed=8, faults=FaultSpec.parse("churn=1:60"))
    with SimulatedCluster(spec, clock=clock) as sim:

        def served_uids() -> set[str]:
            return {p["podRef"]["uid"] for p in httpx.get(sim.kubelet_url(0) + "/stats/summary").json()["pods"]}

        def api_uids() -> set[str]:
            return {p["metadata"]["uid"] for p in httpx.get(sim.api_url + "/api/v1/pods").json()["items"]}

        deadline = time.monotonic() + 5
        while api_uids() != served_uids() and time.monotonic() < deadline:
            time.sleep(0.1)
        before = served_uids()
        assert api_uids() == before and len(before) == 4
        version = httpx.get(sim.api_url + "/api/v1/pods").json()["metadata"]["resourceVersion"]

        clock.t += 60  # next generation: one slot gets a new pod
        after = served_uids()
        assert len(after - before) == 1 and len(before - after) == 1
        (new_uid,) = after - before
        new_pod = next(
            p for p in httpx.get(sim.kubelet_url(0) + "/stats/summary").json()["pods"] if p["podRef"]["uid"] == new_uid
        )
        assert new_pod["startTime"] == datetime.fromtimestamp(T0 + 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        events = []
        url = sim.api_url + f"/api/v1/pods?watch=true&resourceVersion={version}&timeoutSeconds=5"
        with httpx.stream("GET", url, timeout=10) as stream:
            for line in stream.iter_lines():
                event = json.loads(line)
                events.append((event["type"], event["object"]["metadata"]["uid"]))
                if len(events) == 2:
                    break
        assert sorted(events) == sorted([("DELETED", next(iter(before - after))), ("ADDED", new_uid)])


def test_start_up_prebuilds_every_body_exactly() -> None:
    faults = FaultSpec.parse("churn=1:60,uint64max=1,missing=1")
    spec = ClusterSpec(nodes=160, pods_per_node=3, seed=12, faults=faults)  # > 100 nodes: worker processes
    with SimulatedCluster(spec) as sim:
        churning = [i for i, f in sim.faults.items() if Fault.CHURN in f]
        assert len(churning) == 1
        # the churning node's template changes every period: built on first use (by the API's
        # reconciler, which may already have run)
        assert set(sim.fleet._templates) >= set(range(160)) - set(churning)
        second = int(time.time())
        for index in range(160):
            assert orjson.loads(sim.fleet.body(index, second)) == sim.fleet._render(index, second), index


def test_a_port_in_use_is_a_clean_startup_error() -> None:
    with SimulatedCluster(ClusterSpec(nodes=1, pods_per_node=1, kubelet_port=0)) as first:
        taken = first.fleet.ports[0]
        second = SimulatedCluster(ClusterSpec(nodes=1, pods_per_node=1, kubelet_port=taken))
        with pytest.raises(OSError, match="in use"):
            second.start()
        second.close()  # after a failed start: releases what did start, raises nothing
