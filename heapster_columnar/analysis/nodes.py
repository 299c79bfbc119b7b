"""Node efficiency: how much of each node's allocatable CPU and memory was used and reserved over
a period, which nodes sat idle, and how nodes spread over utilization bands.

Definitions follow Heapster's node autoscaling enricher (HEAPSTER.md §5.8,
``metrics/processors/node_autoscaling_enricher.go``): utilization = usage / allocatable,
reservation = Σ requests of the pods placed on the node / allocatable, both only where allocatable
is known and non-zero. Two differences: memory usage is the node's working set (what the kubelet
evicts on and ``kubectl top node`` shows) where Heapster divided ``memory/usage``, which also
counts reclaimable page cache; and the figures are averages over the period, read from the
daily node rollups (:func:`heapster_columnar.analysis.rollups.node_days`), not one window's values.

A node is **idle** when its average CPU utilization is below 10 % and its average memory
utilization below 20 % over the period, the thresholds of the aws-samples eks-cost-intelligence
compute-efficiency reference (FIELD-NOTES §4: "idle nodes <10 % CPU and <20 % memory over 7 days").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from heapster_columnar.analysis.rollups import node_days
from heapster_columnar.analysis.store import Store, TimeRange
from heapster_columnar.errors import ConfigError

__all__ = ["RATIO_COLUMNS", "bands", "distribution", "efficiency", "summarize"]

# the ratio columns of :func:`efficiency`, which :func:`distribution` counts nodes of
RATIO_COLUMNS = (
    "cpu_utilization",
    "cpu_utilization_p95",
    "cpu_reservation",
    "memory_utilization",
    "memory_utilization_p95",
    "memory_reservation",
)

_SCHEMA: dict[str, pl.DataType] = {
    "node": pl.String(),
    "days": pl.UInt32(),
    "seconds": pl.Float64(),
    "allocatable_cpu": pl.Int64(),
    "allocatable_memory": pl.Int64(),
    "cpu_usage": pl.Float64(),
    "cpu_p95": pl.Float64(),
    "cpu_requested": pl.Float64(),
    "memory_usage": pl.Float64(),
    "memory_p95": pl.Float64(),
    "memory_requested": pl.Float64(),
    **{c: pl.Float64() for c in RATIO_COLUMNS},
    "idle": pl.Boolean(),
}


def efficiency(
    store: Store,
    since: str | timedelta | datetime | TimeRange | None = "7d",
    *,
    until: datetime | None = None,
    cpu_idle: float = 0.10,
    memory_idle: float = 0.20,
) -> pl.DataFrame:
    """One row per node: average and p95 usage, utilization, reservation and the ``idle`` flag.

    See :func:`summarize` for the columns and formulas; the rows are the daily node rollups of the
    UTC days ``since`` touches (a duration back from the store's newest window, a start time or a
    ``TimeRange``).
    """
    try:
        days = node_days(store, since if isinstance(since, TimeRange) else store.resolve(since, until))
    except (pl.exceptions.ComputeError, OSError) as exc:  # Polars does not say which file
        raise store.error(exc) from exc
    return summarize(days, cpu_idle=cpu_idle, memory_idle=memory_idle)


def summarize(days: pl.DataFrame, *, cpu_idle: float = 0.10, memory_idle: float = 0.20) -> pl.DataFrame:
    """:func:`efficiency` of node-day rows already read (``rollups.node_days``).

    One row per ``node``, over its days (``samples``: CPU points, ``memory_samples``: memory
    points), sorted by node name:

    - ``cpu_usage`` = Σ ``cpu_sum`` / Σ ``samples`` (millicores, average while reporting);
      ``memory_usage`` likewise in bytes;
    - ``cpu_utilization`` = Σ (``cpu_sum`` / ``allocatable_cpu``) / Σ ``samples`` (each day against
      that day's allocatable, so a resized node stays right); memory likewise;
    - ``cpu_p95``, ``cpu_utilization_p95``: the highest daily 95th percentile (the rollups keep
      one per day). It is an upper bound of the period's 95th percentile, exact for one day;
    - ``cpu_requested`` = Σ (``cpu_requested`` * ``samples``) / Σ ``samples`` (the average Σ
      requests placed), ``cpu_reservation`` = the same over allocatable; memory likewise;
    - ``allocatable_cpu`` / ``allocatable_memory``: the last day's (millicores, bytes);
    - ``idle``: ``cpu_utilization < cpu_idle`` and ``memory_utilization < memory_idle`` (null when
      allocatable is unknown, as utilization then is).
    """
    for name, value in (("cpu_idle", cpu_idle), ("memory_idle", memory_idle)):
        if not 0 <= value <= 1:
            raise ConfigError(f"{name} is a fraction of allocatable between 0 and 1, not {value}")
    if days.is_empty():
        return pl.DataFrame(schema=_SCHEMA)
    cpu_alloc = _positive("allocatable_cpu")
    mem_alloc = _positive("allocatable_memory")
    samples = pl.col("samples").cast(pl.Float64)
    memory_samples = pl.col("memory_samples").cast(pl.Float64)
    frame = (
        days.sort("day")
        .group_by("nodename")
        .agg(
            pl.len().cast(pl.UInt32).alias("days"),
            pl.col("seconds").sum(),
            pl.col("allocatable_cpu").last(),
            pl.col("allocatable_memory").last(),
            (pl.col("cpu_sum").sum() / samples.sum()).alias("cpu_usage"),
            pl.col("cpu_p95").max(),
            ((pl.col("cpu_requested").fill_null(0) * samples).sum() / samples.sum()).alias("cpu_requested"),
            (pl.col("memory_sum").sum() / memory_samples.sum()).alias("memory_usage"),
            pl.col("memory_p95").max(),
            ((pl.col("memory_requested").fill_null(0) * samples).sum() / samples.sum()).alias("memory_requested"),
            _weighted(pl.col("cpu_sum") / cpu_alloc, samples, per_sample=True).alias("cpu_utilization"),
            (pl.col("cpu_p95") / cpu_alloc).max().alias("cpu_utilization_p95"),
            _weighted(pl.col("cpu_requested").fill_null(0) / cpu_alloc, samples).alias("cpu_reservation"),
            _weighted(pl.col("memory_sum") / mem_alloc, memory_samples, per_sample=True).alias("memory_utilization"),
            (pl.col("memory_p95") / mem_alloc).max().alias("memory_utilization_p95"),
            _weighted(pl.col("memory_requested").fill_null(0) / mem_alloc, samples).alias("memory_reservation"),
        )
        .with_columns(
            ((pl.col("cpu_utilization") < cpu_idle) & (pl.col("memory_utilization") < memory_idle)).alias("idle")
        )
    )
    return frame.rename({"nodename": "node"}).select(list(_SCHEMA)).sort("node")


def _positive(column: str) -> pl.Expr:
    """Allocatable as a divisor: null when unknown or zero (Heapster sets no ratio then)."""
    value = pl.col(column).cast(pl.Float64)
    return pl.when(value > 0).then(value)


def _weighted(ratio: pl.Expr, weight: pl.Expr, *, per_sample: bool = False) -> pl.Expr:
    """Σ ratio * weight / Σ weight over the days whose ratio is known (``per_sample``: the ratio
    is already a sum over the day's samples, so Σ ratio / Σ weight)."""
    known = ratio.is_not_null()
    numerator = ratio.sum() if per_sample else (ratio * weight).sum()
    denominator = weight.filter(known).sum()
    return pl.when(denominator > 0).then(numerator / denominator)


def distribution(
    store: Store,
    since: str | timedelta | datetime | TimeRange | None = "7d",
    *,
    until: datetime | None = None,
    width: float = 0.10,
) -> pl.DataFrame:
    """How many nodes fall in each utilization and reservation band (``width`` wide, default
    10 %), for histograms: :func:`bands` of :func:`efficiency`."""
    return bands(efficiency(store, since, until=until), width=width)


def bands(frame: pl.DataFrame, *, width: float = 0.10, columns: Sequence[str] = RATIO_COLUMNS) -> pl.DataFrame:
    """Nodes per band of each ratio column of ``frame`` (an :func:`efficiency` result).

    Long format, every band present (zero counts included, so plots have no holes): ``measure``
    (the column), ``lower``, ``upper`` (the band ``[lower, upper)``; the last band is
    ``[1, inf)``: nodes over their allocatable), ``nodes``. Nodes without the ratio are left out.
    """
    if not 0 < width <= 1:
        raise ConfigError(f"band width is a fraction between 0 and 1, not {width}")
    count = math.ceil(1 / width - 1e-9)
    lowers = [min(round(i * width, 12), 1.0) for i in range(count)] + [1.0]
    uppers = [*lowers[1:-1], 1.0, math.inf]
    grid = pl.DataFrame(
        {
            "measure": [c for c in columns for _ in lowers],
            "band": [i for _ in columns for i in range(len(lowers))],
            "lower": lowers * len(columns),
            "upper": uppers * len(columns),
        },
        schema={"measure": pl.String, "band": pl.Int64, "lower": pl.Float64, "upper": pl.Float64},
    )
    long = frame.select(columns).unpivot(variable_name="measure", value_name="ratio").drop_nulls("ratio")
    # the 1e-9 keeps a ratio exactly on a boundary (3 * 0.1 is 0.30000000000000004) in the upper band
    counts = (
        long.with_columns(
            pl.when(pl.col("ratio") >= 1.0)
            .then(count)
            .otherwise((pl.col("ratio") / width + 1e-9).floor().cast(pl.Int64).clip(0, count - 1))
            .alias("band")
        )
        .group_by("measure", "band")
        .agg(pl.len().cast(pl.UInt32).alias("nodes"))
    )
    return (
        grid.join(counts, on=["measure", "band"], how="left", maintain_order="left")
        .with_columns(pl.col("nodes").fill_null(0))
        .drop("band")
    )
