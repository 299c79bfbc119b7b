"""Chargeback: what each namespace, team label, workload, pod or node costs, OpenCost's way.

Formulas (OpenCost specification v01, opencost/opencost ``spec/opencost-specv01.md``, "Workload
Costs" and "Idle Costs"; efficiency as ``core/pkg/opencost/allocation.go`` computes it):

- **Allocation per container**: ``max(request, usage)`` per resource, times the hours the
  container was present, times the resource's hourly price. Computed per container-day from the
  daily rollups: usage = the day's average (``cpu_sum / samples`` millicores,
  ``memory_sum / memory_samples`` bytes of working set), request = the day's request, hours =
  ``seconds / 3600`` (samples x the store's resolution). OpenCost takes the max over its query
  window; per day is the same as asking OpenCost for daily windows and adding them up.
- **Aggregation**: the container-days are summed by the chosen dimension: ``namespace``,
  ``workload`` (namespace, kind, name), ``pod``, ``container``, ``node``, or ``label:<key>`` (the
  pod's label that day, as the day's rollup recorded it: a pod relabelled mid-period is charged to
  each value for its days, as OpenCost's daily steps accumulated; rollups stored before labels were
  kept use the last known pod snapshot). No value: ``__unallocated__``, as OpenCost.
- **Idle per node**: the node's cost (allocatable cores and bytes x its hours x the prices) minus
  the allocation costs of the containers on it, per resource and per day. Negative when containers
  use more than their requests on a node with no room left (kept: it is what happened).
  Reported as one ``__idle__`` row, or with ``share_idle=True`` shared back to the allocations of
  the same node-day in proportion to their cost of that resource (OpenCost's "share idle by
  node"); idle of a node-day with nothing allocated stays in ``__idle__``. Containers on a node
  without node rollups (no node metrics) are allocated but have no idle to share.
- **Efficiency** = usage / request per resource (no request: 1 if there is usage and cost, else
  0); total efficiency = the average of the two weighted by their allocation costs (GPU is not
  collected). The shared idle is not part of the weights: efficiency is about what a tenant did
  with what it asked for.

Units: cores and core-hours for CPU; **GB = 10^9 bytes** for memory (``memory_gb_hour`` is per
10^9 bytes-hour). Costs are in the currency of the prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from heapster_columnar.analysis.rollups import container_days, node_days
from heapster_columnar.analysis.store import Store, TimeRange
from heapster_columnar.errors import ConfigError

__all__ = ["GB", "IDLE", "UNALLOCATED", "Prices", "allocation", "allocation_frames", "idle", "idle_frames"]

GB = 1e9  # bytes: memory prices are per GB-hour, decimal
IDLE, UNALLOCATED = "__idle__", "__unallocated__"  # OpenCost's names for these rows
_DIMENSIONS: dict[str, list[str]] = {
    "namespace": ["namespace"],
    "workload": ["namespace", "workload_kind", "workload_name"],
    "pod": ["namespace", "pod"],
    "container": ["namespace", "pod", "container"],
    "node": ["node"],
}
_SOURCE = {
    "namespace": "namespace_name",
    "pod": "pod_name",
    "container": "container_name",
    "node": "nodename",
    "workload_kind": "workload_kind",
    "workload_name": "workload_name",
}
_CONTAINER_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "namespace_name": pl.String(),
    "pod_name": pl.String(),
    "container_name": pl.String(),
    "nodename": pl.String(),
    "workload_kind": pl.String(),
    "workload_name": pl.String(),
    "samples": pl.Int64(),
    "seconds": pl.Float64(),
    "cpu_sum": pl.Float64(),
    "memory_samples": pl.Int64(),
    "memory_sum": pl.Float64(),
    "cpu_request": pl.Int64(),
    "memory_request": pl.Int64(),
}
_NODE_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "nodename": pl.String(),
    "seconds": pl.Float64(),
    "allocatable_cpu": pl.Int64(),
    "allocatable_memory": pl.Int64(),
}
_SUMS = [
    "cpu_request_core_hours",
    "cpu_usage_core_hours",
    "cpu_core_hours",
    "ram_request_gb_hours",
    "ram_usage_gb_hours",
    "ram_gb_hours",
    "cpu_cost",
    "ram_cost",
    "shared_idle_cost",
]


@dataclass(frozen=True, slots=True)
class Prices:
    """Hourly prices. The defaults are OpenCost's built-in ones (opencost ``configs/default.json``,
    "Default prices based on GCP us-central1", what OpenCost charges when no cloud or custom
    pricing is configured): $0.031611 per core-hour and $0.004237 per GB-hour of RAM."""

    cpu_core_hour: float = 0.031611
    memory_gb_hour: float = 0.004237

    def __post_init__(self) -> None:
        if self.cpu_core_hour < 0 or self.memory_gb_hour < 0:
            raise ConfigError(f"prices cannot be negative: {self}")


def allocation(
    store: Store,
    since: str | timedelta | datetime | TimeRange | None = "7d",
    *,
    by: str = "namespace",
    prices: Prices | None = None,
    share_idle: bool = False,
) -> pl.DataFrame:
    """Cost allocation of ``since`` (a duration back from the store's newest window, a start, or a
    ``TimeRange``; the whole UTC days ``container_days`` reads for it) by ``by``: ``namespace``,
    ``workload``, ``pod``, ``container``, ``node`` or ``label:<key>``.

    One row per value of the dimension (plus ``__idle__``, see the module docstring), most
    expensive first: the key column(s) (``label:<key>`` is named as given), core-hours and GB-hours
    requested / used / allocated (``max`` of the two), ``cpu_cost``, ``ram_cost``,
    ``shared_idle_cost``, ``total_cost``, ``cpu_efficiency``, ``ram_efficiency``,
    ``total_efficiency``.
    """
    time = since if isinstance(since, TimeRange) else store.resolve(since)
    days = container_days(store, time, histograms=False, labels=by.startswith("label:"))
    labels = None
    if by.startswith("label:") and "labels" not in days.columns:  # rollups stored before labels were kept
        labels = store.last_known("pods", ["namespace", "name"], time).collect()
    return allocation_frames(
        days,
        node_days(store, time),
        by=by,
        prices=prices,
        share_idle=share_idle,
        pods=labels,
    )


def idle(
    store: Store,
    since: str | timedelta | datetime | TimeRange | None = "7d",
    *,
    prices: Prices | None = None,
) -> pl.DataFrame:
    """Per node: its cost (allocatable x hours x prices), the allocations on it and the idle
    difference, per resource, over ``since`` (see :func:`idle_frames`)."""
    time = since if isinstance(since, TimeRange) else store.resolve(since)
    return idle_frames(
        container_days(store, time, histograms=False, labels=False), node_days(store, time), prices=prices
    )


def allocation_frames(
    containers: pl.DataFrame,
    nodes: pl.DataFrame,
    *,
    by: str = "namespace",
    prices: Prices | None = None,
    share_idle: bool = False,
    pods: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """:func:`allocation` on rollup rows already read: ``containers`` / ``nodes`` are
    ``container_days`` / ``node_days`` rows, ``pods`` the pods dimension (``namespace``,
    ``name``, ``labels``; needed for ``label:<key>``)."""
    prices = prices or Prices()
    keys, group = _dimension(by)
    costs = _container_costs(containers, prices)
    if by.startswith("label:"):
        key = by.removeprefix("label:")
        if pods is None and "labels" in containers.columns and costs.height == containers.height:
            # the rollups carry each pod's labels of that day, row for row with the costs: each
            # day is charged to the label value it had then (OpenCost's daily steps, accumulated)
            value = _label_value(containers.schema["labels"], key).alias("_label")
            costs = costs.with_columns(containers.select(value).to_series())
        else:  # rollups stored before labels were kept: the pods' last known labels
            costs = costs.join(_pod_label(pods, key), on=["namespace_name", "pod_name"], how="left")
    node_idle = _node_idle(costs, nodes, prices)
    left = node_idle
    if share_idle:
        costs = costs.join(
            node_idle.select("day", "nodename", "cpu_idle_cost", "ram_idle_cost", "cpu_cost_on", "ram_cost_on"),
            on=["day", "nodename"],
            how="left",
            nulls_equal=True,
        ).with_columns(
            (
                _share(pl.col("cpu_idle_cost"), pl.col("cpu_cost"), pl.col("cpu_cost_on"))
                + _share(pl.col("ram_idle_cost"), pl.col("ram_cost"), pl.col("ram_cost_on"))
            ).alias("shared_idle_cost")
        )
        # what no allocation on its node-day could take stays idle
        cpu_taken, ram_taken = pl.col("cpu_cost_on") > 0, pl.col("ram_cost_on") > 0
        left = node_idle.with_columns(
            *[
                pl.when(cpu_taken).then(0.0).otherwise(pl.col(c)).alias(c)
                for c in ("cpu_idle_cost", "cpu_idle_core_hours")
            ],
            *[
                pl.when(ram_taken).then(0.0).otherwise(pl.col(c)).alias(c)
                for c in ("ram_idle_cost", "ram_idle_gb_hours")
            ],
        )
    else:
        costs = costs.with_columns(pl.lit(0.0).alias("shared_idle_cost"))
    grouped = (
        costs.lazy()
        .with_columns(group)
        .group_by(keys)
        .agg(pl.col(_SUMS).sum())
        .with_columns(
            _efficiency("cpu").alias("cpu_efficiency"),
            _efficiency("ram").alias("ram_efficiency"),
        )
        .with_columns(
            pl.when(pl.col("cpu_cost") + pl.col("ram_cost") > 0)
            .then(
                (pl.col("cpu_efficiency") * pl.col("cpu_cost") + pl.col("ram_efficiency") * pl.col("ram_cost"))
                / (pl.col("cpu_cost") + pl.col("ram_cost"))
            )
            .otherwise(0.0)
            .alias("total_efficiency")
        )
        .collect()
    )
    idle_row = left.select(
        *[pl.lit(IDLE).alias(k) for k in keys],
        pl.col("cpu_idle_core_hours").sum().alias("cpu_core_hours"),
        pl.col("ram_idle_gb_hours").sum().alias("ram_gb_hours"),
        pl.col("cpu_idle_cost").sum().alias("cpu_cost"),
        pl.col("ram_idle_cost").sum().alias("ram_cost"),
        pl.lit(0.0).alias("shared_idle_cost"),
    )
    priced = node_idle["cpu_node_cost"].is_not_null().any() or node_idle["ram_node_cost"].is_not_null().any()
    remaining = idle_row.select(pl.col("cpu_cost").abs() + pl.col("ram_cost").abs()).item()
    frames = [grouped]
    if priced and (not share_idle or remaining > 0):
        frames.append(idle_row)
    frame = pl.concat(frames, how="diagonal_relaxed")
    order = [
        *keys,
        *_SUMS[:6],
        "cpu_cost",
        "ram_cost",
        "shared_idle_cost",
        "total_cost",
        "cpu_efficiency",
        "ram_efficiency",
        "total_efficiency",
    ]
    return (
        frame.with_columns(
            pl.col(_SUMS).fill_null(0.0),
            (pl.col("cpu_cost").fill_null(0.0) + pl.col("ram_cost").fill_null(0.0) + pl.col("shared_idle_cost"))
            .fill_null(0.0)
            .alias("total_cost"),
        )
        .select(order)
        .sort(["total_cost", *keys], descending=[True, *[False] * len(keys)], nulls_last=True)
    )


def idle_frames(containers: pl.DataFrame, nodes: pl.DataFrame, *, prices: Prices | None = None) -> pl.DataFrame:
    """Per node over the rollup rows: ``hours``, ``cpu_node_cost`` / ``ram_node_cost`` (allocatable
    x hours x price), ``cpu_allocated_cost`` / ``ram_allocated_cost`` (the allocations on it),
    ``cpu_idle_cost`` / ``ram_idle_cost`` (the differences), ``idle_cost`` and the idle share of
    the node cost ``idle_fraction`` (OpenCost "Idle %" per asset). Nodes without allocatable
    resources in the snapshots have null costs."""
    prices = prices or Prices()
    days = _node_idle(_container_costs(containers, prices), nodes, prices)
    return (
        days.group_by("nodename")
        .agg(
            (pl.col("node_seconds").sum() / 3600).alias("hours"),
            _known_sum("cpu_node_cost"),
            _known_sum("ram_node_cost"),
            pl.col("cpu_cost_on").sum().alias("cpu_allocated_cost"),
            pl.col("ram_cost_on").sum().alias("ram_allocated_cost"),
            _known_sum("cpu_idle_cost"),
            _known_sum("ram_idle_cost"),
        )
        .with_columns((pl.col("cpu_idle_cost") + pl.col("ram_idle_cost")).alias("idle_cost"))
        .with_columns(
            (pl.col("idle_cost") / (pl.col("cpu_node_cost") + pl.col("ram_node_cost"))).alias("idle_fraction")
        )
        .rename({"nodename": "node"})
        .sort("idle_cost", "node", descending=[True, False], nulls_last=True)
    )


def _known_sum(column: str) -> pl.Expr:
    """Sum of the known values; null when none is known (a node without allocatable resources)."""
    return pl.when(pl.col(column).count() > 0).then(pl.col(column).sum()).alias(column)


def _dimension(by: str) -> tuple[list[str], list[pl.Expr]]:
    """Output key columns and the expressions making them from a cost row (nulls: unallocated)."""
    if by.startswith("label:"):
        key = by.removeprefix("label:")
        if not key:
            raise ConfigError("by='label:<key>' needs a label key, e.g. label:team")
        return [by], [pl.col("_label").fill_null(UNALLOCATED).alias(by)]
    if by not in _DIMENSIONS:
        raise ConfigError(f"unknown dimension {by!r} (namespace, workload, pod, container, node or label:<key>)")
    keys = _DIMENSIONS[by]
    return keys, [pl.col(_SOURCE[k]).fill_null(UNALLOCATED).alias(k) for k in keys]


def _pod_label(pods: pl.DataFrame | None, key: str) -> pl.DataFrame:
    """(namespace_name, pod_name, _label): the value of label ``key`` on each known pod."""
    if pods is None or not {"namespace", "name", "labels"} <= set(pods.columns):
        return pl.DataFrame(schema={"namespace_name": pl.String, "pod_name": pl.String, "_label": pl.String})
    return pods.select(
        pl.col("namespace").alias("namespace_name"),
        pl.col("name").alias("pod_name"),
        _label_value(pods.schema["labels"], key).alias("_label"),
    ).unique(["namespace_name", "pod_name"], keep="last", maintain_order=True)


def _label_value(kind: pl.DataType, key: str) -> pl.Expr:
    """Label ``key``'s value in the ``labels`` column (a map, or a map read as a list of key/value structs)."""
    labels = pl.col("labels")
    if isinstance(kind, pl.Map):
        return labels.map.get(key)
    entry = pl.element()
    return labels.list.eval(entry.filter(entry.struct.field("key") == key).struct.field("value")).list.first()


