"""Usage over time: one metric of one level (cluster, namespace, node, pod, container) as a
time series, bucketed to a step, from the stored points.

Heapster stores every level as its own entity ``type`` (``cluster``, ``ns``, ``node``, ``pod``,
``pod_container``; HEAPSTER.md §2a, §5.4-5.7): a namespace's CPU is the ``ns`` point the
namespace aggregator summed from its pods in each window, not something re-summed here. So a
level's series reads only that level's rows: metric, type, namespace and node are handed to
:meth:`Store.points` as filters for it to push into the Parquet scan, where the row-group
statistics of the sorted files (``SORT_KEYS`` starts with type, metric, namespace, node; each entity
type in row groups of its own) skip other
namespaces' rows, and the time range becomes a partition filter (``test_usage`` checks the plan).

Bucketing: a point's timestamp is its window's end (docs/schema.md); it belongs to the bucket
``[t, t + step)`` that timestamp falls in, ``t`` aligned to the epoch (``1h`` buckets start on the
hour, ``1d`` at midnight UTC, ``1w`` on Mondays as Polars aligns weeks). Within a bucket, per
entity, ``agg`` reduces the window values: ``mean`` (the time-weighted average when windows are
equal, which they are: one resolution per store), ``max``, ``min``, ``sum`` or a percentile
``pNN`` (linear interpolation between the two nearest values, as ``node_days``' p95).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from heapster_columnar.analysis.store import Store, TimeRange, parse_duration
from heapster_columnar.errors import ConfigError
from heapster_columnar.model import catalogue

__all__ = ["AGGREGATIONS", "LEVELS", "RENAMES", "Level", "polars_step", "usage"]

# the aggregations within a bucket; any percentile pNN works, these are the usual ones
AGGREGATIONS = ("mean", "max", "min", "sum", "p50", "p90", "p95", "p99")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_STEP = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")


@dataclass(frozen=True, slots=True)
class Level:
    """A level of aggregation: the points' ``type`` and the labels that key one entity of it."""

    type: str
    keys: tuple[str, ...]


# Heapster's MetricSet keys (metrics/core/ms_keys.go, HEAPSTER.md §2d)
LEVELS: dict[str, Level] = {
    "cluster": Level("cluster", ()),
    "namespace": Level("ns", ("namespace_name",)),
    "node": Level("node", ("nodename",)),
    "pod": Level("pod", ("namespace_name", "pod_name")),
    "container": Level("pod_container", ("namespace_name", "pod_name", "container_name")),
}
_ALIASES = {"ns": "namespace", "pod_container": "container"}
# output names of the label columns (as the other analysis frames name them)
RENAMES = {"namespace_name": "namespace", "nodename": "node", "pod_name": "pod", "container_name": "container"}
# which filters a level's rows can answer: ns rows have no node, node rows no namespace or pod
_FILTERS = {
    "cluster": frozenset[str](),
    "namespace": frozenset({"namespace"}),
    "node": frozenset({"node"}),
    "pod": frozenset({"namespace", "node", "pod"}),
    "container": frozenset({"namespace", "node", "pod"}),
}


def usage(
    store: Store,
    metric: str = "cpu/usage_rate",
    *,
    level: str = "cluster",
    since: str | timedelta | datetime | TimeRange | None = "7d",
    until: datetime | None = None,
    step: str = "1h",
    namespace: str | None = None,
    node: str | None = None,
    pod: str | None = None,
    agg: str = "mean",
) -> pl.DataFrame:
    """``metric`` of every entity of ``level`` in ``since``, one row per entity and ``step`` bucket.

    Columns: ``timestamp`` (bucket start, UTC); the level's keys (``namespace``, ``node``,
    ``pod``, ``container``: Heapster's key of the level, plus ``resource_id`` or ``make``,
    ``model``, ``accelerator_id`` for a labeled metric); ``value`` (``agg`` of the bucket's
    points, in the metric's unit: millicores for ``cpu/usage_rate``, bytes for ``memory/*``);
    ``samples`` (points in the bucket: fewer than ``step / resolution`` means missing windows
    or a partial first or last bucket). Sorted by keys, then time.

    ``since`` is a duration back from the store's newest window (:meth:`Store.resolve`), a
    start time or a ``TimeRange``. ``namespace``, ``node``, ``pod`` keep one entity's rows and
    are refused (``ConfigError``) where the level's rows do not carry them (``ns`` rows have no
    node, ``node`` rows no namespace). An unreadable Parquet file raises ``StoreError`` naming it.
    """
    try:
        return _query(
            store,
            metric,
            level=level,
            since=since,
            until=until,
            step=step,
            namespace=namespace,
            node=node,
            pod=pod,
            agg=agg,
        ).collect()
    except (pl.exceptions.ComputeError, OSError) as exc:  # Polars does not say which file
        raise store.error(exc) from exc


