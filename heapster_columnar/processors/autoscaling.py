"""Node autoscaling enricher (HEAPSTER.md §5.8): capacity, allocatable, utilization and reservation.

Twelve float gauges per node that the API knows, with Heapster's zero guards: a ratio only when
its allocatable is non-zero, ephemeral storage only when both capacity and allocatable list it.
Node labels are rendered onto the node rows by the same label copier as pods.
"""

from __future__ import annotations

import polars as pl

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.labels import LabelCopier
from heapster_columnar.processors.base import NODE, Frames, lookup, scatter

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
        needed = [c for pair in RESOURCES.values() for c in pair]
        rows = entities.select(pl.arg_where(pl.col("type") == NODE)).to_series()
        part = entities.select(
            "nodename",
            *(pl.col(c) if c in entities.columns else pl.lit(None, pl.Int64).alias(c) for c in needed),
        )[rows]  # only node rows: 5,000 of 415,000
        found = lookup(part, nodes, ["nodename"], [c for c in nodes.columns if c != "nodename"])
        joined = part.hstack(found)
        known = pl.col("_labels").is_not_null()  # a node the API knows
        columns: list[pl.Expr] = [
            pl.col("_labels").alias("labels"),
            *(pl.col(c).alias(c.removeprefix("_stored:")) for c in nodes.columns if c.startswith("_stored:")),
        ]
        for resource, (used, requested) in RESOURCES.items():
            capacity, allocatable = pl.col(f"_capacity_{resource}"), pl.col(f"_allocatable_{resource}")
            present = known
            if resource == "ephemeral_storage":
                present = known & capacity.is_not_null() & allocatable.is_not_null()
            alloc = allocatable.fill_null(0).cast(pl.Float64)
            ratio = present & (alloc != 0)
            columns += [
                pl.when(present).then(capacity.fill_null(0).cast(pl.Float64)).alias(f"{resource}/node_capacity"),
                pl.when(present).then(alloc).alias(f"{resource}/node_allocatable"),
                pl.when(ratio).then(pl.col(used).fill_null(0) / alloc).alias(f"{resource}/node_utilization"),
                pl.when(ratio).then(pl.col(requested).fill_null(0) / alloc).alias(f"{resource}/node_reservation"),
            ]
        values = joined.select(columns)
        # a node the API does not know keeps its labels; the metrics stay null for it
        keep = [c for c in values.columns if c in entities.columns and c not in needed]
        values = values.with_columns(
            pl.when(joined["_labels"].is_not_null()).then(pl.col(c)).otherwise(entities.get_column(c)[rows]).alias(c)
            for c in keep
        )
        return frames.with_entities(scatter(entities, rows, values))
