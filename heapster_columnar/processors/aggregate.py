"""Pod, namespace, node and cluster aggregators (HEAPSTER.md §5.4 to §5.7): grouped sums over entity rows.

Sums follow Heapster: a group whose values are all missing has no value (not 0); a parent that
already carries a metric keeps it (the pod aggregator never overwrites what the kubelet reported
for the pod). Deviation: pods the aggregator has to create keep their ``nodename`` (Heapster's lost
it, so its node aggregator skipped them — HEAPSTER.md §10.12).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.model import catalogue
from heapster_columnar.model.catalogue import Kind
from heapster_columnar.processors.base import (
    CLUSTER,
    CONTAINER,
    NODE,
    NS,
    POD,
    POD_KEY,
    Frames,
    append_rows,
    lookup,
    scatter,
)

# HEAPSTER.md §5.5 / §5.7: what namespaces and the cluster sum.
NAMESPACE_METRICS = ("cpu/usage_rate", "memory/usage", "cpu/request", "cpu/limit", "memory/request", "memory/limit")
# HEAPSTER.md §5.6: what nodes sum from their pods (usage comes from the kubelet's node stats).
NODE_METRICS = (
    "cpu/request",
    "cpu/limit",
    "memory/request",
    "memory/limit",
    "ephemeral_storage/request",
    "ephemeral_storage/limit",
)


def _sum(column: str) -> pl.Expr:
    """Sum that stays null when every value is null (Heapster adds only values it has)."""
    return pl.when(pl.col(column).is_not_null().any()).then(pl.col(column).sum()).alias(column)


def _metric_columns(entities: pl.DataFrame) -> list[str]:
    """Every numeric entity column is a metric (catalogue names, ``<resource>/request``); keys,
    labels and times are strings and timestamps."""
    return [name for name, dtype in entities.schema.items() if dtype.is_numeric() and not name.startswith("_")]


def _pod_metric_columns(entities: pl.DataFrame) -> list[str]:
    """Container metrics a pod sums: every plain metric except counters (Heapster skips the
    cumulative standard metrics; we skip every cumulative one, custom metrics live in ``labeled``)."""
    out = []
    for name in _metric_columns(entities):
        try:
            kind = catalogue.get(name).kind
        except KeyError:  # `<resource>/request` columns are gauges
            kind = Kind.GAUGE
        if kind == Kind.GAUGE:
            out.append(name)
    return out


class PodAggregator:
    name = "pod_aggregator"
    skippable = True

    def process(self, frames: Frames, dimensions: object) -> Frames:
        entities = frames.entities
        candidates = _pod_metric_columns(entities)
        # Sum only what can change anything: a metric some container has and some pod lacks (the
        # kubelet reports most pod values itself), which two null counts per column tell; pods the
        # aggregator has to create get every metric their containers have.
        is_pod, is_container = pl.col("type") == POD, pl.col("type") == CONTAINER
        counts = entities.select(
            *(pl.col(m).filter(is_pod).null_count().alias(f"pod:{m}") for m in candidates),
            *(pl.col(m).filter(is_container).count().alias(f"container:{m}") for m in candidates),
        ).row(0, named=True)
        present = [m for m in candidates if counts[f"container:{m}"]]
        metrics = [m for m in present if counts[f"pod:{m}"]]
        carried = [c for c in ("nodename", "pod_id", "namespace_id", "hostname", "host_id") if c in entities.columns]
        containers = entities.select("type", *POD_KEY, *present, *carried, "start_time", "sample_time").filter(
            is_container & pl.col("namespace_name").is_not_null() & pl.col("pod_name").is_not_null()
        )
        sums = _sums(containers, metrics, carried)
        # pods the kubelet never reported: created, as Heapster does (but keeping the node)
        pods = entities.select("type", *POD_KEY).filter(is_pod).with_columns(pl.lit(True).alias("_present"))
        exists = lookup(sums, pods, POD_KEY, ["_present"])["_present"]
        created = sums.filter(exists.is_null()).select(POD_KEY)
        filled = _fill_from(entities, sums, on=POD_KEY, where=is_pod, metrics=metrics)
        if created.height:
            orphans = containers.join(created, on=list(POD_KEY), how="semi")
            filled = append_rows(
                filled, _sums(orphans, present, carried).with_columns(pl.lit(POD).alias("type")).sort(POD_KEY)
            )
        labeled = _pod_custom_metrics(frames.labeled, filled)
        return frames.with_entities(filled).with_labeled(labeled)


def _sums(containers: pl.DataFrame, metrics: Sequence[str], carried: Sequence[str]) -> pl.DataFrame:
    """Per pod: the sums of ``metrics`` (null where no container has a value), the first of the
    ``carried`` labels, the earliest start and the latest sample."""
    sums = containers.group_by(POD_KEY).agg(
        pl.col(metrics).sum(),
        pl.col(metrics).is_not_null().any().name.prefix("_any:"),
        *(pl.col(c).first() for c in carried),
        pl.col("start_time").min(),
        pl.col("sample_time").max(),
    )
    # a group whose values are all missing has no sum (Polars' sum of nothing is 0)
    return sums.with_columns(pl.when(pl.col(f"_any:{m}")).then(pl.col(m)).alias(m) for m in metrics).drop(
        [f"_any:{m}" for m in metrics]
    )


def _pod_custom_metrics(labeled: pa.Table, entities: pl.DataFrame) -> pa.Table:
    """``custom/*`` metrics of containers summed into their pods, unless the pod reported its own.
    Only the custom rows leave Arrow (the filesystem rows, millions of them, are never copied)."""
    if labeled.num_rows == 0:
        return labeled
    # look at the few distinct metric names (the dictionary), not at millions of rows
    names = pc.unique(labeled.column("metric")).dictionary_decode()
    custom_names = pc.filter(names, pc.starts_with(names, catalogue.CUSTOM_PREFIX))
    if len(custom_names) == 0:
        return labeled
    custom_rows = labeled.filter(pc.is_in(labeled.column("metric"), value_set=custom_names))
    frame = pl.from_arrow(custom_rows.select(["entity", "metric", "value"]))
    assert isinstance(frame, pl.DataFrame)
    rows = entities.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("entity"), "type", *POD_KEY)
    custom = frame.with_columns(pl.col("metric").cast(pl.String)).join(rows, on="entity", how="inner")
    pod_rows = rows.filter(pl.col("type") == POD).unique(subset=list(POD_KEY), keep="first")
    from_containers = (
        custom.filter(pl.col("type") == CONTAINER)
        .group_by([*POD_KEY, "metric"], maintain_order=True)
        .agg(pl.col("value").sum())
        .join(pod_rows.select("entity", *POD_KEY), on=list(POD_KEY), how="inner")
    )
    own = custom.filter(pl.col("type") == POD).select("entity", "metric")
    new = from_containers.join(own, on=["entity", "metric"], how="anti")
    if new.height == 0:
        return labeled
    appended = new.select("entity", "metric", pl.lit(None, pl.Int64).alias("value_int"), "value").to_arrow()
    return pa.concat_tables([labeled, _shape_like(appended, labeled.schema)])


def _shape_like(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` with every column of ``schema`` (null where absent) in its types and order."""
    columns = [
        rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


class NamespaceAggregator:
    name = "namespace_aggregator"
    skippable = True

    def process(self, frames: Frames, dimensions: object) -> Frames:
        entities = frames.entities
        metrics = [m for m in NAMESPACE_METRICS if m in entities.columns]
        pods = entities.filter((pl.col("type") == POD) & pl.col("namespace_name").is_not_null())
        sums = pods.group_by("namespace_name", maintain_order=True).agg(
            *(_sum(m) for m in metrics),
            *([pl.col("namespace_id").drop_nulls().first()] if "namespace_id" in entities.columns else []),
        )
        existing = entities.filter(pl.col("type") == NS).select("namespace_name")
        created = sums.join(existing, on="namespace_name", how="anti").with_columns(pl.lit(NS).alias("type"))
        # namespace rows already in the window (none come from kubelets) take the sums where unset
        entities = _fill_from(entities, sums, on=["namespace_name"], where=pl.col("type") == NS, metrics=metrics)
        if created.height:
            entities = append_rows(entities, created)
        return frames.with_entities(entities)


class NodeAggregator:
    name = "node_aggregator"
    skippable = True

    def process(self, frames: Frames, dimensions: object) -> Frames:
        entities = frames.entities
        metrics = [m for m in NODE_METRICS if m in entities.columns]
        pods = entities.filter((pl.col("type") == POD) & pl.col("nodename").is_not_null())
        sums = pods.group_by("nodename", maintain_order=True).agg(*(_sum(m) for m in metrics))
        # never creates nodes: a pod on a node the window lacks adds to nothing (Heapster logs it)
        entities = _fill_from(entities, sums, on=["nodename"], where=pl.col("type") == NODE, metrics=metrics)
        return frames.with_entities(entities)


class ClusterAggregator:
    name = "cluster_aggregator"
    skippable = True

    def process(self, frames: Frames, dimensions: object) -> Frames:
        entities = frames.entities
        metrics = [m for m in NAMESPACE_METRICS if m in entities.columns]
        namespaces = entities.filter(pl.col("type") == NS)
        cluster = namespaces.select(*(_sum(m) for m in metrics)) if namespaces.height else pl.DataFrame()
        if cluster.height == 0:  # present even when there is nothing to sum
            cluster = pl.DataFrame({m: [None] for m in metrics}, schema={m: entities.schema[m] for m in metrics})
        cluster = cluster.with_columns(pl.lit(CLUSTER).alias("type"))
        return frames.with_entities(append_rows(entities, cluster))


def _fill_from(
    entities: pl.DataFrame, sums: pl.DataFrame, *, on: Sequence[str], where: pl.Expr, metrics: list[str]
) -> pl.DataFrame:
    """Set ``metrics`` of the rows matching ``where`` from ``sums`` (matched on ``on``), keeping values
    those rows already have. Only the target rows are looked up and written back (scatter): a third
    of the time of a when/then over every row."""
    if not metrics or sums.height == 0:
        return entities
    rows = entities.select(pl.arg_where(where)).to_series()
    targets = entities.select(*on, *metrics)[rows]
    found = lookup(targets, sums.rename({m: f"_sum:{m}" for m in metrics}), on, [f"_sum:{m}" for m in metrics])
    filled = targets.hstack(found).select(
        pl.coalesce(m, f"_sum:{m}").cast(entities.schema[m]).alias(m) for m in metrics
    )
    return scatter(entities, rows, filled)