def _query(
    store: Store,
    metric: str,
    *,
    level: str,
    since: str | timedelta | datetime | TimeRange | None,
    until: datetime | None,
    step: str,
    namespace: str | None,
    node: str | None,
    pod: str | None,
    agg: str,
) -> pl.LazyFrame:
    """The lazy query behind :func:`usage` (its plan shows which filters reach the scan)."""
    name = _ALIASES.get(level, level)
    if name not in LEVELS:
        raise ConfigError(f"unknown level {level!r} (one of {', '.join(LEVELS)})")
    spec = LEVELS[name]
    wanted = {k for k, v in (("namespace", namespace), ("node", node), ("pod", pod)) if v is not None}
    refused = wanted - _FILTERS[name]
    if refused:
        raise ConfigError(
            f"level {name!r} cannot be filtered by {', '.join(sorted(refused))}: its points lack that label"
        )
    every = polars_step(step)
    reduce = _aggregation(agg)
    time = since if isinstance(since, TimeRange) else store.resolve(since, until)
    points = store.points(
        time,
        metrics=[metric],
        types=[spec.type],
        namespaces=[namespace] if namespace is not None else None,
        nodes=[node] if node is not None else None,
    )
    if pod is not None:
        points = points.filter(pl.col("pod_name") == pod)
    # a labeled metric (filesystem/* by resource_id, accelerator/* by make, model, id) has one
    # series per label value within an entity
    descriptor = catalogue.BY_NAME.get(metric)
    keys = [*spec.keys, *(descriptor.labels if descriptor is not None else ())]
    return (
        points.select("timestamp", *keys, "value")
        .with_columns(pl.col("timestamp").dt.truncate(every))
        .group_by(*keys, "timestamp")
        .agg(reduce.alias("value"), pl.len().cast(pl.Int64).alias("samples"))
        .sort(*keys, "timestamp", nulls_last=True)
        .select("timestamp", *keys, "value", "samples")
        .rename({k: RENAMES[k] for k in spec.keys})
    )


def polars_step(step: str) -> str:
    """``step`` as a Polars duration string (``1h`` stays ``1h``; ``1.5h`` becomes ``5400s``);
    ``ConfigError`` naming it when it is not a duration."""
    seconds = parse_duration(step).total_seconds()  # ConfigError: not a duration
    m = _STEP.match(step)
    if m is not None:
        return f"{m.group(1)}{m.group(2)}"
    if seconds < 1 or seconds != int(seconds):
        raise ConfigError(f"step {step!r}: give whole seconds (examples: 30s, 15m, 1h)")
    return f"{int(seconds)}s"


def _aggregation(agg: str) -> pl.Expr:
    value = pl.col("value")
    simple = {"mean": value.mean(), "max": value.max(), "min": value.min(), "sum": value.sum()}
    if agg in simple:
        return simple[agg]
    m = _PERCENTILE.match(agg)
    if m is None or not 0 < float(m.group(1)) < 100:
        raise ConfigError(f"unknown aggregation {agg!r} (mean, max, min, sum or a percentile such as p95)")
    return value.quantile(float(m.group(1)) / 100, "linear")
