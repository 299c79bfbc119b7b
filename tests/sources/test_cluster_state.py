"""ClusterState against a real simulated API server: the official client over HTTP(S), no mocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from heapster_columnar.errors import ConfigError
from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec, kubelet_ip, node_name
from heapster_columnar.sources.cluster_state import ClusterState, api_client

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(ClusterSpec(nodes=12, pods_per_node=5, seed=21, https=True, token=TOKEN)) as running:
        yield running


@pytest.fixture
def api(cluster: SimulatedCluster) -> Iterator[Any]:
    """HTTPS + bearer token, both from the simulator's kubeconfig (its current context)."""
    client = api_client(kubeconfig=str(cluster.kubeconfig_path))
    yield client
    client.close()


@pytest.fixture
def state(api: Any) -> Iterator[ClusterState]:
    with ClusterState(api, watch_timeout=5, backoff=0.05) as running:
        assert running.wait_ready(15)
        yield running


def _truth(cluster: SimulatedCluster, kind: str) -> list[dict[str, Any]]:
    return cluster.store.list(kind).items


def _eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cluster-state-")]


def test_snapshot_holds_every_object(cluster: SimulatedCluster, state: ClusterState) -> None:
    dims = state.snapshot()
    pods = _truth(cluster, "pods")
    assert state.ready
    assert dims.nodes.num_rows == 12
    assert dims.pods.num_rows == len(pods)
    assert dims.containers.num_rows == sum(len(p["spec"]["containers"]) for p in pods)
    assert dims.namespaces.num_rows == len(_truth(cluster, "namespaces"))
    assert state.lists == 3 and state.relists == 0 and state.errors == 0

    pod = cluster.pods(3)[1]["metadata"]
    rows = dims.pods.to_pylist()
    mine = [r for r in rows if (r["namespace"], r["name"]) == (pod["namespace"], pod["name"])]
    assert [r["uid"] for r in mine] == [pod["uid"]]
    assert mine[0]["node_name"] == node_name(3)

    nodes = {r["name"]: r for r in dims.nodes.to_pylist()}
    for index in (0, 7, 11):
        assert nodes[node_name(index)]["address"] == kubelet_ip(index)
        assert nodes[node_name(index)]["kubelet_port"] == cluster.fleet.ports[index]
        assert nodes[node_name(index)]["ready"] is True
    assert {r["name"] for r in dims.namespaces.to_pylist()} >= {"default", "kube-system"}


def test_unchanged_state_gives_the_same_tables(state: ClusterState) -> None:
    first = state.snapshot()
    second = state.snapshot()
    assert second.pods is first.pods and second.containers is first.containers
    assert second.nodes is first.nodes and second.namespaces is first.namespaces


def test_a_deleted_pod_leaves_the_next_snapshot(cluster: SimulatedCluster, state: ClusterState) -> None:
    before = state.snapshot()
    victim = cluster.pods(5)[0]["metadata"]
    assert victim["uid"] in before.pods.column("uid").to_pylist()
    cluster.delete_pod(victim["namespace"], victim["name"])

    def gone() -> bool:
        return victim["uid"] not in state.snapshot().pods.column("uid").to_pylist()

    assert _eventually(gone)
    after = state.snapshot()
    assert after.pods.num_rows == before.pods.num_rows - 1 == len(_truth(cluster, "pods"))
    assert victim["name"] not in after.containers.column("pod_name").to_pylist()
    assert after.nodes is before.nodes and after.namespaces is before.namespaces  # only pods changed


def test_watches_resume_after_their_server_timeout(cluster: SimulatedCluster, api: Any) -> None:
    with ClusterState(api, watch_timeout=1, backoff=0.05) as state:
        assert state.wait_ready(15)
        first = state.snapshot()
        assert _eventually(lambda: state.watch_restarts >= 6)  # 3 kinds x 2 watches of 1 s
        assert state.relists == 0 and state.errors == 0
        assert state.snapshot() is first  # bookmarks and restarts change nothing


