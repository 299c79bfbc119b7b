"""Daily rollups: one row per container and per node per UTC day, what every report reads.

Thirty days of a 1,000-node cluster at 60 s are ~4 billion container points; the questions asked
of them (percentiles per container, averages per namespace, peaks per node) need far less. A
day's points collapse to one row per container with the sums, maxima and a **histogram of CPU
usage in the VPA recommender's exponential buckets** (first bucket 0.01 core, each 5 % wider,
176 buckets up to 1,000 cores: kubernetes/autoscaler
``vertical-pod-autoscaler/pkg/recommender/model/aggregations_config.go``), so percentiles over
any number of days come out exactly as VPA's histogram would give them. Memory keeps the day's
peak, which is what VPA's memory histogram is fed (one peak per 24 h interval).

Closed days (that end before the store's newest window) are materialized under
``rollups/<table>/date=YYYY-MM-DD/``; the current day, and any day written before rollups
existed, is computed from the points on the fly with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from heapster_columnar.analysis.store import ALL_TIME, ROLLUPS, Store, TimeRange
from heapster_columnar.sinks._parquet_fs import open_store
from heapster_columnar.sinks._parquet_write import WriterOptions

__all__ = [
    "CPU_BUCKETS",
    "MEMORY_BUCKETS",
    "ExponentialBuckets",
    "container_days",
    "materialize",
    "node_days",
    "rollup_frames",
    "rollup_points",
    "whole_days",
    "workload_of",
    "write_rollups",
]

CPU_METRIC, MEMORY_METRIC = "cpu/usage_rate", "memory/working_set"
DEFAULT_STEP_SECONDS = 60.0
CONTAINER_KEYS = ("namespace_name", "pod_name", "container_name", "nodename")
# Kubernetes' pod-template-hash alphabet (apimachinery rand.SafeEncodeString): no vowels, no 0/1/3
_HASH = r"[bcdfghjklmnpqrstvwxz2456789]{5,10}"


@dataclass(frozen=True, slots=True)
class ExponentialBuckets:
    """VPA's ``ExponentialHistogramOptions``: bucket ``i`` starts at ``first * (ratio**i - 1) / (ratio - 1)``."""

    first: float
    ratio: float
    maximum: float

    @property
    def count(self) -> int:
        return math.ceil(math.log(self.maximum * (self.ratio - 1) / self.first + 1) / math.log(self.ratio)) + 1

    def index(self, values: pl.Expr) -> pl.Expr:
        """Bucket of each value (VPA ``FindBucket``): values below the first bucket go to 0."""
        # the 1e-9 keeps a value exactly on a boundary in the upper bucket whatever the libm
        raw = ((values * (self.ratio - 1) / self.first + 1).log() / math.log(self.ratio) + 1e-9).floor()
        return raw.fill_nan(0).clip(0, self.count - 1).cast(pl.Int16)

    def start(self, index: pl.Expr) -> pl.Expr:
        return self.first * ((self.ratio ** index.cast(pl.Float64)) - 1) / (self.ratio - 1)

    def percentile_value(self, index: pl.Expr) -> pl.Expr:
        """What VPA's ``Percentile`` returns for the bucket where the threshold is crossed: the
        bucket's end, except for the last bucket, which has none (its start)."""
        return pl.when(index < self.count - 1).then(self.start(index + 1)).otherwise(self.start(index))


# CPU in millicores (the points' unit): 0.01 core = 10 m, up to 1,000 cores.
CPU_BUCKETS = ExponentialBuckets(first=10.0, ratio=1.05, maximum=1_000_000.0)
# Memory in bytes: 10 MB first bucket, up to 1 TB (same file of VPA).
MEMORY_BUCKETS = ExponentialBuckets(first=1e7, ratio=1.05, maximum=1e12)


