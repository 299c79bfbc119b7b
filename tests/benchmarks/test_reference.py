"""The row-at-a-time Heapster reference (benchmarks/heapster_reference.py) against the columnar pipeline,
and the reference itself against hand-computed values.

The benchmark compares the two at scale on clean simulator windows; here small windows are also
bent the ways real clusters bend them (a pod without network stats, a counter that goes down, a
restarted or duplicated container, custom metrics, accelerators, "unknown" uint64 values, a node
missing for a window, a bad document, pods / namespaces / nodes the API does not know, extended
resources), so the paths the clean windows never take are compared too.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_reference as bench
from heapster_reference import ApiObjects, HeapsterReference, entity_labels, points_of, quantity

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.samples import summary_paths

Mutation = Callable[[dict[str, Any], int, int], dict[str, Any] | None]


def run(
    cluster: bench.Cluster, windows: int, mutate: Mutation | None = None, extra: bytes | None = None
) -> list[bench.WindowResult]:
    """Both sides on ``windows`` windows of ``cluster``; ``mutate(doc, node, k)`` edits (or drops) documents."""
    dims, api = cluster.dimensions(), ApiObjects(cluster.pods, cluster.namespaces, cluster.nodes)
    pipeline, reference = Pipeline.heapster(), HeapsterReference(api)
    results = []
    for k in range(windows):
        second, now = bench.window_time(k)
        documents = cluster.render(second)
        if mutate is not None:
            edited = (mutate(json.loads(body), i, k) for i, body in enumerate(documents))
            documents = [json.dumps(doc).encode() for doc in edited if doc is not None]
        if extra is not None:
            documents.append(extra)
        results.append(bench.run_window(documents, now, pipeline, dims, reference))
    return results


def assert_identical(results: list[bench.WindowResult]) -> None:
    for k, result in enumerate(results):
        assert not result.problems, f"window {k + 1}:\n" + "\n".join(result.problems)


def test_clean_windows_are_identical() -> None:
    results = run(bench.build_cluster(5, 5), windows=3)
    assert_identical(results)
    assert results[1].points > results[0].points  # the rates of window 2


# --- bent windows ---------------------------------------------------------------------------------

UINT64_MAX = 2**64 - 1


def _bend(doc: dict[str, Any], node: int, k: int) -> dict[str, Any] | None:
    pods = doc["pods"]
    multi = [p for p in pods if len(p["containers"]) >= 2]
    if node == 0:
        multi[0]["containers"].pop()  # the API's spec still has it: a placeholder container
        del multi[1]["network"]  # no pod sample time: no pod rates, the pod sums its containers'
    elif node == 1 and k == 2:
        pods[0]["containers"][0]["cpu"]["usageCoreNanoSeconds"] = 5  # went down: no cpu rate
        pods[1]["containers"][0]["startTime"] = "2024-05-31T23:59:00Z"  # restarted: no rates
    elif node == 1:
        earlier = copy.deepcopy(pods[2]["containers"][0]) | {"startTime": "2020-01-01T00:00:00Z"}
        pods[2]["containers"].append(earlier)  # a duplicate name that started earlier loses
        later = copy.deepcopy(pods[3]["containers"][0]) | {"startTime": "2024-05-31T00:00:00Z"}
        later["memory"]["workingSetBytes"] = 12345
        pods[3]["containers"].insert(0, later)  # ... and one that started later wins
    elif node == 2:
        first, *others = multi[0]["containers"]
        first["userDefinedMetrics"] = [
            {"name": "qps", "type": "gauge", "value": 0.1},
            {"name": "lag", "type": "cumulative", "value": 2},
            {"name": "odd", "type": "histogram", "value": 3.0},
        ]
        extra = copy.deepcopy(first) | {"name": "not-in-spec"}  # no requests: the API does not list it
        multi[0]["containers"].append(extra)
        for i, other in enumerate([*others, extra]):  # into the pod: 0.1 + 0.2 + 0.3 depends on the order
            other["userDefinedMetrics"] = [{"name": "qps", "type": "gauge", "value": 0.2 + 0.1 * i + k}]
        pods[1]["containers"][0]["accelerators"] = [
            {
                "make": "nvidia",
                "model": "t4",
                "id": f"gpu-{i}",
                "memoryTotal": 16 << 30,
                "memoryUsed": i,
                "dutyCycle": 7,
            }
            for i in range(2)
        ]
        doc["node"]["fs"]["inodesFree"] = UINT64_MAX  # "unknown": no point
        pods[2]["containers"][0]["memory"]["rssBytes"] = UINT64_MAX
        del pods[3]["containers"][0]["logs"]["usedBytes"]  # no ephemeral storage for that container
    elif node == 3 and k == 1:
        return None  # the kubelet did not answer this window
    elif node == 4:
        misc = copy.deepcopy(doc["node"]["systemContainers"][1]) | {"name": "misc"}
        doc["node"]["systemContainers"].append(misc)
        pods[0]["containers"] = []  # every spec container becomes a placeholder
    return doc


def _bend_api(cluster: bench.Cluster) -> bench.Cluster:
    pods = copy.deepcopy(cluster.pods)
    on_node_3 = [p for p in pods if p["spec"]["nodeName"] == "node-00003"]
    pods.remove(on_node_3[-1])  # a pod the API does not know
    gpu = pods[0]["spec"]["containers"][0]["resources"]
    gpu["requests"]["nvidia.com/gpu"] = "2"
    gpu.setdefault("limits", {})["ephemeral-storage"] = "1Gi"
    pods[1]["status"]["containerStatuses"][0]["restartCount"] = 3
    namespaces = [n for n in cluster.namespaces if n["metadata"]["name"] != "monitoring"]
    nodes = [n for n in cluster.nodes if n["metadata"]["name"] != "node-00004"]
    return bench.Cluster(cluster.templates, pods, namespaces, nodes)


def test_bent_windows_are_identical() -> None:
    cluster = bench.build_cluster(5, 5)
    assert [n["metadata"]["name"] for n in cluster.nodes][3:] == ["node-00003", "node-00004"]
    results = run(_bend_api(cluster), windows=3, mutate=_bend, extra=b'{"node": {"cpu": "not a document"')
    assert_identical(results)
    assert [r.bad_documents for r in results] == [1, 1, 1]


@pytest.mark.parametrize("path", summary_paths(), ids=lambda p: p.name)
def test_real_payloads_are_identical(path: Path) -> None:
    body = path.read_bytes()
    dims = Dimensions.empty()
    now = datetime(2024, 1, 1, tzinfo=UTC)
    result = bench.run_window([body], now, Pipeline.heapster(), dims, HeapsterReference(ApiObjects()))
    assert not result.problems, "\n".join(result.problems)
    assert result.points > 0


def test_the_comparison_sees_a_difference() -> None:
    want = {
        ("node", "n", None, None, None, "cpu/usage_rate", None): 250,
        ("cluster", None, None, None, None, "x", None): 1,
    }
    got = {("node", "n", None, None, None, "cpu/usage_rate", None): 250.0, ("ns", None, "a", None, None, "x", None): 1}
    report = "\n".join(bench.compare(want, got).report("points"))
    assert "1 points only in the reference" in report and "1 points only in the columnar output" in report
    assert "1 points with different values" in report  # 250 vs 250.0: an int metric must stay int


# --- hand-computed values on the reference ---------------------------------------------------------

T_START = "2024-06-01T00:00:00Z"


def _summary(sample: str, *, node_cpu: int, faults: int, runtime_cpu: int, app_cpu: int, rx: int) -> bytes:
    document = {
        "node": {
            "nodeName": "n1",
            "startTime": T_START,
            "cpu": {"time": sample, "usageCoreNanoSeconds": node_cpu},
            "memory": {"time": sample, "usageBytes": 1000, "workingSetBytes": 800, "pageFaults": faults},
            "fs": {"time": sample, "usedBytes": 10, "capacityBytes": 100},
            "systemContainers": [
                {"name": "runtime", "startTime": T_START, "cpu": {"time": sample, "usageCoreNanoSeconds": runtime_cpu}}
            ],
        },
        "pods": [
            {
                "podRef": {"name": "web", "namespace": "default", "uid": "kubelet-uid"},
                "startTime": T_START,
                "network": {"time": sample, "rxBytes": rx},
                "containers": [
                    {
                        "name": "app",
                        "startTime": T_START,
                        "cpu": {"time": sample, "usageCoreNanoSeconds": app_cpu},
                        "memory": {"time": sample, "usageBytes": 300},
                    }
                ],
            }
        ],
    }
    return json.dumps(document).encode()


def _api() -> ApiObjects:
    app = {"name": "app", "image": "reg/app:1", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}
    app["resources"]["limits"] = {"cpu": "1"}
    sidecar = {"name": "sidecar", "image": "reg/sidecar:2", "resources": {"requests": {"cpu": "0.1"}}}
    pod = {
        "metadata": {"namespace": "default", "name": "web", "uid": "api-uid", "labels": {"app": "web", "a.b/c": "x"}},
        "spec": {"nodeName": "n1", "containers": [app, sidecar]},
        "status": {"containerStatuses": [{"name": "app", "restartCount": 2}]},
    }
    node = {
        "metadata": {"name": "n1", "labels": {"zone": "a"}},
        "spec": {"externalID": "i-123"},
        "status": {"capacity": {"cpu": "2", "memory": "4Gi"}, "allocatable": {"cpu": "2", "memory": "4Gi"}},
    }
    return ApiObjects([pod], [{"metadata": {"name": "default", "uid": "ns-uid"}}], [node])


def test_hand_computed_window() -> None:
    reference = HeapsterReference(_api())
    t1, t2 = datetime(2024, 6, 1, 0, 1, tzinfo=UTC), datetime(2024, 6, 1, 0, 1, 15, tzinfo=UTC)
    first = _summary("2024-06-01T00:00:55Z", node_cpu=10**10, faults=100, runtime_cpu=5 * 10**9, app_cpu=10**9, rx=0)
    assert ("node", "n1", None, None, None, "cpu/usage_rate", None) not in reference.process([first], t1)
    later = dict(node_cpu=10**10 + 3_750_000_000, faults=400, runtime_cpu=4 * 10**9, app_cpu=10**9 + 1_851_851_851)
    batch = reference.decode([_summary("2024-06-01T00:01:10Z", **later, rx=1_500_000)], t2)
    reference.run_processors(batch, t2)
    points = points_of(batch)

    node, pod = ("node", "n1", None, None, None), ("pod", "n1", "default", "web", None)
    app, sidecar = (
        ("pod_container", "n1", "default", "web", "app"),
        ("pod_container", "n1", "default", "web", "sidecar"),
    )
    runtime, namespace = ("sys_container", "n1", None, None, "docker-daemon"), ("ns", None, "default", None, None)
    cluster = ("cluster", None, None, None, None)

    def at(entity: tuple[Any, ...], metric: str, resource: str | None = None) -> Any:
        return points.get((*entity, metric, resource))

    # rates over 15 s: 3.75e9 ns -> 250 millicores; 1,851,851,851 ns -> 123.45... truncated to 123
    assert at(node, "cpu/usage_rate") == 250
    assert at(app, "cpu/usage_rate") == 123
    assert at(node, "memory/page_faults_rate") == 20.0  # 300 faults in 15 s
    assert at(pod, "network/rx_rate") == 100_000.0
    assert at(runtime, "cpu/usage") == 4 * 10**9 and at(runtime, "cpu/usage_rate") is None  # went down: no rate
    assert at(node, "uptime") == 75_000 and at(node, "filesystem/usage", "/") == 10
    # requests and limits: cpu in millicores (0.1 -> 100), memory in bytes, missing -> 0
    assert (at(app, "cpu/request"), at(app, "memory/request"), at(app, "cpu/limit")) == (250, 64 << 20, 1000)
    assert (at(app, "memory/limit"), at(app, "restart_count")) == (0, 2)
    assert (at(sidecar, "cpu/request"), at(sidecar, "memory/request"), at(sidecar, "restart_count")) == (100, 0, None)
    # aggregation: the pod has no cpu stats of its own, so its rate is its containers'
    assert (at(pod, "cpu/request"), at(pod, "cpu/usage_rate"), at(pod, "memory/usage")) == (350, 123, 300)
    assert (at(namespace, "cpu/request"), at(namespace, "cpu/usage_rate"), at(cluster, "cpu/request")) == (
        350,
        123,
        350,
    )
    assert at(node, "cpu/request") == 350 and at(node, "cpu/usage") == 10**10 + 3_750_000_000
    # autoscaling: 250 / 2000 and 350 / 2000; no ephemeral storage in capacity -> none of its four metrics
    assert (at(node, "cpu/node_utilization"), at(node, "cpu/node_reservation")) == (0.125, 0.175)
    assert at(node, "memory/node_utilization") == 1000 / 4294967296 and at(node, "memory/node_allocatable") == 2.0**32
    assert at(node, "ephemeral_storage/node_capacity") is None
    labels = entity_labels(batch)
    assert labels[app] == {
        "pod_id": "api-uid",
        "hostname": "n1",
        "host_id": "i-123",
        "namespace_id": "ns-uid",
        "container_base_image": "reg/app:1",
        "labels": "a.b/c:x,app:web",
    }
    assert labels[node]["labels"] == "zone:a"


def test_hand_computed_quantities() -> None:
    assert [quantity(q, milli=True) for q in ("250m", "0.1", "2", "1e-3", "1.0001m")] == [250, 100, 2000, 1, 2]
    assert [quantity(q) for q in ("64Mi", "1k", "1.5", "4Gi", "100000000000000000000")] == [
        64 << 20,
        1000,
        2,
        4 << 30,
        None,
    ]
