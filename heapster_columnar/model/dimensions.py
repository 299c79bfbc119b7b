"""Dimension tables: what the Kubernetes API says about pods, containers, namespaces and nodes.

The enrichers join a window's entity rows against these (HEAPSTER.md §5.2, §5.3, §5.8), the
collector builds them from list+watch, and the Parquet sink writes them beside the points so a
notebook can join them too. Quantities are already parsed into Heapster's units (CPU in
millicores, everything else in whole units, both rounded up as Kubernetes' ``MilliValue`` /
``Value`` do); a null means "not set on the object", which the enricher turns into Heapster's 0.
Labels stay raw (``map<string, string>``): rendering them is the label copier's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from heapster_columnar.model.schema import TIME

LABELS_TYPE = pa.map_(pa.string(), pa.string())

PODS_SCHEMA = pa.schema(
    [
        pa.field("namespace", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("uid", pa.string()),
        pa.field("node_name", pa.string()).with_metadata({"doc": "spec.nodeName; null while Pending"}),
        pa.field("phase", pa.string()),
        pa.field("start_time", TIME).with_metadata({"doc": "status.startTime"}),
        pa.field("labels", LABELS_TYPE),
        pa.field("owner_kind", pa.string()).with_metadata(
            {"doc": "kind of the controlling ownerReference (controller=true, else the first); null if none"}
        ),
        pa.field("owner_name", pa.string()).with_metadata({"doc": "name of that ownerReference"}),
    ]
)

CONTAINERS_SCHEMA = pa.schema(
    [
        pa.field("namespace", pa.string(), nullable=False),
        pa.field("pod_name", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False).with_metadata({"doc": "spec.containers[] only, no init"}),
        pa.field("image", pa.string()),
        pa.field("restart_count", pa.int64()).with_metadata({"doc": "status.containerStatuses[].restartCount"}),
        pa.field("cpu_request", pa.int64()).with_metadata({"doc": "millicores, rounded up"}),
        pa.field("memory_request", pa.int64()).with_metadata({"doc": "bytes, rounded up"}),
        pa.field("ephemeral_storage_request", pa.int64()),
        pa.field("cpu_limit", pa.int64()),
        pa.field("memory_limit", pa.int64()),
        pa.field("ephemeral_storage_limit", pa.int64()),
        pa.field("other_requests", pa.map_(pa.string(), pa.int64())).with_metadata(
            {"doc": "any other requested resource (e.g. nvidia.com/gpu) -> Value() rounded up"}
        ),
    ]
)

NAMESPACES_SCHEMA = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("uid", pa.string()),
        pa.field("labels", LABELS_TYPE),
    ]
)

NODES_SCHEMA = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("uid", pa.string()),
        pa.field("hostname", pa.string()).with_metadata({"doc": "address of type Hostname, else the name"}),
        pa.field("host_id", pa.string()).with_metadata(
            {"doc": "spec.externalID, else the host_id_annotation annotation (Heapster's host_id)"}
        ),
        pa.field("address", pa.string()).with_metadata(
            {"doc": "the first InternalIP that is an IP address, else the first such ExternalIP (Heapster's choice)"}
        ),
        pa.field("kubelet_port", pa.int32()).with_metadata({"doc": "status.daemonEndpoints.kubeletEndpoint.Port"}),
        pa.field("ready", pa.bool_()),
        pa.field("unschedulable", pa.bool_()),
        pa.field("labels", LABELS_TYPE),
        pa.field("capacity_cpu", pa.int64()).with_metadata({"doc": "millicores"}),
        pa.field("capacity_memory", pa.int64()),
        pa.field("capacity_ephemeral_storage", pa.int64()),
        pa.field("allocatable_cpu", pa.int64()).with_metadata({"doc": "millicores"}),
        pa.field("allocatable_memory", pa.int64()),
        pa.field("allocatable_ephemeral_storage", pa.int64()),
    ]
)


@dataclass(frozen=True, slots=True)
class Dimensions:
    """The four dimension tables at one moment (what the enrichers of one window see)."""

    pods: pa.Table
    containers: pa.Table
    namespaces: pa.Table
    nodes: pa.Table

    @classmethod
    def empty(cls) -> Dimensions:
        """No API knowledge: enrichers then leave rows as the kubelet reported them."""
        return cls(
            PODS_SCHEMA.empty_table(),
            CONTAINERS_SCHEMA.empty_table(),
            NAMESPACES_SCHEMA.empty_table(),
            NODES_SCHEMA.empty_table(),
        )
