"""Right-sizing: what each container (or workload container) should request, from the daily rollups.

Two recommenders side by side with the current requests, both computed on ``container_days``
only (never raw points): 30 days of a 1,000-node cluster are ~2 M container-days of ~780 k
containers holding ~15 M histogram cells. Containers are told apart by sorting the key columns
(cheaper than hashing three strings), and the cells merged per container in one pass
(``_histograms.percentile_buckets``: a ragged layout, one scatter-add, one running sum), never a
Python loop per container.

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
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

import numpy as np
import polars as pl

from heapster_columnar.analysis._histograms import percentile_buckets, ragged_order
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
    days = container_days(store, time, labels=False, columns=list(_DAYS_SCHEMA))
    return recommend_frame(days, level=level, namespace=namespace, strategy=strategy)


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
    rows = rows.with_columns(_decay(pl.col("day")).alias("decay"))
    keys = _GROUPS[level]

    # containers (pod + container name) numbered in key order without hashing strings: a stable
    # sort of the key columns and a comparison of neighbours; each container's rows are then a run
    # of the sorted order, still in day order, reduced with numpy (a group_by on three strings
    # over the 2 M container-days of a month at 1,000 nodes takes 0.7-0.9 s, this 0.3 s)
    runs = _runs(rows, _CONTAINER)
    container_keys, order = runs.keys, runs.order
    n_containers = container_keys.height
    with ThreadPoolExecutor(1) as pool:  # Polars and numpy's bulk loops release the GIL: use both cores
        per_container = pool.submit(_per_container, rows, runs)

        # the samples in container order (each container's days together): the histograms'
        # scatter-add then writes memory in order, four times faster than in the rows' day order
        lengths = rows["cpu_buckets"].list.len().fill_null(0).to_numpy()
        moved = ragged_order(lengths, order)
        lengths = lengths[order]
        buckets = rows["cpu_buckets"].explode(empty_as_null=False, keep_nulls=False).to_numpy()[moved]
        counts = rows["cpu_counts"].explode(empty_as_null=False, keep_nulls=False).to_numpy()[moved]
        request_weight = pl.max_horizontal(pl.col("cpu_request").cast(pl.Float64) / 1000, MIN_SAMPLE_WEIGHT_CORES)
        per_row = rows.select(
            (request_weight * pl.col("decay")).alias("weight"),
            pl.col("decay"),
            MEMORY_BUCKETS.index(pl.col("memory_max")).alias("memory_bucket"),
            pl.col("memory_max").is_not_null().alias("peak"),
        )
        weight, decay, memory_bucket, peak = (per_row[c].to_numpy()[order] for c in per_row.columns)
        cid = runs.ids[order]  # 0, 0, 0, 1, 1, ...: each row's container, in container order

        def memory(gid: np.ndarray, groups: int) -> list[np.ndarray]:
            """VPA's memory percentiles: one peak a day per container, decayed weight 1.0 each."""
            peaks = [(decay[peak], _VPA_PERCENTILES)]
            return percentile_buckets(gid[peak], groups, memory_bucket[peak], np.ones(int(peak.sum())), None, peaks)[0]

        # CPU: request- and decay-weighted samples per group (VPA), plain counts per container (KRR)
        if level == "container":  # container = group: one layout for both histograms
            group_keys = container_keys
            (cpu_p50, cpu_p90, cpu_p95), (krr_cpu,) = percentile_buckets(
                cid, n_containers, buckets, counts, lengths, [(weight, _VPA_PERCENTILES), (None, (KRR_CPU_PERCENTILE,))]
            )
            containers = pl.concat([container_keys, per_container.result()], how="horizontal")
            memory_p50, memory_p90, memory_p95 = memory(cid, n_containers)
        else:
            ((krr_cpu,),) = percentile_buckets(
                cid, n_containers, buckets, counts, lengths, [(None, (KRR_CPU_PERCENTILE,))]
            )
            containers = pl.concat([container_keys, per_container.result()], how="horizontal")
            group_runs = _runs(containers, keys)
            group_keys, gid_of_container = group_runs.keys, group_runs.ids
            gid = gid_of_container[cid]
            ((cpu_p50, cpu_p90, cpu_p95),) = percentile_buckets(
                gid, group_keys.height, buckets, counts, lengths, [(weight, _VPA_PERCENTILES)]
            )
            memory_p50, memory_p90, memory_p95 = memory(gid, group_keys.height)
    n_groups = group_keys.height
    percentiles = pl.DataFrame(
        {
            "cpu_p50": cpu_p50,
            "cpu_p90": cpu_p90,
            "cpu_p95": cpu_p95,
            "memory_p50": memory_p50,
            "memory_p90": memory_p90,
            "memory_p95": memory_p95,
        }
    ).select(
        *[_value(CPU_BUCKETS, c) for c in ("cpu_p50", "cpu_p90", "cpu_p95")],
        *[_value(MEMORY_BUCKETS, c) for c in ("memory_p50", "memory_p90", "memory_p95")],
    )
    containers = containers.with_columns(pl.Series("krr_cpu", krr_cpu)).with_columns(_value(CPU_BUCKETS, "krr_cpu"))

    if level == "container":
        per_group = containers.with_columns(pl.lit(1, pl.UInt32).alias("pods"))
    else:
        per_group = pl.concat(
            [
                group_keys,
                containers.with_columns(pl.Series("gid", gid_of_container))
                .group_by("gid")
                .agg(
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
                .sort("gid")
                .drop("gid"),
            ],
            how="horizontal",
        )
    # the floor's "pod": groups are sorted by keys and the pod is a prefix of them, so a pod's
    # container names are a run of rows
    pods = _PODS[level]
    pod_of_group = _run_id(per_group, pods)
    per_group = pl.concat([per_group, percentiles], how="horizontal").with_columns(
        pl.Series("containers", np.bincount(pod_of_group)[pod_of_group] if n_groups else pod_of_group)
    )
    lifespan = (pl.col("last_seen") - pl.col("first_seen")).dt.total_milliseconds() / 86_400_000
    confidence = pl.min_horizontal(lifespan, pl.col("samples") / SAMPLES_PER_DAY).fill_null(0.0)
    margin = 1 + SAFETY_MARGIN
    cpu_floor = POD_MIN_CPU_MILLICORES / pl.col("containers")
    memory_floor = POD_MIN_MEMORY_BYTES / pl.col("containers")
    upper = 1 + 1 / pl.col("history_days")
    lower = (1 + 0.001 / pl.col("history_days")) ** -2
    frame = (
        per_group.lazy()
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
    return frame.select(columns).collect().rename(_RENAMES, strict=False)


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


class _Runs(NamedTuple):
    """Rows of a frame grouped by sorting: ``keys`` the distinct keys in sorted order (nulls last),
    ``ids`` each row's index into them, ``order`` the rows in that order (stable), ``starts`` where
    each key's run begins in ``order``."""

    keys: pl.DataFrame
    ids: np.ndarray
    order: np.ndarray
    starts: np.ndarray


def _runs(frame: pl.DataFrame, keys: list[str]) -> _Runs:
    ordered = frame.select(keys).with_row_index("_row").sort(keys, nulls_last=True, maintain_order=True)
    run = _run_id(ordered, keys)
    order = ordered["_row"].to_numpy().astype(np.int64)
    ids = np.empty(frame.height, dtype=np.int64)
    ids[order] = run
    first = np.diff(run, prepend=-1) > 0
    return _Runs(ordered.select(keys).filter(pl.Series(first)), ids, order, np.flatnonzero(first))


def _per_container(rows: pl.DataFrame, runs: _Runs) -> pl.DataFrame:
    """A row per run of ``rows`` (one container): extremes and sums, and the newest day's requests
    and workload (rows are in day order within a run)."""
    if not runs.starts.size:
        return pl.DataFrame(
            schema={
                "workload_kind": pl.String(),
                "workload_name": pl.String(),
                "first_seen": rows.schema["first_seen"],
                "last_seen": rows.schema["last_seen"],
                "samples": pl.Int64(),
                "memory_samples": pl.Int64(),
                "memory_peak": pl.Float64(),
                "cpu_request": pl.Int64(),
                "memory_request": pl.Int64(),
            }
        )
    order, starts = runs.order, runs.starts
    last = order[np.append(starts[1:], order.size) - 1]

    def reduced(ufunc: np.ufunc, column: str, fill: float | int) -> np.ndarray:
        values = rows[column].to_physical().fill_null(fill).to_numpy()
        return ufunc.reduceat(values[order], starts)

    def newest_set(column: str) -> pl.Series:
        """The value of the newest row where ``column`` is set (``drop_nulls().last()``)."""
        where = np.where(rows[column].is_not_null().to_numpy()[order], np.arange(order.size), -1)
        found = np.maximum.reduceat(where, starts)
        picked = rows[column].gather(order[np.maximum(found, 0)])
        frame = pl.DataFrame({"found": found >= starts, column: picked})
        return frame.select(pl.when("found").then(pl.col(column)).alias(column)).to_series()

    peak = reduced(np.fmax, "memory_max", np.nan)
    return pl.DataFrame(
        [
            newest_set("workload_kind"),
            newest_set("workload_name"),
            pl.Series("first_seen", reduced(np.minimum, "first_seen", 0)).cast(rows.schema["first_seen"]),
            pl.Series("last_seen", reduced(np.maximum, "last_seen", 0)).cast(rows.schema["last_seen"]),
            pl.Series("samples", reduced(np.add, "samples", 0)),
            pl.Series("memory_samples", reduced(np.add, "memory_samples", 0)),
            pl.Series("memory_peak", peak).fill_nan(None),
            rows["cpu_request"].gather(last),
            rows["memory_request"].gather(last),
        ]
    )


def _run_id(ordered: pl.DataFrame, keys: list[str]) -> np.ndarray:
    """0, 0, 1, 2, 2, ...: a new id wherever any of ``keys`` differs from the row before (nulls
    equal), on a frame sorted by them."""
    if ordered.height == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.zeros(ordered.height, dtype=bool)
    change[0] = True
    for key in keys:
        column = ordered[key]
        change[1:] |= column.slice(1).ne_missing(column.slice(0, ordered.height - 1)).to_numpy()
    return np.cumsum(change) - 1


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
