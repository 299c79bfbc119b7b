"""Node autoscaling enricher (HEAPSTER.md §5.8): capacity, allocatable, utilization and reservation.

Twelve float gauges per node that the API knows, with Heapster's zero guards: a ratio only when
its allocatable is non-zero, ephemeral storage only when both capacity and allocatable list it.
Node labels are rendered onto the node rows by the same label copier as pods.
"""

from __future__ import annotations

import polars as pl

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.labels import LabelCopier
from heapster_columnar.processors.base import NODE, Frames, lookup, set_where

# resource -> (used metric, requested metric), as Heapster reads them from the node's own row
RESOURCES = {
    "cpu": ("cpu/usage_rate", "cpu/request"),
    "memory": ("memory/usage", "memory/request"),
    "ephemeral_storage": ("ephemeral_storage/usage", "ephemeral_storage/request"),
}


class NodeAutoscalingEnricher:
    name = "node_autoscaling_enricher"
    skippable = True

    def __init__(self, labels: LabelCopier | None = None) -> None:
        self.labels = labels or LabelCopier()

    def process(self, frames: Frames, dimensions: Dimensions) -> Frames:
        table = dimensions.nodes
        stored = self.labels.stored(table.column("labels"))
        nodes = pl.DataFrame(
            {
                "nodename": table.column("name"),
                "_labels": self.labels.render(table.column("labels")),
                **{f"_stored:{k}": v for k, v in stored.items()},
                **{f"_{c}": table.column(c) for r in RESOURCES for c in (f"capacity_{r}", f"allocatable_{r}")},
            }
        )
        entities = frames.entities
        for used, requested in RESOURCES.values():
            if used not in entities.columns:
                entities = entities.with_columns(pl.lit(None, pl.Int64).alias(used))
            if requested not in entities.columns:
                entities = entities.with_columns(pl.lit(None, pl.Int64).alias(requested))
        if "labels" not in entities.columns:
            entities = entities.with_columns(pl.lit(None, pl.String).alias("labels"))
        found = lookup(entities, nodes, ["nodename"], [c for c in nodes.columns if c != "nodename"])
        joined = entities.hstack(found)
        is_node = (pl.col("type") == NODE) & pl.col("_labels").is_not_null()  # a node the API knows
        columns: list[pl.Expr] = [
            pl.when(is_node).then("_labels").otherwise("labels").alias("labels"),
            *(
                set_where(is_node, c, c.removeprefix("_stored:"), entities.columns)
                for c in nodes.columns
                if c.startswith("_stored:")
            ),
        ]
        for resource, (used, requested) in RESOURCES.items():
            capacity, allocatable = pl.col(f"_capacity_{resource}"), pl.col(f"_allocatable_{resource}")
            present = is_node
            if resource == "ephemeral_storage":
                present = is_node & capacity.is_not_null() & allocatable.is_not_null()
            alloc = allocatable.fill_null(0).cast(pl.Float64)
            ratio = present & (alloc != 0)
            columns += [
                pl.when(present).then(capacity.fill_null(0).cast(pl.Float64)).alias(f"{resource}/node_capacity"),
                pl.when(present).then(alloc).alias(f"{resource}/node_allocatable"),
                pl.when(ratio).then(pl.col(used).fill_null(0) / alloc).alias(f"{resource}/node_utilization"),
                pl.when(ratio).then(pl.col(requested).fill_null(0) / alloc).alias(f"{resource}/node_reservation"),
            ]
        out = joined.with_columns(columns)
        return frames.with_entities(out.drop([c for c in out.columns if c.startswith("_")]))
