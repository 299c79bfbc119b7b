"""Aggregators against sums computed by hand (HEAPSTER.md §5.4 to §5.7)."""

from __future__ import annotations

from window_rows import make_frames, row_of

from heapster_columnar.processors.aggregate import (
    ClusterAggregator,
    NamespaceAggregator,
    NodeAggregator,
    PodAggregator,
)
from heapster_columnar.processors.base import Frames


def c(ns: str, pod: str, name: str, node: str = "n1", **metrics: int) -> dict[str, object]:
    return {
        "type": "pod_container",
        "nodename": node,
        "namespace_name": ns,
        "pod_name": pod,
        "container_name": name,
        **metrics,
    }


def p(ns: str, pod: str, node: str = "n1", **metrics: int) -> dict[str, object]:
    return {"type": "pod", "nodename": node, "namespace_name": ns, "pod_name": pod, **metrics}


ROWS = [
    {"type": "node", "nodename": "n1", "memory/usage": 5000},
    {"type": "sys_container", "nodename": "n1", "container_name": "kubelet", "memory/usage": 300},
    p("a", "p1", **{"memory/usage": 100}),  # the kubelet reported the pod's memory: kept
    c("a", "p1", "c1", **{"cpu/request": 100, "memory/request": 10, "cpu/usage_rate": 5, "memory/usage": 30}),
    c("a", "p1", "c2", **{"cpu/request": 50, "cpu/usage_rate": 7, "memory/usage": 40, "cpu/usage": 99}),
    p("b", "p2", node="n2"),  # node n2 is not in the window: nothing to add into
    c("b", "p2", "c3", node="n2", **{"cpu/request": 200, "cpu/limit": 400}),
    c("a", "p3", "c4", **{"cpu/request": 25, "memory/limit": 64}),  # no pod row: the aggregator creates it
]


def run(frames: Frames, *stages: object) -> Frames:
    for stage in stages:
        frames = stage.process(frames, None)  # type: ignore[attr-defined]
    return frames


def test_pod_sums_containers_but_never_overwrites_kubelet_values() -> None:
    out = run(make_frames(ROWS), PodAggregator())
    p1 = row_of(out, type="pod", pod_name="p1")
    assert p1["memory/usage"] == 100  # not 30 + 40
    assert p1["cpu/usage_rate"] == 12
    assert p1["cpu/request"] == 150
    assert p1["memory/request"] == 10  # c2 has none: the sum of what exists
    assert p1["cpu/limit"] is None  # no container has one: no value, not 0
    assert p1["cpu/usage"] is None  # counters are not summed (Heapster skips cumulative metrics)


def test_pod_aggregator_creates_missing_pods_with_their_node() -> None:
    out = run(make_frames(ROWS), PodAggregator())
    p3 = row_of(out, type="pod", pod_name="p3")
    assert (p3["nodename"], p3["cpu/request"], p3["memory/limit"]) == ("n1", 25, 64)
    assert out.entities.height == len(ROWS) + 1
    assert out.entities.head(len(ROWS))["type"].to_list() == [r["type"] for r in ROWS]  # rows kept in place


def test_namespace_node_and_cluster_sums() -> None:
    out = run(make_frames(ROWS), PodAggregator(), NamespaceAggregator(), NodeAggregator(), ClusterAggregator())
    a = row_of(out, type="ns", namespace_name="a")
    assert (a["cpu/request"], a["cpu/usage_rate"], a["memory/usage"], a["memory/limit"]) == (175, 12, 100, 64)
    b = row_of(out, type="ns", namespace_name="b")
    assert (b["cpu/request"], b["cpu/limit"], b["memory/usage"]) == (200, 400, None)
    n1 = row_of(out, type="node", nodename="n1")
    assert (n1["cpu/request"], n1["memory/request"], n1["memory/limit"]) == (175, 10, 64)
    assert n1["memory/usage"] == 5000  # usage stays the kubelet's node value
    assert [r for r in out.entities.to_dicts() if r["type"] == "node" and r["nodename"] == "n2"] == []
    cluster = row_of(out, type="cluster")
    assert (cluster["cpu/request"], cluster["cpu/limit"], cluster["memory/usage"]) == (375, 400, 100)
    assert cluster["ephemeral_storage/request"] is None if "ephemeral_storage/request" in cluster else True


def test_cluster_row_exists_for_an_empty_window() -> None:
    out = run(make_frames([]), PodAggregator(), NamespaceAggregator(), NodeAggregator(), ClusterAggregator())
    assert out.entities["type"].to_list() == ["cluster"]


def test_custom_metrics_of_containers_sum_into_pods() -> None:
    rows = [p("a", "p1"), c("a", "p1", "c1"), c("a", "p1", "c2"), p("a", "p2"), c("a", "p2", "c3")]
    labeled = [
        {"entity": 1, "metric": "custom/qps", "value": 1.5},
        {"entity": 2, "metric": "custom/qps", "value": 2.0},
        {"entity": 4, "metric": "custom/qps", "value": 3.0},
        {"entity": 3, "metric": "custom/qps", "value": 10.0},  # p2 reports its own: kept
    ]
    out = run(make_frames(rows, labeled=labeled), PodAggregator())
    got = sorted((r["entity"], r["metric"], r["value"]) for r in out.labeled.to_pylist())
    assert got == [
        (0, "custom/qps", 3.5),
        (1, "custom/qps", 1.5),
        (2, "custom/qps", 2.0),
        (3, "custom/qps", 10.0),
        (4, "custom/qps", 3.0),
    ]