def test_a_dropped_watch_resumes_without_a_relist(cluster: SimulatedCluster, state: ClusterState) -> None:
    pods = state._kinds["pods"]  # (private: the only way to cut one connection of a real client)
    assert _eventually(lambda: pods.response is not None)
    before = state.errors
    pods.response.shutdown()  # the socket dies under the reading thread, as a dropped connection does
    assert _eventually(lambda: state.errors > before)
    assert _eventually(lambda: pods.response is not None)  # watching again, from the last version seen
    victim = cluster.pods(6)[0]["metadata"]
    cluster.delete_pod(victim["namespace"], victim["name"])
    assert _eventually(lambda: victim["uid"] not in state.snapshot().pods.column("uid").to_pylist())
    assert state.relists == 0
    assert state.snapshot().pods.num_rows == len(_truth(cluster, "pods"))


def test_410_gone_relists_and_the_state_stays_right() -> None:
    spec = ClusterSpec(nodes=3, pods_per_node=2, seed=4)  # plain HTTP, explicit URL
    with SimulatedCluster(spec) as sim:
        client = api_client(url=sim.api_url)
        try:
            with ClusterState(client, watch_timeout=30, backoff=0.05) as state:
                assert state.wait_ready(15)
                assert state.snapshot().namespaces.num_rows == len(_truth(sim, "namespaces"))

                async def flood() -> None:
                    # Inside the server's event loop the watch cannot drain between these changes:
                    # the log (10,000 per kind) drops events it has not sent, as a compacting etcd
                    # does behind a slow watcher, and its next read gets 410 Expired.
                    for i in range(10_100):
                        current = sim.store.get("namespaces", "default")
                        assert current is not None
                        metadata = {**current["metadata"], "labels": {"round": str(i)}}
                        sim.store.update("namespaces", {**current, "metadata": metadata})

                sim._call(flood())
                assert _eventually(lambda: state.relists >= 1)
                assert state.gone >= 1

                def final_label() -> bool:
                    rows = state.snapshot().namespaces.to_pylist()
                    return {r["name"]: dict(r["labels"]) for r in rows}["default"] == {"round": "10099"}

                assert _eventually(final_label)
                assert state.snapshot().pods.num_rows == 6 and state.snapshot().nodes.num_rows == 3
        finally:
            client.close()


def test_explicit_url_ca_and_token(cluster: SimulatedCluster) -> None:
    client = api_client(url=cluster.api_url, ca_file=str(cluster.ca_path), token=TOKEN)
    try:
        with ClusterState(client) as state:
            assert state.wait_ready(15)
            assert state.snapshot().nodes.num_rows == 12
    finally:
        client.close()


def test_a_wrong_token_never_blocks_a_snapshot(cluster: SimulatedCluster) -> None:
    client = api_client(url=cluster.api_url, ca_file=str(cluster.ca_path), token="wrong")
    try:
        with ClusterState(client, backoff=0.05, max_backoff=0.2) as state:
            assert not state.wait_ready(0.5)
            started = time.monotonic()
            dims = state.snapshot()
            assert time.monotonic() - started < 0.5
            assert dims.pods.num_rows == dims.nodes.num_rows == dims.namespaces.num_rows == 0
            assert state.errors >= 3
            assert state.last_error is not None and "401" in state.last_error
    finally:
        client.close()


def test_close_stops_every_thread_without_waiting_for_the_watch(api: Any) -> None:
    state = ClusterState(api, watch_timeout=300)
    state.start()
    assert state.wait_ready(15)
    assert len(_threads()) == 3
    time.sleep(0.2)  # the watches are now waiting for events
    started = time.monotonic()
    state.close()
    assert time.monotonic() - started < 2
    assert _threads() == []


def test_api_client_needs_a_source(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="give a URL"):
        api_client()
    with pytest.raises(ConfigError, match="not both"):
        api_client(in_cluster=True, kubeconfig="x")
    with pytest.raises(ConfigError):
        api_client(kubeconfig=str(tmp_path / "missing"))
