"""Kubernetes Node, Pod and Namespace objects that agree with the simulated kubelets.

Pods are read off the node's own Summary document (names, UIDs, namespaces, containers, start
times), so the API server and the kubelets can never disagree. Requests are set from each
container's usage divided by a per-workload utilization factor (some workloads over-request, some
under-request), which is what right-sizing analyses look for.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from heapster_columnar.simulator.payloads import DAEMONSETS, NodeShape
from heapster_columnar.simulator.spec import kubelet_ip, node_name

ZONES = ("zone-a", "zone-b", "zone-c")
KUBELET_VERSION = "v1.30.0"
RUNTIME = "containerd://1.7.13"
MIB = 1 << 20


@lru_cache(maxsize=100_000)  # owner references repeat across every node of a workload
def _uid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "heapster-columnar/" + "/".join(map(str, parts))))


def _fraction(seed: int, key: str, lo: float, hi: float) -> float:
    """A stable pseudo-random number in [lo, hi) for a workload, independent of node and time."""
    digest = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=8).digest()
    return lo + (hi - lo) * int.from_bytes(digest, "big") / 2**64


@lru_cache(maxsize=4096)  # one entry per workload, asked once per pod
def utilization(seed: int, namespace: str, app: str) -> tuple[float, float]:
    """(cpu, memory) usage / request of a workload: 0.1 (wasteful) .. 1.4 (under-requested)."""
    key = f"{namespace}/{app}"
    return _fraction(seed, key + "/cpu", 0.1, 1.4), _fraction(seed, key + "/memory", 0.3, 1.2)


def node_object(index: int, *, shape: NodeShape, port: int, ready: bool, created: datetime) -> dict[str, Any]:
    name = node_name(index)
    cores, memory, disk = shape.node_cores, shape.node_memory_bytes, shape.node_disk_bytes
    capacity = {
        "cpu": str(cores),
        "memory": f"{memory // 1024}Ki",
        "ephemeral-storage": f"{disk // 1024}Ki",
        "pods": "110",
    }
    allocatable = {
        "cpu": f"{cores * 1000 - 80 - 10 * cores}m",
        "memory": f"{(memory - memory // 20) // 1024}Ki",
        "ephemeral-storage": str(disk - disk // 10),
        "pods": "110",
    }
    stamp = created.isoformat().replace("+00:00", "Z")
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
        "reason": "KubeletReady" if ready else "KubeletNotReady",
        "message": "kubelet is posting ready status" if ready else "simulated NotReady",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": _uid("node", shape.seed, index),
            "creationTimestamp": stamp,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": f"sim.{cores}xlarge",
                "topology.kubernetes.io/zone": ZONES[index % len(ZONES)],
            },
        },
        "spec": {"providerID": f"sim://{name}", "podCIDR": f"10.{index >> 8 & 255}.{index & 255}.0/24"},
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [condition],
            "addresses": [{"type": "InternalIP", "address": kubelet_ip(index)}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "containerRuntimeVersion": RUNTIME,
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "Simulated Linux",
                "kernelVersion": "6.1.0",
                "kubeProxyVersion": KUBELET_VERSION,
                "machineID": "",
                "systemUUID": _uid("system", index),
                "bootID": _uid("boot", index),
            },
        },
    }


def _owner(pod_name: str, namespace: str, seed: int) -> tuple[str, dict[str, Any]]:
    """(app, ownerReference): ReplicaSet `<app>-<hash>` for deployments, DaemonSet `<app>` otherwise."""
    prefix = pod_name.rsplit("-", 1)[0]
    if (namespace, prefix) in DAEMONSETS:
        app, owner_kind, owner_name = prefix, "DaemonSet", prefix
    else:
        owner_name = prefix
        app, owner_kind = prefix.rsplit("-", 1)[0], "ReplicaSet"
    ref = {
        "apiVersion": "apps/v1",
        "kind": owner_kind,
        "name": owner_name,
        "uid": _uid(owner_kind, seed, namespace, owner_name),
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return app, ref


def _quantity_cpu(nanocores: float) -> str:
    return f"{max(1, round(nanocores / 1e6))}m"


def _quantity_memory(num_bytes: float) -> str:
    return f"{max(1, round(num_bytes / MIB))}Mi"


def pod_objects(summary: dict[str, Any], *, seed: int, index: int) -> list[dict[str, Any]]:
    """The API's Pod objects for the pods in one node's Summary document (setup path only)."""
    pods: list[dict[str, Any]] = []
    for p in summary.get("pods") or []:
        ref = p["podRef"]
        namespace, name = ref["namespace"], ref["name"]
        app, owner = _owner(name, namespace, seed)
        cpu_f, mem_f = utilization(seed, namespace, app)
        containers, statuses = [], []
        for k, c in enumerate(p["containers"]):
            usage_cpu = c["cpu"].get("usageNanoCores", 0)
            usage_mem = c["memory"].get("workingSetBytes", 0)
            requests = {"cpu": _quantity_cpu(usage_cpu / cpu_f), "memory": _quantity_memory(usage_mem / mem_f)}
            resources: dict[str, Any] = {"requests": requests}
            if k == 0 and mem_f > 0.6:  # main containers of some workloads also set limits
                resources["limits"] = {
                    "cpu": _quantity_cpu(2 * usage_cpu / cpu_f),
                    "memory": _quantity_memory(2 * usage_mem / mem_f),
                }
            image = f"registry.example/{app}:1.{k}" if k == 0 else f"registry.example/{c['name']}:2.0"
            containers.append({"name": c["name"], "image": image, "resources": resources})
            statuses.append(
                {
                    "name": c["name"],
                    "image": image,
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "containerID": f"containerd://{ref['uid'].replace('-', '')}{k:032x}",
                    "state": {"running": {"startedAt": c["startTime"]}},
                }
            )
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": ref["uid"],
                    "creationTimestamp": p["startTime"],
                    "labels": {
                        "app": app,
                        "app.kubernetes.io/name": app,
                        "tier": "system" if owner["kind"] == "DaemonSet" else "workload",
                    },
                    "ownerReferences": [owner],
                },
                "spec": {"nodeName": node_name(index), "containers": containers, "restartPolicy": "Always"},
                "status": {
                    "phase": "Running",
                    "podIP": f"10.{index >> 8 & 255}.{index & 255}.{len(pods) + 2}",
                    "hostIP": kubelet_ip(index),
                    "startTime": p["startTime"],
                    "containerStatuses": statuses,
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    return pods


def namespace_object(name: str, *, seed: int) -> dict[str, Any]:
    created = datetime(2023, 1, 1, tzinfo=UTC).isoformat().replace("+00:00", "Z")
    labels = {"kubernetes.io/metadata.name": name, "team": name.split("-")[0]}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "uid": _uid("ns", seed, name), "creationTimestamp": created, "labels": labels},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }
