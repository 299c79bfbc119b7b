"""API objects → dimension tables, on the real object lists with values read off the files by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from kubernetes.client import (
    ApiClient,
    V1Container,
    V1ObjectMeta,
    V1OwnerReference,
    V1Pod,
    V1PodSpec,
    V1PodStatus,
    V1ResourceRequirements,
)

from heapster_columnar.errors import PayloadError
from heapster_columnar.model.dimensions import CONTAINERS_SCHEMA, NAMESPACES_SCHEMA, NODES_SCHEMA, PODS_SCHEMA
from heapster_columnar.simulator.objects import pod_objects
from heapster_columnar.simulator.payloads import NodeShape, summary_document
from heapster_columnar.sources.objects import namespaces_table, nodes_table, pods_tables

MI, KI = 1 << 20, 1 << 10


def items(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    loaded: dict[str, list[dict[str, Any]]] = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return loaded["items"]


def rows(table: pa.Table, key: str = "name") -> dict[Any, dict[str, Any]]:
    out = {}
    for row in table.to_pylist():
        assert row[key] not in out, f"duplicate {row[key]}"
        out[row[key]] = row
    return out


def containers_by_name(containers: pa.Table) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["pod_name"], r["name"]): r for r in containers.to_pylist()}


def check_schemas(pods: pa.Table, containers: pa.Table) -> None:
    assert pods.schema.equals(PODS_SCHEMA, check_metadata=True)
    assert containers.schema.equals(CONTAINERS_SCHEMA, check_metadata=True)


def test_minikube_pod_list(kubelet_data: Path) -> None:
    pods, containers = pods_tables(items(kubelet_data / "list-pods-nri-minikube-v1.28-2023.yaml"))
    check_schemas(pods, containers)
    assert (pods.num_rows, containers.num_rows) == (24, 29)
    by_pod = rows(pods)
    coredns = by_pod["coredns-5dd5756b68-xmx7l"]
    assert coredns["namespace"] == "kube-system"
    assert coredns["uid"] == "f60cfe75-0d1f-4879-8644-7d832f6695c6"
    assert (coredns["node_name"], coredns["phase"]) == ("datagen-1-28", "Running")
    assert coredns["start_time"] == datetime(2023, 11, 10, 6, 18, 55, tzinfo=UTC)
    assert dict(coredns["labels"]) == {"k8s-app": "kube-dns", "pod-template-hash": "5dd5756b68"}
    pending = by_pod["e2e-container-pending"]
    assert (pending["node_name"], pending["phase"], pending["start_time"]) == (None, "Pending", None)

    c = containers_by_name(containers)
    dns = c["coredns-5dd5756b68-xmx7l", "coredns"]
    assert dns["image"] == "registry.k8s.io/coredns/coredns:v1.10.1"
    assert (dns["cpu_request"], dns["memory_request"], dns["ephemeral_storage_request"]) == (100, 70 * MI, None)
    assert (dns["cpu_limit"], dns["memory_limit"], dns["restart_count"]) == (None, 170 * MI, 0)
    assert dns["other_requests"] == []
    creating = c["e2e-container-creating", "alpine"]
    assert creating["restart_count"] == 2
    assert (creating["cpu_request"], creating["memory_request"]) == (5, 5_000_000)  # "5M" is decimal
    assert (creating["cpu_limit"], creating["memory_limit"]) == (5, 5_000_000)
    assert c["e2e-container-pending", "alpine"]["restart_count"] is None  # no container statuses yet
    proxy = c["kube-proxy-2c7rb", "kube-proxy"]  # resources: {}
    assert [proxy[k] for k in ("cpu_request", "memory_request", "cpu_limit", "memory_limit")] == [None] * 4
    # a two-container pod keeps spec order
    assert [r["name"] for r in containers.to_pylist() if r["pod_name"] == "e2e-statefulset-0"] == [
        "compute-pi-digits",
        "failing-container",
    ]
    assert c["e2e-statefulset-0", "compute-pi-digits"]["cpu_limit"] == 80


def test_honeycomb_pod_list(kubelet_data: Path) -> None:
    pods, containers = pods_tables(items(kubelet_data / "list-pods-honeycomb-baremetal-2020.json"))
    check_schemas(pods, containers)
    assert pods.num_rows == 11
    c = containers_by_name(containers)
    speaker = c["speaker-cpxhz", "speaker"]
    assert (speaker["restart_count"], speaker["cpu_request"], speaker["memory_limit"]) == (54, 100, 100 * MI)
    # statuses come in another order than the spec: matched by name
    assert c["grafana-7db5dff8ff-vwrnf", "grafana-sc-dashboard"]["restart_count"] == 18
    assert [r["name"] for r in containers.to_pylist() if r["pod_name"] == "grafana-7db5dff8ff-vwrnf"] == [
        "grafana-sc-dashboard",
        "grafana",
    ]
    # calico-node has three init containers: not reported (Heapster)
    assert [r["name"] for r in containers.to_pylist() if r["pod_name"] == "calico-node-h2bjp"] == ["calico-node"]
    assert c["calico-node-h2bjp", "calico-node"]["cpu_request"] == 250
    owners = {r["name"]: (r["owner_kind"], r["owner_name"]) for r in pods.to_pylist()}
    assert owners["speaker-cpxhz"] == ("DaemonSet", "speaker")
    assert owners["grafana-7db5dff8ff-vwrnf"] == ("ReplicaSet", "grafana-7db5dff8ff")


def test_the_owner_is_the_controller_reference_else_the_first() -> None:
    def pod(name: str, owners: list[dict[str, Any]] | None) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "n", "ownerReferences": owners}}

    pods, _ = pods_tables(
        [
            pod(
                "a",
                [{"kind": "Node", "name": "n1"}, {"kind": "ReplicaSet", "name": "web-7d4b9c", "controller": True}],
            ),
            pod("b", None),
            pod("c", [{"kind": "Node", "name": "n1"}, {"kind": "Job", "name": "j", "controller": False}]),
            pod("d", []),
        ]
    )
    got = [(r["owner_kind"], r["owner_name"]) for r in pods.to_pylist()]
    assert got == [("ReplicaSet", "web-7d4b9c"), (None, None), ("Node", "n1"), (None, None)]


def test_kubelet_pods_endpoint(kubelet_data: Path) -> None:
    pods, containers = pods_tables(items(kubelet_data / "kubelet-pods-nri-minikube-v1.28-2023.json"))
    check_schemas(pods, containers)
    assert pods.num_rows == 23
    assert rows(pods)["e2e-failjob-m4xql"]["phase"] == "Failed"
    assert containers_by_name(containers)["kube-apiserver-datagen-1-28", "kube-apiserver"]["cpu_request"] == 250


def test_minikube_node(kubelet_data: Path) -> None:
    nodes = nodes_table(items(kubelet_data / "list-nodes-nri-minikube-v1.28-2023.yaml"))
    assert nodes.schema.equals(NODES_SCHEMA, check_metadata=True)
    node = rows(nodes)["datagen-1-28"]
    assert node["uid"] == "be36d1b8-7c62-437a-9a02-8a70fe647ed3"
    assert (node["hostname"], node["address"], node["kubelet_port"]) == ("datagen-1-28", "192.168.49.2", 10250)
    assert (node["ready"], node["unschedulable"], node["host_id"]) == (True, False, None)
    assert (node["capacity_cpu"], node["allocatable_cpu"]) == (6000, 6000)
    assert node["capacity_memory"] == 8039664 * KI
    assert node["allocatable_ephemeral_storage"] == 61255492 * KI
    assert dict(node["labels"])["kubernetes.io/arch"] == "arm64"


def test_eks_nodes(kubelet_data: Path) -> None:
    nodes = rows(nodes_table(items(kubelet_data / "list-nodes-honeycomb-eks-arm64-2022.json")))
    assert list(nodes) == ["duckboat-01", "duckboat-02"]
    node = nodes["duckboat-01"]
    assert node["hostname"] == "ip-10-9-150-105.ec2.internal"  # the Hostname address, not the object name
    assert (node["capacity_cpu"], node["allocatable_cpu"]) == (8000, 7910)
    assert (node["capacity_memory"], node["allocatable_memory"]) == (32144656 * KI, 31127824 * KI)
    assert node["allocatable_ephemeral_storage"] == 122601479578  # plain bytes, no suffix


def test_namespaces(kubelet_data: Path) -> None:
    table = namespaces_table(items(kubelet_data / "list-namespaces-nri-minikube-v1.28-2023.yaml"))
    assert table.schema.equals(NAMESPACES_SCHEMA, check_metadata=True)
    namespaces = rows(table)
    assert list(namespaces) == ["default", "kube-node-lease", "kube-public", "kube-system", "scraper"]
    assert namespaces["kube-system"]["uid"] == "0499e5b4-5bd0-444a-85e5-2ec64140f7ae"
    assert dict(namespaces["scraper"]["labels"])["kubernetes.io/metadata.name"] == "scraper"


def pod(name: str = "p", **parts: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, **parts}


def test_odd_pods() -> None:
    resources = {
        "requests": {
            "cpu": "0.1",
            "memory": "1.5Gi",
            "ephemeral-storage": "1e3",
            "nvidia.com/gpu": "2",
            "hugepages-2Mi": "20Mi",
            "example.com/dongle": "1m",
        },
        "limits": {"cpu": "2", "nvidia.com/gpu": "2", "memory": "1E"},
    }
    objects = [
        pod("no-status", spec={"containers": [{"name": "a", "image": "x", "resources": resources}]}),
        pod("no-resources", spec={"containers": [{"name": "b"}]}, status={"phase": "Running"}),
        pod("no-spec"),
        pod(
            "statuses",
            spec={"containers": [{"name": "c"}, {"name": "d"}, {"name": "e"}]},
            status={
                "containerStatuses": [
                    {"name": "d", "restartCount": 4},
                    {"name": "c", "restartCount": 1},
                    {"name": "d", "restartCount": 9},  # repeated: the first one counts
                    {"name": "zzz", "restartCount": 7},
                ],
                "startTime": "2024-01-01T00:00:00.123456Z",
            },
            unknown={"ignored": True},
        ),
    ]
    pods, containers = pods_tables(objects)
    check_schemas(pods, containers)
    assert pods.column("phase").to_pylist() == [None, "Running", None, None]
    assert pods.column("start_time").to_pylist()[3] == datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    c = containers.to_pylist()
    assert [(r["pod_name"], r["name"], r["restart_count"]) for r in c] == [
        ("no-status", "a", None),
        ("no-resources", "b", None),
        ("statuses", "c", 1),
        ("statuses", "d", 4),
        ("statuses", "e", None),
    ]
    a = c[0]
    assert (a["cpu_request"], a["memory_request"], a["ephemeral_storage_request"]) == (100, 1536 * MI, 1000)
    assert (a["cpu_limit"], a["memory_limit"], a["ephemeral_storage_limit"]) == (2000, 10**18, None)
    assert dict(a["other_requests"]) == {"nvidia.com/gpu": 2, "hugepages-2Mi": 20 * MI, "example.com/dongle": 1}
    assert c[1]["other_requests"] == [] and c[1]["cpu_request"] is None


def test_kubernetes_client_objects() -> None:
    """What ``ApiClient.sanitize_for_serialization`` gives: camelCase keys, ISO times with +00:00."""
    obj = V1Pod(
        metadata=V1ObjectMeta(
            name="web-1",
            namespace="shop",
            uid="u-1",
            labels={"app": "web"},
            owner_references=[
                V1OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="web-5d8f", uid="r", controller=True)
            ],
        ),
        spec=V1PodSpec(
            node_name="node-1",
            containers=[
                V1Container(name="web", image="nginx", resources=V1ResourceRequirements(requests={"cpu": "1"}))
            ],
        ),
        status=V1PodStatus(phase="Running", start_time=datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
    )
    pods, containers = pods_tables([ApiClient().sanitize_for_serialization(obj)])
    assert pods.to_pylist() == [
        {
            "namespace": "shop",
            "name": "web-1",
            "uid": "u-1",
            "node_name": "node-1",
            "phase": "Running",
            "start_time": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            "labels": [("app", "web")],
            "owner_kind": "ReplicaSet",
            "owner_name": "web-5d8f",
        }
    ]
    assert containers.column("cpu_request").to_pylist() == [1000]


def test_simulated_pods_convert() -> None:
    document = summary_document(3, at=datetime(2024, 1, 1, tzinfo=UTC), shape=NodeShape(pods_per_node=12))
    objects = pod_objects(document, seed=0, index=3)
    pods, containers = pods_tables(objects)
    assert pods.num_rows == 12
    assert containers.num_rows == sum(len(p["spec"]["containers"]) for p in objects)
    first = objects[0]["spec"]["containers"][0]["resources"]["requests"]
    assert containers.column("cpu_request")[0].as_py() == int(first["cpu"].removesuffix("m"))
    assert containers.column("memory_request")[0].as_py() == int(first["memory"].removesuffix("Mi")) * MI


def node(name: str = "n", **parts: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, **parts}


def test_odd_nodes() -> None:
    objects = [
        node("bare"),
        node(
            "busy",
            spec={"externalID": "i-123", "unschedulable": True},
            status={
                "addresses": [
                    {"type": "Hostname", "address": "first"},
                    {"type": "InternalIP", "address": ""},
                    {"type": "InternalIP", "address": "10.0.0.1"},
                    {"type": "InternalIP", "address": "fd00::1"},
                    {"type": "Hostname", "address": "last"},
                    {"type": "Hostname", "address": ""},
                ],
                "conditions": [{"type": "MemoryPressure", "status": "True"}, {"type": "Ready", "status": "Unknown"}],
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                "allocatable": {"cpu": "63500m"},
            },
        ),
        node("empty-id", spec={"externalID": ""}, status={"addresses": [], "conditions": []}),
    ]
    nodes = rows(nodes_table(objects))
    bare = nodes["bare"]
    assert (bare["hostname"], bare["address"], bare["ready"], bare["unschedulable"]) == ("bare", None, None, False)
    assert (bare["kubelet_port"], bare["capacity_cpu"], bare["allocatable_memory"]) == (None, None, None)
    busy = nodes["busy"]
    assert (busy["hostname"], busy["address"]) == ("last", "10.0.0.1")
    assert (busy["host_id"], busy["unschedulable"], busy["ready"]) == ("i-123", True, False)
    assert (busy["capacity_cpu"], busy["capacity_memory"], busy["allocatable_cpu"]) == (64000, 256 << 30, 63500)
    assert busy["capacity_ephemeral_storage"] is None
    assert nodes["empty-id"]["host_id"] is None


def test_empty_lists_give_empty_tables_of_the_right_schema() -> None:
    pods, containers = pods_tables([])
    check_schemas(pods, containers)
    assert (pods.num_rows, containers.num_rows) == (0, 0)
    assert nodes_table([]).schema.equals(NODES_SCHEMA, check_metadata=True)
    assert namespaces_table(()).schema.equals(NAMESPACES_SCHEMA, check_metadata=True)
    # pods without containers give no container rows
    assert pods_tables([pod(spec={"containers": []})])[1].num_rows == 0


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ([{"metadata": {"namespace": "ns"}}], "pods: item 0 has no metadata.name"),
        ([pod(), {"metadata": {"name": "x"}}], "pods: item 1 has no metadata.namespace"),
        ([pod(spec={"containers": [{"image": "x"}]})], "pods: ns/p: a container has no name"),
        (
            [
                pod("ok"),
                pod(spec={"containers": [{"name": "a"}, {"name": "b", "resources": {"limits": {"cpu": "x"}}}]}),
            ],
            r"pods: ns/p: container b: limits\['cpu'\]: invalid quantity 'x'",
        ),
        ([pod(status={"startTime": "yesterday"})], "pods: ns/p: status.startTime 'yesterday' is not an RFC 3339"),
        ([pod(spec={"containers": [{"name": "a", "resources": {"requests": {"cpu": 2}}}]})], "pods: not pods objects"),
        (["not a pod"], "pods: not pods objects"),
    ],
)
def test_bad_pods_raise_payload_errors_naming_the_object(objects: list[Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        pods_tables(objects)


def test_bad_nodes_raise_payload_errors() -> None:
    with pytest.raises(PayloadError, match=r"nodes: n: status.allocatable\['memory'\]: invalid quantity '1 GB'"):
        nodes_table([node(status={"allocatable": {"memory": "1 GB"}})])
    with pytest.raises(PayloadError, match=r"namespaces: item 0 has no metadata\.name"):
        namespaces_table([{"metadata": {"uid": "x"}}])


def test_address_is_an_internal_ip_else_an_external_one() -> None:
    """Heapster's choice: the first InternalIP that parses as an IP, else the first such ExternalIP."""

    def addresses(*pairs: tuple[str, str]) -> dict[str, Any]:
        return {"addresses": [{"type": kind, "address": address} for kind, address in pairs]}

    objects = [
        node("v6", status=addresses(("ExternalIP", "203.0.113.9"), ("InternalIP", "fd00::1"))),
        node("dns-name", status=addresses(("InternalIP", "node-7.internal"), ("ExternalIP", "203.0.113.7"))),
        node("external", status=addresses(("Hostname", "h"), ("ExternalIP", "nope"), ("ExternalIP", "198.51.100.1"))),
        node("none", status=addresses(("Hostname", "h"), ("InternalDNS", "10.0.0.9"))),
    ]
    got = {name: row["address"] for name, row in rows(nodes_table(objects)).items()}
    assert got == {"v6": "fd00::1", "dns-name": "203.0.113.7", "external": "198.51.100.1", "none": None}


def test_host_id_from_the_annotation_only_where_external_id_is_empty() -> None:
    key = "example.com/host-id"
    objects = [
        {"metadata": {"name": "a", "annotations": {key: "host-a"}}, "spec": {"externalID": ""}},
        {"metadata": {"name": "b", "annotations": {key: "host-b"}}, "spec": {"externalID": "i-b"}},
        {"metadata": {"name": "c", "annotations": {"other": "x"}}},
        {"metadata": {"name": "d"}},
    ]
    with_option = {n: r["host_id"] for n, r in rows(nodes_table(objects, host_id_annotation=key)).items()}
    assert with_option == {"a": "host-a", "b": "i-b", "c": None, "d": None}
    without = {n: r["host_id"] for n, r in rows(nodes_table(objects)).items()}
    assert without == {"a": None, "b": "i-b", "c": None, "d": None}
