"""The whole chain on a real node: the v1.28 minikube summary with its own API object lists.

Every expected value below was read by hand from the fixture files (samples/kubelet/*v1.28*).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.labels import LabelCopier
from heapster_columnar.model.points import to_points
from heapster_columnar.processors.base import Frames
from heapster_columnar.processors.chain import Pipeline, ProcessedWindow
from heapster_columnar.sources.summary import decode_summaries
from tests.sinks.windows import fixture_dimensions

MI = 1 << 20
NOW = datetime(2023, 11, 20, tzinfo=UTC)
SUMMARY = "summary-nri-minikube-v1.28-containerd-swap-2023.json"


@pytest.fixture(scope="module")
def dims(kubelet_data: Path) -> Dimensions:
    return fixture_dimensions(kubelet_data)


def run(kubelet_data: Path, dims: Dimensions, labels: LabelCopier | None = None) -> ProcessedWindow:
    batch = decode_summaries([(kubelet_data / SUMMARY).read_bytes()], now=NOW).batch
    return Pipeline.heapster(labels).process(batch, NOW, dims)


def row(frames: Frames, **key: Any) -> dict[str, Any]:
    rows = [r for r in frames.entities.to_dicts() if all(r.get(k) == v for k, v in key.items())]
    assert len(rows) == 1, (key, len(rows))
    return rows[0]


def test_containers_get_requests_limits_image_and_pod_labels(kubelet_data: Path, dims: Dimensions) -> None:
    out = run(kubelet_data, dims)
    assert out.failures == ()
    coredns = row(out.frames, type="pod_container", pod_name="coredns-5dd5756b68-xmx7l")
    assert (coredns["cpu/request"], coredns["memory/request"]) == (100, 70 * MI)
    assert (coredns["cpu/limit"], coredns["memory/limit"]) == (0, 170 * MI)  # unset limit: Heapster's 0
    assert (coredns["ephemeral_storage/request"], coredns["restart_count"]) == (0, 0)
    assert coredns["container_base_image"] == "registry.k8s.io/coredns/coredns:v1.10.1"
    assert coredns["labels"] == "k8s-app:kube-dns,pod-template-hash:5dd5756b68"
    assert coredns["hostname"] == "datagen-1-28"
    assert coredns["namespace_id"] == "0499e5b4-5bd0-444a-85e5-2ec64140f7ae"


def test_static_pods_join_on_name_and_take_the_api_uid(kubelet_data: Path, dims: Dimensions) -> None:
    out = run(kubelet_data, dims)
    etcd = row(out.frames, type="pod", pod_name="etcd-datagen-1-28")
    assert etcd["pod_id"].startswith("c00d51a8")  # the mirror pod's UID, not the kubelet's 1ef4c692…
    assert etcd["labels"] == "component:etcd,tier:control-plane"


def test_label_rendering_is_a_bytewise_sort(kubelet_data: Path, dims: Dimensions) -> None:
    out = run(
        kubelet_data, dims, LabelCopier(separator=";", ignore=["helm.sh/chart"], store=["team=app.kubernetes.io/name"])
    )
    ksm = row(out.frames, type="pod", pod_name="e2e-kube-state-metrics-86f7c9c6bb-crhql")
    assert ksm["labels"] == (
        "app.kubernetes.io/component:metrics;app.kubernetes.io/instance:e2e;app.kubernetes.io/managed-by:Helm;"
        "app.kubernetes.io/name:kube-state-metrics;app.kubernetes.io/part-of:kube-state-metrics;"
        "app.kubernetes.io/version:2.10.0;pod-template-hash:86f7c9c6bb"
    )
    assert ksm["team"] == "kube-state-metrics"


def test_sums_by_hand(kubelet_data: Path, dims: Dimensions) -> None:
    out = run(kubelet_data, dims)
    sts = row(out.frames, type="pod", pod_name="e2e-statefulset-0")
    assert (sts["cpu/request"], sts["cpu/limit"], sts["memory/request"]) == (40, 80, 15 * MI)
    # scraper pods with stats: 2 statefulset + daemonset + 2 deployment + cronjob = 6 x 40m, hpa 200m
    assert row(out.frames, type="ns", namespace_name="scraper")["cpu/request"] == 440
    # kube-system: scheduler 100 + controller-manager 200 + apiserver 250 + etcd 100 + kindnet 100
    # + metrics-server 100 + coredns 100 (kube-proxy and storage-provisioner request nothing)
    assert row(out.frames, type="ns", namespace_name="kube-system")["cpu/request"] == 950
    assert row(out.frames, type="cluster")["cpu/request"] == 1390
    node = row(out.frames, type="node", nodename="datagen-1-28")
    assert node["cpu/request"] == 1390
    assert node["cpu/node_allocatable"] == 6000.0
    assert node["cpu/node_reservation"] == pytest.approx(1390 / 6000)
    assert node["cpu/node_utilization"] == 0.0  # first window: no rate yet, read as 0 like Heapster
    summary = json.loads((kubelet_data / SUMMARY).read_text())
    memory_usage = summary["node"]["memory"]["usageBytes"]
    assert node["memory/node_utilization"] == pytest.approx(memory_usage / (8039664 * 1024))
    assert node["ephemeral_storage/node_capacity"] == 61255492 * 1024.0


def test_api_only_pods_get_no_rows_and_points_carry_the_labels(kubelet_data: Path, dims: Dimensions) -> None:
    out = run(kubelet_data, dims)
    names = set(out.frames.entities["pod_name"].drop_nulls().to_list())
    assert "e2e-container-pending" not in names and "e2e-failjob-9glzd" not in names  # no stats: Heapster skips
    types = out.frames.entities["type"].value_counts().sort("type").rows()
    # every spec container of the 18 pods is reported: no placeholders; 2 namespaces and the cluster added
    assert types == [("cluster", 1), ("node", 1), ("ns", 2), ("pod", 18), ("pod_container", 23), ("sys_container", 2)]
    points = to_points(out.to_batch(), NOW)
    mine = points.filter(pc.equal(points["pod_name"].cast(pa.string()), "coredns-5dd5756b68-xmx7l")).to_pylist()
    request = [p for p in mine if p["metric"] == "cpu/request" and p["type"] == "pod_container"]
    assert len(request) == 1 and request[0]["value_int"] == 100 and request[0]["namespace_id"].startswith("0499e5b4")
