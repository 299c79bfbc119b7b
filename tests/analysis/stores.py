"""Hand-built stores with known answers, written the way collected history is stored.

A test describes points as plain columns (``series``) and Kubernetes objects as the API serves
them (``pod``, ``node``, ``namespace``); ``write_store`` turns the objects into the dimension
tables with the collector's own converters and writes everything with the store's history
writer, so the analysis code reads exactly what it reads in production.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.sinks.parquet_history import HistoryWriter
from heapster_columnar.sources.objects import namespaces_table, nodes_table, pods_tables

T0 = datetime(2024, 6, 3, tzinfo=UTC)  # a Monday, 00:00 UTC
MI, GI = 1 << 20, 1 << 30


def series(
    start: datetime,
    step: timedelta,
    values: Sequence[float] | np.ndarray | float,
    *,
    count: int | None = None,
    metric: str,
    type: str = "pod_container",
    **labels: str | None,
) -> pl.DataFrame:
    """Points of one entity and metric: ``values`` (or one value ``count`` times) every ``step``."""
    if isinstance(values, int | float):
        assert count is not None, "count is needed with a constant value"
        array = np.full(count, float(values))
    else:
        array = np.asarray(values, dtype=float)
    stamps = pl.datetime_range(start, start + step * (len(array) - 1), step, time_unit="ms", eager=True)
    frame = pl.DataFrame({"timestamp": stamps, "value": array})
    return frame.with_columns(
        pl.lit(type).alias("type"),
        pl.lit(metric).alias("metric"),
        *[pl.lit(v, pl.String).alias(k) for k, v in labels.items()],
    )


def container_series(
    start: datetime,
    step: timedelta,
    *,
    namespace: str,
    pod: str,
    container: str,
    node: str,
    cpu: Sequence[float] | np.ndarray | float,
    memory: Sequence[float] | np.ndarray | float,
    count: int | None = None,
) -> pl.DataFrame:
    """cpu/usage_rate (millicores) and memory/working_set (bytes) of one container."""
    labels = {"namespace_name": namespace, "pod_name": pod, "container_name": container, "nodename": node}
    return pl.concat(
        [
            series(start, step, cpu, count=count, metric="cpu/usage_rate", **labels),
            series(start, step, memory, count=count, metric="memory/working_set", **labels),
        ]
    )


@dataclass
class Container:
    name: str
    cpu_request: str | None = None  # Kubernetes quantities: "250m", "1"
    memory_request: str | None = None  # "256Mi"
    cpu_limit: str | None = None
    memory_limit: str | None = None


def pod(
    namespace: str,
    name: str,
    node: str,
    containers: Sequence[Container],
    *,
    owner: tuple[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Pod object as the API serves it (only the fields the collector reads)."""
    specs = []
    for c in containers:
        requests = {k: v for k, v in (("cpu", c.cpu_request), ("memory", c.memory_request)) if v is not None}
        limits = {k: v for k, v in (("cpu", c.cpu_limit), ("memory", c.memory_limit)) if v is not None}
        specs.append(
            {"name": c.name, "image": f"example/{c.name}", "resources": {"requests": requests, "limits": limits}}
        )
    metadata: dict[str, Any] = {"namespace": namespace, "name": name, "uid": f"uid-{namespace}-{name}"}
    metadata["labels"] = labels or {}
    if owner is not None:
        metadata["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {
        "metadata": metadata,
        "spec": {"nodeName": node, "containers": specs},
        "status": {"phase": "Running", "startTime": "2024-01-01T00:00:00Z"},
    }


def node(name: str, *, cpu: str, memory: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Node object whose capacity equals its allocatable."""
    resources = {"cpu": cpu, "memory": memory}
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
        },
    }


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}}}


def dimensions(
    pods: Sequence[dict[str, Any]] = (),
    nodes: Sequence[dict[str, Any]] = (),
    namespaces: Sequence[dict[str, Any]] = (),
) -> Dimensions:
    pods_table, containers_table = pods_tables(list(pods))
    return Dimensions(pods_table, containers_table, namespaces_table(list(namespaces)), nodes_table(list(nodes)))


def write_store(
    root: Path,
    points: pl.DataFrame | Sequence[pl.DataFrame],
    *,
    pods: Sequence[dict[str, Any]] = (),
    nodes: Sequence[dict[str, Any]] = (),
    namespaces: Sequence[dict[str, Any]] = (),
    valid_from: datetime = T0,
) -> Path:
    """Write ``points`` and one snapshot of the objects (valid from ``valid_from``) to ``root``."""
    frame = points if isinstance(points, pl.DataFrame) else pl.concat(list(points), how="diagonal_relaxed")
    writer = HistoryWriter(str(root))
    writer.write_points(frame.to_arrow())
    if pods or nodes or namespaces:
        writer.write_dimensions(dimensions(pods, nodes, namespaces), valid_from)
    return root