def _container_costs(containers: pl.DataFrame, prices: Prices) -> pl.DataFrame:
    """Per container-day: resource-hours requested, used and allocated (``max``), and their cost."""
    if not set(_CONTAINER_SCHEMA) <= set(containers.columns):
        containers = pl.DataFrame(schema=_CONTAINER_SCHEMA)
    hours = pl.col("seconds").fill_null(0.0) / 3600
    cpu_used = pl.when(pl.col("samples") > 0).then(pl.col("cpu_sum") / pl.col("samples")).otherwise(0.0)
    ram_used = (
        pl.when(pl.col("memory_samples") > 0).then(pl.col("memory_sum") / pl.col("memory_samples")).otherwise(0.0)
    )
    return (
        containers.lazy()
        .select(
            *[pl.col(c).cast(t) for c, t in _CONTAINER_SCHEMA.items() if c not in ("cpu_sum", "memory_sum")],
            (cpu_used.fill_null(0.0) / 1000 * hours).alias("cpu_usage_core_hours"),
            (pl.col("cpu_request").fill_null(0).cast(pl.Float64) / 1000 * hours).alias("cpu_request_core_hours"),
            (ram_used.fill_null(0.0) / GB * hours).alias("ram_usage_gb_hours"),
            (pl.col("memory_request").fill_null(0).cast(pl.Float64) / GB * hours).alias("ram_request_gb_hours"),
        )
        .with_columns(
            pl.max_horizontal("cpu_usage_core_hours", "cpu_request_core_hours").alias("cpu_core_hours"),
            pl.max_horizontal("ram_usage_gb_hours", "ram_request_gb_hours").alias("ram_gb_hours"),
        )
        .with_columns(
            (pl.col("cpu_core_hours") * prices.cpu_core_hour).alias("cpu_cost"),
            (pl.col("ram_gb_hours") * prices.memory_gb_hour).alias("ram_cost"),
        )
        .collect()
    )


