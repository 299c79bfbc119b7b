"""Top consumers: in one processed window (what ``kubectl top`` and the demo show), and over
stored history by usage, request or waste (:func:`top`, the ``report top`` command)."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from heapster_columnar.analysis.rollups import container_days
from heapster_columnar.analysis.store import Store, TimeRange
from heapster_columnar.errors import ConfigError
from heapster_columnar.model.batch import MetricBatch

__all__ = ["RANKINGS", "RESOURCES", "TOP_LEVELS", "rank", "top", "top_namespaces", "top_pods"]

CPU, MEMORY = "cpu/usage_rate", "memory/working_set"


def _entities(batch: MetricBatch) -> pl.DataFrame:
    frame = pl.from_arrow(batch.entities)
    assert isinstance(frame, pl.DataFrame)
    return frame


def top_namespaces(batch: MetricBatch, n: int = 10) -> pl.DataFrame:
    """Namespaces by CPU: millicores used and requested, memory used and requested (MiB)."""
    frame = _entities(batch).filter(pl.col("type") == "ns")
    return (
        frame.select(
            pl.col("namespace_name").alias("namespace"),
            pl.col(CPU).alias("cpu_m"),
            pl.col("cpu/request").alias("cpu_request_m"),
            (pl.col("memory/usage") / 2**20).round(1).alias("memory_mib"),
            (pl.col("memory/request") / 2**20).round(1).alias("memory_request_mib"),
        )
        .sort("cpu_m", descending=True, nulls_last=True)
        .head(n)
    )


def top_pods(batch: MetricBatch, n: int = 10, *, by: str = CPU) -> pl.DataFrame:
    """Pods by ``by`` (CPU millicores or memory working set), with their node."""
    frame = _entities(batch).filter(pl.col("type") == "pod")
    return (
        frame.select(
            pl.col("namespace_name").alias("namespace"),
            pl.col("pod_name").alias("pod"),
            pl.col("nodename").alias("node"),
            pl.col(CPU).alias("cpu_m"),
            (pl.col(MEMORY) / 2**20).round(1).alias("working_set_mib"),
            pl.col(by).alias("_by"),
        )
        .sort("_by", descending=True, nulls_last=True)
        .drop("_by")
        .head(n)
    )


# -- over stored history ---------------------------------------------------------------------------

# output names of the key columns (as the other analysis frames name them)
_RENAMES = {"namespace_name": "namespace", "pod_name": "pod", "container_name": "container"}
TOP_LEVELS: dict[str, tuple[str, ...]] = {
    "namespace": ("namespace_name",),
    "workload": ("namespace_name", "workload_kind", "workload_name"),
    "pod": ("namespace_name", "pod_name"),
    "container": ("namespace_name", "pod_name", "container_name"),
}
RANKINGS = ("usage", "request", "waste")
RESOURCES = ("cpu", "memory")


def top(
    store: Store,
    by: str = "usage",
    resource: str = "cpu",
    level: str = "namespace",
    n: int = 10,
    since: str | timedelta | datetime | TimeRange | None = "7d",
    *,
    until: datetime | None = None,
    namespace: str | None = None,
) -> pl.DataFrame:
    """The ``n`` biggest namespaces, workloads, pods or containers of ``since`` by ``resource``
    ``usage``, ``request`` or ``waste`` (request - usage), from the daily container rollups.

    Every figure is an average over the period of the sum over the entity's containers, so
    a namespace's figure is the sum of its containers' (FIELD-NOTES §4, "rank namespaces/pods by
    Σusage, Σrequest, request-usage"), and a container that ran half the period counts half:

    - ``usage`` = Σ ``cpu_sum`` * step / period: the time-weighted average of the entity's
      total usage (``cpu_sum`` / ``samples`` for a container running throughout), in millicores;
      memory the same with the working set (``memory_sum``), in bytes;
    - ``request`` = Σ request * seconds running / period (a container without a request counts 0);
    - ``waste`` = request - usage (negative: the entity uses more than it requested).

    ``step`` is a row's ``seconds`` / ``samples`` (the store's resolution); ``period`` is the
    seconds the store covers: per day, the longest any container ran, summed over the days the
    range touches (rollups are whole UTC days). ``since``: a duration back from the store's
    newest window, a start time or a ``TimeRange``. Columns: the level's keys (``namespace``,
    ``workload_kind``, ``workload_name``, ``pod``, ``container``), ``rank``,
    ``<resource>_usage``, ``<resource>_request``, ``<resource>_waste``, ``containers`` (distinct
    containers seen), sorted by the ranking (largest first; ties by key).
    """
    _check(by, resource, level, n)  # before any I/O
    try:
        time = since if isinstance(since, TimeRange) else store.resolve(since, until)
        days = container_days(store, time, histograms=False, labels=False)
    except (pl.exceptions.ComputeError, OSError) as exc:  # Polars does not say which file
        raise store.error(exc) from exc
    return rank(days, by=by, resource=resource, level=level, n=n, namespace=namespace)


def rank(
    days: pl.DataFrame,
    *,
    by: str = "usage",
    resource: str = "cpu",
    level: str = "namespace",
    n: int = 10,
    namespace: str | None = None,
) -> pl.DataFrame:
    """:func:`top` of container-day rows already read (``rollups.container_days``)."""
    _check(by, resource, level, n)
    keys = list(TOP_LEVELS[level])
    out = [_RENAMES.get(k, k) for k in keys]
    names = [f"{resource}_usage", f"{resource}_request", f"{resource}_waste"]
    if days.is_empty():
        return pl.DataFrame(
            schema={
                **dict.fromkeys(out, pl.String),
                "rank": pl.UInt32,
                **dict.fromkeys(names, pl.Float64),
                "containers": pl.UInt32,
            }
        )
    step = days["seconds"] / days["samples"]
    fallback = step.filter(days["samples"] > 0).median()
    frame = days.with_columns(
        pl.when(pl.col("samples") > 0)
        .then(pl.col("seconds") / pl.col("samples"))
        .otherwise(pl.lit(fallback, pl.Float64))
        .alias("_step")
    )
    covered = frame.group_by("day").agg(
        pl.max_horizontal(pl.col("seconds"), pl.col("memory_samples").fill_null(0) * pl.col("_step")).max()
    )
    period = float(covered.to_series(1).sum()) or float("nan")  # no samples at all: no average
    if resource == "cpu":
        used = pl.col("cpu_sum").fill_null(0) * pl.col("_step")
        requested = pl.col("cpu_request").fill_null(0) * pl.col("samples") * pl.col("_step")
    else:
        used = pl.col("memory_sum").fill_null(0) * pl.col("_step")
        requested = pl.col("memory_request").fill_null(0) * pl.col("memory_samples").fill_null(0) * pl.col("_step")
    if namespace is not None:
        frame = frame.filter(pl.col("namespace_name") == namespace)
    usage, request, waste = names
    measure = {"usage": usage, "request": request, "waste": waste}[by]
    return (
        frame.group_by(keys)
        .agg(
            (used.sum() / period).alias(usage),
            (requested.sum() / period).alias(request),
            pl.struct("pod_name", "container_name").n_unique().cast(pl.UInt32).alias("containers"),
        )
        .with_columns((pl.col(request) - pl.col(usage)).alias(waste))
        .sort([measure, *keys], descending=[True, *[False] * len(keys)], nulls_last=True)
        .head(n)
        .with_row_index("rank", offset=1)
        .select(*keys, "rank", usage, request, waste, "containers")
        .rename(dict(zip(keys, out, strict=True)))
    )


def _check(by: str, resource: str, level: str, n: int) -> None:
    if by not in RANKINGS:
        raise ConfigError(f"unknown ranking {by!r} (one of {', '.join(RANKINGS)})")
    if resource not in RESOURCES:
        raise ConfigError(f"unknown resource {resource!r} (one of {', '.join(RESOURCES)})")
    if level not in TOP_LEVELS:
        raise ConfigError(f"unknown level {level!r} (one of {', '.join(TOP_LEVELS)})")
    if n < 1:
        raise ConfigError(f"n must be at least 1, not {n}")
