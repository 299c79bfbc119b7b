"""A per-node overview of a points table: what each kubelet sent, at a glance."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from heapster_columnar.model.catalogue import EntityType


def per_node(points: pa.Table) -> pl.DataFrame:
    """One row per node: pods, containers, system containers, points, and node CPU/memory."""
    frame = pl.from_arrow(points)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_columns(pl.col("type", "metric", "nodename").cast(pl.String))

    def entities(kind: EntityType, name: str) -> pl.Expr:
        key = pl.struct("namespace_name", "pod_name", "container_name")
        return key.filter(pl.col("type") == kind.value).n_unique().alias(name)

    def node_value(metric: str, name: str) -> pl.Expr:
        return pl.col("value_int").filter((pl.col("type") == "node") & (pl.col("metric") == metric)).first().alias(name)

    return (
        frame.group_by("nodename")
        .agg(
            entities(EntityType.SYS_CONTAINER, "system_containers"),
            entities(EntityType.POD, "pods"),
            entities(EntityType.POD_CONTAINER, "containers"),
            pl.len().alias("points"),
            node_value("memory/working_set", "memory_working_set_bytes"),
            pl.col("sample_time").filter(pl.col("type") == "node").first().alias("sample_time"),
        )
        .sort("nodename")
    )