def workload_of(owner_kind: pl.Expr, owner_name: pl.Expr, pod_name: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(kind, name) of the workload a pod belongs to, from its controlling owner reference.

    A ReplicaSet named ``<deployment>-<pod-template-hash>`` belongs to that Deployment, a Job
    named ``<cronjob>-<scheduled minute>`` to that CronJob (the names the controllers give them);
    a pod without an owner is its own workload (kind ``Pod``).
    """
    deployment = owner_name.str.extract(rf"^(.+)-{_HASH}$", 1)
    cronjob = owner_name.str.extract(r"^(.+)-\d{8,}$", 1)
    kind = (
        pl.when(owner_kind.is_null())
        .then(pl.lit("Pod"))
        .when((owner_kind == "ReplicaSet") & deployment.is_not_null())
        .then(pl.lit("Deployment"))
        .when((owner_kind == "Job") & cronjob.is_not_null())
        .then(pl.lit("CronJob"))
        .otherwise(owner_kind)
    )
    name = (
        pl.when(owner_kind.is_null())
        .then(pod_name)
        .when((owner_kind == "ReplicaSet") & deployment.is_not_null())
        .then(deployment)
        .when((owner_kind == "Job") & cronjob.is_not_null())
        .then(cronjob)
        .otherwise(owner_name)
    )
    return kind, name


def step_seconds(points: pl.LazyFrame) -> float:
    """The store's resolution: the median gap between consecutive window ends."""
    stamps = points.select(pl.col("timestamp").unique().sort()).collect().to_series()
    if stamps.len() < 2:
        return DEFAULT_STEP_SECONDS
    gap = stamps.diff().drop_nulls().dt.total_milliseconds().median()
    return float(gap) / 1000 if isinstance(gap, int | float) and gap > 0 else DEFAULT_STEP_SECONDS


def rollup_points(store: Store, time: TimeRange) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(container_days, node_days) computed from the store's points of ``time`` (whole days)."""
    wanted = store.points(time, metrics=[CPU_METRIC, MEMORY_METRIC], types=["pod_container", "node"])
    # read once: the frames below use the points several times, and a scan is re-run per use;
    # the dimensions too (tens of thousands of rows: as scans inside the day's query, 0.46-0.53 s
    # for one window's rollups instead of 0.22 s plus 0.1 s to read them)
    points = store.collect(wanted.select("timestamp", "type", "metric", *CONTAINER_KEYS, "value")).lazy()
    step = None
    if time.start is not None and points.select(pl.col("timestamp").n_unique()).collect().item() < 2:
        # one window so far (the open day just after midnight): the resolution of the day before
        before = store.points(TimeRange(time.start - timedelta(days=1), time.end), metrics=[CPU_METRIC])
        step = step_seconds(before.select("timestamp"))
    containers = store.collect(store.last_known("containers", ["namespace", "pod_name", "name"], time)).lazy()
    pods = store.collect(store.last_known("pods", ["namespace", "name"], time)).lazy()
    nodes = store.collect(store.last_known("nodes", ["name"], time)).lazy()
    try:
        return rollup_frames(points, containers=containers, pods=pods, nodes=nodes, step=step)
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise store.error(exc) from exc


def rollup_frames(
    points: pl.LazyFrame,
    *,
    containers: pl.LazyFrame,
    pods: pl.LazyFrame,
    nodes: pl.LazyFrame,
    step: float | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(container_days, node_days) of ``points`` (points schema, strings as String or Categorical;
    only ``pod_container`` and ``node`` rows of cpu/usage_rate and memory/working_set are used),
    with the attributes of the dimension tables (rows in the CONTAINERS / PODS / NODES schemas,
    one per object: the last known). ``step``: seconds per sample, default the median gap
    between window ends. For writers that hold a day in memory (the backfill) as for the store."""
    points = (
        points.filter(
            pl.col("metric").cast(pl.String).is_in([CPU_METRIC, MEMORY_METRIC]),
            pl.col("type").cast(pl.String).is_in(["pod_container", "node"]),
        )
        .select(
            "timestamp",
            *[pl.col(c).cast(pl.String) for c in ("type", "metric", *CONTAINER_KEYS)],
            "value",
        )
        .with_columns(pl.col("timestamp").dt.date().alias("day"))
    )
    if step is None:
        step = step_seconds(points)
    container_rows = _container_days(points.filter(pl.col("type") == "pod_container"), containers, pods, step)
    node_rows = _node_days(points.filter(pl.col("type") == "node"), container_rows, nodes, step)
    return container_rows, node_rows


def _container_days(points: pl.LazyFrame, limits: pl.LazyFrame, owners: pl.LazyFrame, step: float) -> pl.DataFrame:
    keys = ["day", *CONTAINER_KEYS]
    cpu = points.filter(pl.col("metric") == CPU_METRIC)
    stats = cpu.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias("samples"),
        pl.col("timestamp").min().alias("first_seen"),
        pl.col("timestamp").max().alias("last_seen"),
        pl.col("value").sum().alias("cpu_sum"),
        pl.col("value").max().alias("cpu_max"),
    )
    histogram = (
        cpu.group_by([*keys, CPU_BUCKETS.index(pl.col("value")).alias("bucket")])
        .agg(pl.len().cast(pl.UInt32).alias("count"))
        .sort("bucket")
        .group_by(keys)
        .agg(pl.col("bucket").alias("cpu_buckets"), pl.col("count").alias("cpu_counts"))
    )
    memory = (
        points.filter(pl.col("metric") == MEMORY_METRIC)
        .group_by(keys)
        .agg(
            pl.len().cast(pl.Int64).alias("memory_samples"),
            pl.col("value").sum().alias("memory_sum"),
            pl.col("value").max().alias("memory_max"),
        )
    )
    names = limits.collect_schema().names()
    wanted = ["cpu_request", "cpu_limit", "memory_request", "memory_limit"]
    if "name" in names:
        limits = limits.select(
            pl.col("namespace").alias("namespace_name"),
            "pod_name",
            pl.col("name").alias("container_name"),
            *[pl.col(c).cast(pl.Int64) for c in wanted],
        )
    else:
        limits = _empty(["namespace_name", "pod_name", "container_name"], wanted)
    pod_columns = owners.collect_schema().names()
    if "owner_kind" in pod_columns:
        owners = owners.select(
            pl.col("namespace").alias("namespace_name"),
            pl.col("name").alias("pod_name"),
            "owner_kind",
            "owner_name",
            "labels",  # the pod's labels: chargeback by label reads them here, not from a month of snapshots
        )
    elif "name" in pod_columns:  # snapshots written before owners were recorded
        owners = owners.select(
            pl.col("namespace").alias("namespace_name"),
            pl.col("name").alias("pod_name"),
            pl.lit(None, pl.String).alias("owner_kind"),
            pl.lit(None, pl.String).alias("owner_name"),
            "labels",
        )
    else:  # no pods snapshot
        owners = _empty(["namespace_name", "pod_name", "owner_kind", "owner_name"], [])
    kind, name = workload_of(pl.col("owner_kind"), pl.col("owner_name"), pl.col("pod_name"))
    frame = (
        stats.join(histogram, on=keys, how="left", nulls_equal=True)
        .join(memory, on=keys, how="full", coalesce=True, nulls_equal=True)
        .join(limits, on=["namespace_name", "pod_name", "container_name"], how="left", nulls_equal=True)
        .join(owners, on=["namespace_name", "pod_name"], how="left", nulls_equal=True)
        .with_columns(
            kind.alias("workload_kind"),
            name.alias("workload_name"),
            pl.col("samples").fill_null(0),
            (pl.col("samples").fill_null(0).cast(pl.Float64) * step).alias("seconds"),
        )
        .drop("owner_kind", "owner_name")
    )
    return frame.collect().sort(keys)


def _node_days(points: pl.LazyFrame, containers: pl.DataFrame, nodes: pl.LazyFrame, step: float) -> pl.DataFrame:
    keys = ["day", "nodename"]
    usage = points.group_by(keys).agg(
        (pl.col("metric") == CPU_METRIC).sum().cast(pl.Int64).alias("samples"),
        pl.col("timestamp").min().alias("first_seen"),
        pl.col("timestamp").max().alias("last_seen"),
        pl.col("value").filter(pl.col("metric") == CPU_METRIC).sum().alias("cpu_sum"),
        pl.col("value").filter(pl.col("metric") == CPU_METRIC).max().alias("cpu_max"),
        pl.col("value").filter(pl.col("metric") == CPU_METRIC).quantile(0.95, "linear").alias("cpu_p95"),
        pl.col("value").filter(pl.col("metric") == MEMORY_METRIC).sum().alias("memory_sum"),
        pl.col("value").filter(pl.col("metric") == MEMORY_METRIC).max().alias("memory_max"),
        pl.col("value").filter(pl.col("metric") == MEMORY_METRIC).quantile(0.95, "linear").alias("memory_p95"),
        (pl.col("metric") == MEMORY_METRIC).sum().cast(pl.Int64).alias("memory_samples"),
    )
    # requests placed on the node, averaged over the node's samples of the day
    requested = (
        containers.lazy()
        .group_by(keys)
        .agg(
            (pl.col("cpu_request").fill_null(0) * pl.col("samples")).sum().alias("cpu_request_samples"),
            (pl.col("memory_request").fill_null(0) * pl.col("samples")).sum().alias("memory_request_samples"),
        )
    )
    cols = ["capacity_cpu", "capacity_memory", "allocatable_cpu", "allocatable_memory"]
    if "name" in nodes.collect_schema().names():
        nodes = nodes.select(pl.col("name").alias("nodename"), *[pl.col(c).cast(pl.Int64) for c in cols])
    else:
        nodes = _empty(["nodename"], cols)
    frame = (
        usage.join(requested, on=keys, how="left", nulls_equal=True)
        .join(nodes, on="nodename", how="left")
        .with_columns(
            (pl.col("cpu_request_samples") / pl.col("samples")).alias("cpu_requested"),
            (pl.col("memory_request_samples") / pl.col("samples")).alias("memory_requested"),
            (pl.col("samples").cast(pl.Float64) * step).alias("seconds"),
        )
        .drop("cpu_request_samples", "memory_request_samples")
    )
    return frame.collect().sort(keys)


def _empty(strings: Sequence[str], integers: Sequence[str]) -> pl.LazyFrame:
    return pl.LazyFrame(schema={**dict.fromkeys(strings, pl.String), **dict.fromkeys(integers, pl.Int64)})


def closed_days(store: Store) -> list[date]:
    """Days with points that end before the store's newest window (no more points will come)."""
    span = store.span()
    if span is None:
        return []
    newest = span[1].astimezone(UTC).date()
    return [d for d in store.point_dates() if d < newest]


def write_rollups(location: str, day: date, containers: pl.DataFrame, nodes: pl.DataFrame) -> None:
    """Store one day's rollups under ``<location>/rollups/<table>/date=<day>/`` (atomic; a day
    written again is replaced)."""
    writer = open_store(location, fsync=True)
    for table, frame in (("container_days", containers), ("node_days", nodes)):
        arrow = frame.filter(pl.col("day") == day).drop("day").to_arrow()
        directory = writer.path(ROLLUPS, table, f"date={day.isoformat()}")
        writer.create_dir(directory)
        writer.write_table(
            f"{directory}/{table}-{day.isoformat()}.parquet", arrow, WriterOptions().kwargs(arrow.schema)
        )


def materialize(store: Store, days: Sequence[date] | None = None) -> list[date]:
    """Compute and store the rollups of ``days`` (default: closed days without rollups).

    Each day is one file per table, written atomically; writing a day again replaces it. Not for
    a store another process is compacting: run it where the collector writes, or on a copy."""
    if days is None:
        have = set(store.rollup_dates("container_days")) & set(store.rollup_dates("node_days"))
        days = [d for d in closed_days(store) if d not in have]
    done = []
    for day in days:
        containers, nodes = rollup_points(store, TimeRange.day(day))
        write_rollups(store.location, day, containers, nodes)
        done.append(day)
    return done


def whole_days(time: TimeRange) -> tuple[date | None, date | None]:
    """The UTC days a rollup-based answer covers: those that start inside ``time`` (a range
    starting mid-day starts at the next midnight, so ``7d`` back from the newest window is seven
    days, the newest one partial), up to the day of its end."""
    first, last = time.days()
    if (
        time.start is not None
        and first is not None
        and time.start > datetime(first.year, first.month, first.day, tzinfo=UTC)
    ):
        first += timedelta(days=1)
    return first, last


def _computed(store: Store, day: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both tables of a day without stored rollups, computed once per store object and kept until
    the day's files change (the open day grows with every window)."""
    signature = store.day_signature(day)
    cache: dict[date, tuple[object, tuple[pl.DataFrame, pl.DataFrame]]] = store.cache.setdefault("rollups", {})
    hit = cache.get(day)
    if hit is not None and hit[0] == signature:
        return hit[1]
    tables = rollup_points(store, TimeRange.day(day))
    cache[day] = (signature, tables)
    return tables


HISTOGRAM = ("cpu_buckets", "cpu_counts")


def _read(
    store: Store,
    table: str,
    time: TimeRange,
    *,
    histograms: bool = True,
    labels: bool = True,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Stored rows of the whole days of ``time`` plus, for days without a stored file, computed ones."""
    first, last = whole_days(time)
    days = [d for d in store.point_dates() if (first is None or d >= first) and (last is None or d <= last)]
    stored = set(store.rollup_dates(table))
    # never read from disk what the caller does not use: the histograms are two thirds of a
    # container-day's bytes, the pods' label maps three quarters of the decoding time of the rest
    skipped = (HISTOGRAM if not histograms else ()) + (("labels",) if not labels else ())
    frames = []
    materialized = store.rollups(table, TimeRange(TimeRange.day(first).start if first else None, time.end))
    if materialized is not None:
        materialized = materialized.drop(skipped, strict=False)
        frames.append(materialized.filter(pl.col("day").is_in([d for d in days if d in stored])))
    for day in days:
        if day not in stored:
            containers, nodes = _computed(store, day)
            computed = (containers if table == "container_days" else nodes).lazy()
            frames.append(computed.drop(skipped, strict=False))
    if not frames:
        return pl.DataFrame()
    rows = pl.concat(frames, how="diagonal_relaxed")
    if columns is not None:  # those the files have: callers check for what they need
        present = rows.collect_schema().names()
        rows = rows.select("day", *[c for c in columns if c in present and c != "day"])
    frame = store.collect(rows)
    return frame.select("day", pl.exclude("day"))


def container_days(
    store: Store,
    time: TimeRange = ALL_TIME,
    *,
    histograms: bool = True,
    labels: bool = True,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Container-day rows of the whole UTC days of ``time``; ``histograms=False`` leaves out
    ``cpu_buckets`` / ``cpu_counts`` (only percentiles need them), ``labels=False`` the pods'
    ``labels`` (only grouping by a label needs them), ``columns`` keeps only those (with ``day``)."""
    return _read(store, "container_days", time, histograms=histograms, labels=labels, columns=columns)


def node_days(store: Store, time: TimeRange = ALL_TIME) -> pl.DataFrame:
    """Node-day rows of the UTC days ``time`` touches (whole days)."""
    return _read(store, "node_days", time)