def _node_idle(costs: pl.DataFrame, nodes: pl.DataFrame, prices: Prices) -> pl.DataFrame:
    """Per node-day: node cost, allocated cost on it and the idle difference, per resource."""
    if not set(_NODE_SCHEMA) <= set(nodes.columns):
        nodes = pl.DataFrame(schema=_NODE_SCHEMA)
    placed = (
        costs.lazy()
        .group_by("day", "nodename")
        .agg(
            pl.col("cpu_core_hours").sum().alias("cpu_core_hours_on"),
            pl.col("ram_gb_hours").sum().alias("ram_gb_hours_on"),
            pl.col("cpu_cost").sum().alias("cpu_cost_on"),
            pl.col("ram_cost").sum().alias("ram_cost_on"),
        )
    )
    hours = pl.col("node_seconds").fill_null(0.0) / 3600
    return (
        nodes.lazy()
        .select(
            *[pl.col(c).cast(t) for c, t in _NODE_SCHEMA.items() if c != "seconds"],
            pl.col("seconds").cast(pl.Float64).alias("node_seconds"),
        )
        .join(placed, on=["day", "nodename"], how="left", nulls_equal=True)
        .with_columns(
            (pl.col("allocatable_cpu").cast(pl.Float64) / 1000 * hours).alias("cpu_node_core_hours"),
            (pl.col("allocatable_memory").cast(pl.Float64) / GB * hours).alias("ram_node_gb_hours"),
            pl.col("cpu_core_hours_on", "ram_gb_hours_on", "cpu_cost_on", "ram_cost_on").fill_null(0.0),
        )
        .with_columns(
            (pl.col("cpu_node_core_hours") - pl.col("cpu_core_hours_on")).alias("cpu_idle_core_hours"),
            (pl.col("ram_node_gb_hours") - pl.col("ram_gb_hours_on")).alias("ram_idle_gb_hours"),
            (pl.col("cpu_node_core_hours") * prices.cpu_core_hour).alias("cpu_node_cost"),
            (pl.col("ram_node_gb_hours") * prices.memory_gb_hour).alias("ram_node_cost"),
        )
        .with_columns(
            (pl.col("cpu_node_cost") - pl.col("cpu_cost_on")).alias("cpu_idle_cost"),
            (pl.col("ram_node_cost") - pl.col("ram_cost_on")).alias("ram_idle_cost"),
        )
        .collect()
    )


def _share(idle_cost: pl.Expr, cost: pl.Expr, cost_on_node: pl.Expr) -> pl.Expr:
    """An allocation's part of its node-day's idle: in proportion to its cost of the resource."""
    return pl.when(cost_on_node > 0).then(idle_cost.fill_null(0.0) * cost / cost_on_node).otherwise(0.0)


def _efficiency(resource: str) -> pl.Expr:
    """allocation.go ``CPUEfficiency`` / ``RAMEfficiency``: usage / request; without a request,
    1 when there is usage and cost, else 0. (Over summed hours: averages over the same window.)"""
    unit = "core_hours" if resource == "cpu" else "gb_hours"
    request, usage = pl.col(f"{resource}_request_{unit}"), pl.col(f"{resource}_usage_{unit}")
    return (
        pl.when(request > 0)
        .then(usage / request)
        .when((usage > 0) & (pl.col(f"{resource}_cost") > 0))
        .then(1.0)
        .otherwise(0.0)
    )
