"""Pod and namespace enrichers on hand-made windows: stubs, unknown pods, extended resources."""

from __future__ import annotations

from typing import Any

from window_rows import make_frames, row_of

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.processors.enrich import NamespaceEnricher, PodEnricher
from heapster_columnar.sources.objects import namespaces_table, nodes_table, pods_tables


def pod(
    ns: str, name: str, uid: str, *containers: dict[str, Any], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "uid": uid, "labels": labels or {}},
        "spec": {"nodeName": "n1", "containers": list(containers)},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": c["name"], "restartCount": 3} for c in containers],
        },
    }


def container(name: str, **requests: str) -> dict[str, Any]:
    return {"name": name, "image": f"img/{name}:1", "resources": {"requests": requests}}


def dims() -> Dimensions:
    pods, containers = pods_tables(
        [
            pod(
                "a",
                "web",
                "uid-web",
                container("app", cpu="250m"),
                container("sidecar", memory="1Ki"),
                labels={"app": "web"},
            ),
            pod("a", "gpu", "uid-gpu", container("train", **{"cpu": "2", "nvidia.com/gpu": "1"})),
        ]
    )
    namespaces = namespaces_table([{"metadata": {"name": "a", "uid": "uid-ns-a"}}])
    nodes = nodes_table(
        [{"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "Hostname", "address": "host-1"}]}}]
    )
    return Dimensions(pods, containers, namespaces, nodes)


def c(ns: str, pod_name: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "pod_container",
        "nodename": "n1",
        "namespace_name": ns,
        "pod_name": pod_name,
        "container_name": name,
        **extra,
    }


def test_container_stubs_for_spec_containers_the_kubelet_did_not_report() -> None:
    frames = make_frames(
        [
            {"type": "pod", "nodename": "n1", "namespace_name": "a", "pod_name": "web", "pod_id": "k-uid"},
            c("a", "web", "app"),
        ]
    )
    out = PodEnricher().process(frames, dims())
    assert out.entities.height == 3
    stub = row_of(out, type="pod_container", container_name="sidecar")
    assert (stub["memory/request"], stub["cpu/request"], stub["cpu/limit"]) == (1024, 0, 0)
    assert (stub["nodename"], stub["pod_id"], stub["labels"]) == ("n1", "uid-web", "app:web")
    app = row_of(out, type="pod_container", container_name="app")
    assert (app["cpu/request"], app["restart_count"], app["container_base_image"]) == (250, 3, "img/app:1")
    assert row_of(out, type="pod")["pod_id"] == "uid-web"  # the API UID wins over the kubelet's


def test_pod_stub_for_containers_without_their_pod_row() -> None:
    out = PodEnricher().process(make_frames([c("a", "gpu", "train")]), dims())
    stub = row_of(out, type="pod", pod_name="gpu")
    assert (stub["nodename"], stub["hostname"], stub["pod_id"]) == ("n1", "host-1", "uid-gpu")
    train = row_of(out, type="pod_container", container_name="train")
    assert (train["cpu/request"], train["nvidia.com/gpu/request"]) == (2000, 1)


def test_unknown_pods_are_left_as_the_kubelet_reported_them() -> None:
    out = PodEnricher().process(make_frames([c("b", "ghost", "x", pod_id="k-1")]), dims())
    ghost = row_of(out, container_name="x")
    assert (ghost["pod_id"], ghost["cpu/request"], ghost["labels"], ghost["container_base_image"]) == (
        "k-1",
        None,
        None,
        None,
    )
    assert out.entities.height == 1


def test_namespace_ids() -> None:
    rows = [c("a", "web", "app"), c("b", "ghost", "x"), {"type": "node", "nodename": "n1", "namespace_name": None}]
    out = NamespaceEnricher().process(make_frames(rows), dims())
    assert out.entities["namespace_id"].to_list() == ["uid-ns-a", None, None]
