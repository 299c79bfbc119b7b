"""Right-sizing: what each container (or workload container) should request, from the daily rollups.

Two recommenders side by side with the current requests, both computed on ``container_days``
only (never raw points): 30 days of a 1,000-node cluster are ~1.35 M container-days holding
~20 M histogram cells, merged per container with one scatter-add (``np.bincount``) into dense
per-group bucket arrays and a cumulative sum, never a Python loop per container.

**VPA** — the Vertical Pod Autoscaler recommender (kubernetes/autoscaler
``vertical-pod-autoscaler/pkg/recommender/logic/recommender.go``, ``logic/estimator.go``,
``model/aggregate_container_state.go``, ``util/histogram.go``):

- CPU: a histogram of the cpu/usage_rate samples in VPA's exponential buckets (the rollups'
  ``cpu_buckets``/``cpu_counts``), each sample weighted by ``max(cpu request in cores, 0.1)``
  (``minSampleWeight``) and by exponential decay with a 24 h half-life.
- Memory: one peak per 24 h interval (the rollup's ``memory_max``, the day's working-set peak) in
  ``MEMORY_BUCKETS``, weight 1.0 decayed the same way.
- ``Percentile(p)``: the first bucket whose cumulative weight reaches ``p * total``; its value is
  the bucket's *end* (``ExponentialBuckets.percentile_value``). Target = p90, lower bound = p50,
  upper bound = p95, all + 15 % safety margin.
- Confidence ``days = min(last_seen - first_seen in days, samples / 1440)``; upper bound
  * ``(1 + 1/days)``, lower bound * ``(1 + 0.001/days)^-2``. No history (a single sample): the
  upper bound is infinite, shown as null; the lower bound is 0, i.e. the floor.
- Floors: 25 millicores and 250 MiB (``podMinMemoryMb = 250`` * 1024 * 1024 bytes) per pod,
  split evenly over the pod's containers; applied last, to all three values.
- Workload level: the histograms of all pods of a workload are merged per container name (VPA
  aggregates per container name within its target); samples add up, first/last seen are the
  extremes.

**KRR "simple"** (robusta-dev/krr ``robusta_krr/strategies/simple.py``, README "Algorithm"): CPU
request = p95 of the samples (plain counts, no decay, no request weight), memory = the maximum
over the period + 15 %; at workload level the maximum over the pods of each pod's value, as KRR
takes ``max`` over its per-pod series. Fewer than 100 samples (``points_required``): null.

**Verdict** — current request against the chosen strategy's target, with a ±20 % band (the Red
Hat right-sizing blog's "well-sized" band): above ``1.2 * target`` over-requested, below
``0.8 * target`` under-requested, else well-sized; no request set: ``no-request``; KRR without
enough samples: ``insufficient-data``. ``verdict`` combines CPU and memory, starvation first:
under-requested if either is, else over-requested if either is, else well-sized if both are.

Approximations (on purpose, all from the day granularity of the rollups):

- Decay is per day: every sample of a day weighs ``2^-(age in days)``, age counted from the newest
  day in the range, instead of ``2^-(age in hours / 24)`` per sample. A percentile does not change
  when every weight is scaled by one factor, so only the spread of weights *within* a day (at most
  a factor 2) is lost. VPA also forgets a histogram once its weights fall below 1e-4 relative to
  now; here a container keeps its own history's relative weights however old.
- VPA's memory interval starts at a container's first sample; here it is the UTC day.
- VPA truncates to whole millicores / bytes at each step; the values here are the unrounded
  floats (a 300 m container: target 351.2 m here, 350 m in VPA's object).
- KRR's p95 comes from Prometheus ``quantile_over_time`` on raw samples; here it is the end of the
  histogram bucket holding it, i.e. up to 5 % above.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import polars as pl

from heapster_columnar.analysis.rollups import CPU_BUCKETS, MEMORY_BUCKETS, ExponentialBuckets, container_days
from heapster_columnar.analysis.store import Store, TimeRange
from heapster_columnar.errors import ConfigError

__all__ = [
    "HALF_LIFE_DAYS",
    "POD_MIN_CPU_MILLICORES",
    "POD_MIN_MEMORY_BYTES",
    "SAFETY_MARGIN",
    "Level",
    "Strategy",
    "recommend",
    "recommend_frame",
]

Level = Literal["container", "workload"]
Strategy = Literal["vpa", "krr"]

# recommender.go flags (defaults)
TARGET_PERCENTILE, LOWER_PERCENTILE, UPPER_PERCENTILE = 0.9, 0.5, 0.95
SAFETY_MARGIN = 0.15
POD_MIN_CPU_MILLICORES = 25.0
POD_MIN_MEMORY_BYTES = 250.0 * 1024 * 1024
# aggregate_container_state.go / aggregations_config.go
MIN_SAMPLE_WEIGHT_CORES = 0.1
HALF_LIFE_DAYS = 1.0
SAMPLES_PER_DAY = 60 * 24  # estimator.go: 1 sample a minute for a day = confidence 1
# krr simple strategy defaults
KRR_CPU_PERCENTILE = 0.95
KRR_MEMORY_BUFFER = 0.15
KRR_POINTS_REQUIRED = 100
BAND = 0.2
_VPA_PERCENTILES = (LOWER_PERCENTILE, TARGET_PERCENTILE, UPPER_PERCENTILE)
_BLOCK_CELLS = 1 << 23  # 64 MiB of float64 per block of the dense histogram (~47,000 groups)

_CONTAINER = ["namespace_name", "pod_name", "container_name"]
_GROUPS: dict[str, list[str]] = {
    "container": _CONTAINER,
    "workload": ["namespace_name", "workload_kind", "workload_name", "container_name"],
}
# the "pod" a floor is split over: containers of one pod, or container names of one workload
_PODS: dict[str, list[str]] = {
    "container": ["namespace_name", "pod_name"],
    "workload": ["namespace_name", "workload_kind", "workload_name"],
}
_RENAMES = {"namespace_name": "namespace", "pod_name": "pod", "container_name": "container"}
_DAYS_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "namespace_name": pl.String(),
    "pod_name": pl.String(),
    "container_name": pl.String(),
    "workload_kind": pl.String(),
    "workload_name": pl.String(),
    "samples": pl.Int64(),
    "first_seen": pl.Datetime("ms", "UTC"),
    "last_seen": pl.Datetime("ms", "UTC"),
    "cpu_buckets": pl.List(pl.Int16()),
    "cpu_counts": pl.List(pl.UInt32()),
    "memory_samples": pl.Int64(),
    "memory_max": pl.Float64(),
    "cpu_request": pl.Int64(),
    "memory_request": pl.Int64(),
}


def recommend(
    store: Store,
    since: str | timedelta | datetime | TimeRange | None = "7d",
    *,
    level: Level = "container",
    namespace: str | Sequence[str] | None = None,
    strategy: Strategy = "vpa",
) -> pl.DataFrame:
    """VPA and KRR recommendations for the containers seen in ``since`` (a duration back from the
    store's newest window, a start time, or a ``TimeRange``; the whole UTC days ``container_days``
    reads for it), one row per container (``level="container"``) or per container name of a
    workload (``"workload"``).

    Columns: the keys (``namespace``, ``pod``, ``container`` + ``workload_kind``,
    ``workload_name``; or ``namespace``, ``workload_kind``, ``workload_name``, ``container``,
    ``pods``), ``history_days`` (VPA's confidence), ``samples``; ``cpu_request`` and
    ``vpa_cpu_lower`` / ``vpa_cpu_target`` / ``vpa_cpu_upper``, ``krr_cpu`` in millicores;
    ``memory_request`` and ``vpa_memory_*``, ``krr_memory`` in bytes; ``cpu_verdict``,
    ``memory_verdict`` and ``verdict`` against ``strategy``'s values (see the module docstring).
    The current request is the newest day's (at workload level: of the pod seen last).
    """
    time = since if isinstance(since, TimeRange) else store.resolve(since)
    return recommend_frame(
        container_days(store, time, labels=False), level=level, namespace=namespace, strategy=strategy
    )


def recommend_frame(
    days: pl.DataFrame,
    *,
    level: Level = "container",
    namespace: str | Sequence[str] | None = None,
    strategy: Strategy = "vpa",
) -> pl.DataFrame:
    """:func:`recommend` on ``container_days`` rows already read (for benchmarks and callers that
    hold a range's rollups in memory)."""
    if level not in _GROUPS:
        raise ConfigError(f"unknown level {level!r} (container or workload)")
    if strategy not in ("vpa", "krr"):
        raise ConfigError(f"unknown strategy {strategy!r} (vpa or krr)")
    if not set(_DAYS_SCHEMA) <= set(days.columns):
        days = pl.DataFrame(schema=_DAYS_SCHEMA)
    rows = days.select([pl.col(c).cast(t) for c, t in _DAYS_SCHEMA.items()])
    if namespace is not None:
        wanted = [namespace] if isinstance(namespace, str) else list(namespace)
        rows = rows.filter(pl.col("namespace_name").is_in(wanted))
    if not rows["day"].is_sorted():
        rows = rows.sort("day")  # "current request" = the last day's
    rows = rows.with_columns(_decay(pl.col("day")).alias("decay"), pl.int_range(pl.len()).alias("row"))
    keys = _GROUPS[level]

    # one row per container (pod + container name) with its group of the level; ids numbered so
    # that container order is also group order (at container level the two are equal)
    containers = rows.group_by(_CONTAINER).agg(
        pl.col("workload_kind").drop_nulls().last(),
        pl.col("workload_name").drop_nulls().last(),
        pl.col("first_seen").min(),
        pl.col("last_seen").max(),
        pl.col("samples").sum(),
        pl.col("memory_samples").fill_null(0).sum(),
        pl.col("memory_max").max().alias("memory_peak"),
        pl.col("cpu_request").last(),
        pl.col("memory_request").last(),
        pl.col("row"),
    )
    groups = containers.select(keys).unique().sort(keys, nulls_last=True).with_row_index("gid")
    containers = (
        containers.join(groups, on=keys, how="left", nulls_equal=True)
        .sort("gid", *_CONTAINER, nulls_last=True)
        .with_row_index("cid")
    )
    n_containers, n_groups = containers.height, groups.height
    # each rollup row's container and group, scattered back by row number
    owners = containers.select("cid", "gid", "row").explode("row")
    where = owners["row"].to_numpy()
    cid = np.empty(rows.height, dtype=np.int64)
    gid = np.empty(rows.height, dtype=np.int64)
    cid[where], gid[where] = owners["cid"].to_numpy(), owners["gid"].to_numpy()
    rows = rows.with_columns(pl.Series("cid", cid), pl.Series("gid", gid))

    # CPU: request- and decay-weighted samples per group (VPA), plain counts per container (KRR)
    request_weight = pl.max_horizontal(pl.col("cpu_request").cast(pl.Float64) / 1000, MIN_SAMPLE_WEIGHT_CORES)
    cpu_rows = rows.select(
        "cid",
        "gid",
        (request_weight * pl.col("decay")).alias("weight"),
        pl.col("cpu_buckets").alias("bucket"),
        pl.col("cpu_counts").alias("count"),
    )
    vpa_spec = ("weight", _VPA_PERCENTILES)
    krr_spec = (None, (KRR_CPU_PERCENTILE,))
    if level == "container":  # container = group: one pass for both histograms
        (cpu_p50, cpu_p90, cpu_p95), (krr_cpu,) = _percentile_buckets(
            cpu_rows, "gid", n_groups, CPU_BUCKETS.count, [vpa_spec, krr_spec]
        )
    else:
        ((cpu_p50, cpu_p90, cpu_p95),) = _percentile_buckets(cpu_rows, "gid", n_groups, CPU_BUCKETS.count, [vpa_spec])
        ((krr_cpu,),) = _percentile_buckets(cpu_rows, "cid", n_containers, CPU_BUCKETS.count, [krr_spec])
    # memory: one peak a day, decayed weight 1.0 each
    memory_rows = rows.select(
        "gid",
        pl.col("decay").alias("weight"),
        MEMORY_BUCKETS.index(pl.col("memory_max")).alias("bucket"),
        pl.lit(1.0).alias("count"),
        "memory_max",
    ).filter(pl.col("memory_max").is_not_null())
    ((memory_p50, memory_p90, memory_p95),) = _percentile_buckets(
        memory_rows, "gid", n_groups, MEMORY_BUCKETS.count, [vpa_spec]
    )
    bucket_columns = {
        "cpu_p50": cpu_p50,
        "cpu_p90": cpu_p90,
        "cpu_p95": cpu_p95,
        "memory_p50": memory_p50,
        "memory_p90": memory_p90,
        "memory_p95": memory_p95,
    }
    percentiles = pl.DataFrame({"gid": np.arange(n_groups, dtype=np.uint32), **bucket_columns}).select(
        "gid",
        *[_value(CPU_BUCKETS, c) for c in ("cpu_p50", "cpu_p90", "cpu_p95")],
        *[_value(MEMORY_BUCKETS, c) for c in ("memory_p50", "memory_p90", "memory_p95")],
    )
    containers = containers.with_columns(pl.Series("krr_cpu", krr_cpu)).with_columns(_value(CPU_BUCKETS, "krr_cpu"))

    per_group = containers.group_by("gid").agg(
        *[pl.col(k).first() for k in keys],
        *([pl.col("workload_kind", "workload_name").first()] if level == "container" else []),
        pl.col("pod_name").n_unique().alias("pods"),
        pl.col("first_seen").min(),
        pl.col("last_seen").max(),
        pl.col("samples").sum(),
        pl.col("memory_samples").sum(),
        pl.col("memory_peak").max(),
        pl.col("krr_cpu").max(),
        pl.col("cpu_request").sort_by("last_seen").last(),
        pl.col("memory_request").sort_by("last_seen").last(),
    )
    pods = _PODS[level]
    per_pod = per_group.group_by(pods).agg(pl.col("container_name").n_unique().alias("containers"))
    lifespan = (pl.col("last_seen") - pl.col("first_seen")).dt.total_milliseconds() / 86_400_000
    confidence = pl.min_horizontal(lifespan, pl.col("samples") / SAMPLES_PER_DAY).fill_null(0.0)
    margin = 1 + SAFETY_MARGIN
    cpu_floor = POD_MIN_CPU_MILLICORES / pl.col("containers")
    memory_floor = POD_MIN_MEMORY_BYTES / pl.col("containers")
    upper = 1 + 1 / pl.col("history_days")
    lower = (1 + 0.001 / pl.col("history_days")) ** -2
    frame = (
        per_group.lazy()
        .join(percentiles.lazy(), on="gid", how="left")
        .join(per_pod.lazy(), on=pods, how="left", nulls_equal=True)
        .with_columns(
            confidence.cast(pl.Float64).alias("history_days"),
            pl.col("cpu_p50", "cpu_p90", "cpu_p95", "memory_p50", "memory_p90", "memory_p95").fill_null(0.0),
        )
        .with_columns(
            pl.max_horizontal(pl.col("cpu_p50") * margin * lower, cpu_floor).alias("vpa_cpu_lower"),
            pl.max_horizontal(pl.col("cpu_p90") * margin, cpu_floor).alias("vpa_cpu_target"),
            _bounded(pl.max_horizontal(pl.col("cpu_p95") * margin * upper, cpu_floor)).alias("vpa_cpu_upper"),
            pl.when(pl.col("samples") >= KRR_POINTS_REQUIRED).then(pl.col("krr_cpu")).alias("krr_cpu"),
            pl.max_horizontal(pl.col("memory_p50") * margin * lower, memory_floor).alias("vpa_memory_lower"),
            pl.max_horizontal(pl.col("memory_p90") * margin, memory_floor).alias("vpa_memory_target"),
            _bounded(pl.max_horizontal(pl.col("memory_p95") * margin * upper, memory_floor)).alias("vpa_memory_upper"),
            pl.when(pl.col("memory_samples") >= KRR_POINTS_REQUIRED)
            .then(pl.col("memory_peak") * (1 + KRR_MEMORY_BUFFER))
            .alias("krr_memory"),
        )
    )
    cpu_goal, memory_goal = ("vpa_cpu_target", "vpa_memory_target") if strategy == "vpa" else ("krr_cpu", "krr_memory")
    frame = frame.with_columns(
        _verdict(pl.col("cpu_request"), pl.col(cpu_goal)).alias("cpu_verdict"),
        _verdict(pl.col("memory_request"), pl.col(memory_goal)).alias("memory_verdict"),
    ).with_columns(_overall(pl.col("cpu_verdict"), pl.col("memory_verdict")).alias("verdict"))
    attributes = ["workload_kind", "workload_name"] if level == "container" else ["pods"]
    columns = [
        *keys,
        *attributes,
        "history_days",
        "samples",
        "cpu_request",
        "vpa_cpu_lower",
        "vpa_cpu_target",
        "vpa_cpu_upper",
        "krr_cpu",
        "memory_request",
        "vpa_memory_lower",
        "vpa_memory_target",
        "vpa_memory_upper",
        "krr_memory",
        "cpu_verdict",
        "memory_verdict",
        "verdict",
    ]
    return frame.select(columns).sort(keys, nulls_last=True).collect().rename(_RENAMES, strict=False)


def _bounded(upper: pl.Expr) -> pl.Expr:
    """No history (confidence 0): VPA's upper bound is infinite; here null, which tables and JSON
    can show."""
    return pl.when(pl.col("history_days") > 0).then(upper)


def _decay(day: pl.Expr) -> pl.Expr:
    """VPA's exponential decay (24 h half-life) at day granularity: ``2^-(days before the newest
    day)``. A percentile is unchanged by scaling every weight, so only the within-day spread of
    VPA's per-sample weights (at most a factor 2) is lost."""
    age = (day.max() - day).dt.total_days().cast(pl.Float64)
    return 2.0 ** (-age / HALF_LIFE_DAYS)


def _value(buckets: ExponentialBuckets, column: str) -> pl.Expr:
    """Bucket index (-1: empty histogram) → the value VPA's ``Percentile`` returns."""
    index = pl.col(column)
    return pl.when(index >= 0).then(buckets.percentile_value(index)).alias(column)


def _percentile_buckets(
    rows: pl.DataFrame,
    key: str,
    groups: int,
    width: int,
    histograms: Sequence[tuple[str | None, Sequence[float]]],
) -> list[list[np.ndarray]]:
    """VPA ``histogram.Percentile`` for each of ``groups`` histograms given as rows of samples:
    ``key`` (the group, 0 .. groups - 1), ``bucket`` and ``count`` (scalars, or a sparse histogram
    per row as two lists). ``histograms``: (column weighing each of the row's samples, or None for
    plain counts; the percentiles wanted). Per percentile ``p``, the index of the first bucket
    whose cumulative weight reaches ``p * total`` (-1 for an empty histogram).

    Merging the rows is a scatter-add (``np.bincount``) into a dense block of ``width`` buckets per
    group, then a cumulative sum along the buckets: linear in the samples. (A Polars ``group_by``
    on (group, bucket) hashes ~20 M exploded samples for 30 days of a 1,000-node cluster, and
    sorting them costs as much: 2-3 s against 0.3 s.) Groups go in blocks of at most
    ``_BLOCK_CELLS`` cells, so memory stays bounded whatever the number of containers; the loop is
    per block, not per group.
    """
    out = [[np.full(groups, -1, dtype=np.int64) for _ in wanted] for _, wanted in histograms]
    lists = isinstance(rows.schema["bucket"], pl.List)
    step = max(1, _BLOCK_CELLS // width)
    for first in range(0, groups, step):
        size = min(step, groups - first)
        block = rows if size == groups else rows.filter(pl.col(key).is_between(first, first + size - 1))
        groups_of_rows = block[key].cast(pl.Int64).to_numpy() - first
        if lists:  # samples of every row laid flat, each with its row's group (and weight)
            lengths = block["bucket"].list.len().fill_null(0).to_numpy()
            buckets = block["bucket"].explode(empty_as_null=False, keep_nulls=False).to_numpy()
            counts = block["count"].explode(empty_as_null=False, keep_nulls=False).to_numpy()
        else:
            lengths = None
            counts = block["count"].to_numpy()
            buckets = block["bucket"].to_numpy()
        # only as many buckets as the block uses: a few cores reach bucket ~60 of 176, so the
        # dense arrays (and the passes over them) shrink by more than half
        used = int(buckets.max()) + 1 if buckets.size else 1
        base = groups_of_rows * used
        cells = (np.repeat(base, lengths) if lengths is not None else base) + buckets
        for results, (weight, wanted) in zip(out, histograms, strict=True):
            weights = counts
            if weight is not None:
                per_row = block[weight].to_numpy()
                weights = counts * (per_row if lengths is None else np.repeat(per_row, lengths))
            cumulative = np.bincount(cells, weights=weights, minlength=size * used).reshape(size, used)
            np.cumsum(cumulative, axis=1, out=cumulative)
            total = cumulative[:, -1]
            for result, p in zip(results, wanted, strict=True):
                reached = np.argmax(cumulative >= (p * total)[:, None], axis=1)
                result[first : first + size] = np.where(total > 0, reached, -1)
    return out


def _verdict(request: pl.Expr, goal: pl.Expr) -> pl.Expr:
    return (
        pl.when(request.is_null() | (request <= 0))
        .then(pl.lit("no-request"))
        .when(goal.is_null())
        .then(pl.lit("insufficient-data"))
        .when(request > goal * (1 + BAND))
        .then(pl.lit("over-requested"))
        .when(request < goal * (1 - BAND))
        .then(pl.lit("under-requested"))
        .otherwise(pl.lit("well-sized"))
    )


def _overall(cpu: pl.Expr, memory: pl.Expr) -> pl.Expr:
    """Starvation risk first: under-requested if either resource is, then over-requested if either
    is, well-sized only if both are, else the CPU verdict (no-request / insufficient-data)."""
    return (
        pl.when((cpu == "under-requested") | (memory == "under-requested"))
        .then(pl.lit("under-requested"))
        .when((cpu == "over-requested") | (memory == "over-requested"))
        .then(pl.lit("over-requested"))
        .when((cpu == "well-sized") & (memory == "well-sized"))
        .then(pl.lit("well-sized"))
        .when(cpu == "well-sized")
        .then(memory)
        .otherwise(cpu)
    )
