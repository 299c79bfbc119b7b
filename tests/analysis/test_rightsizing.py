"""Right-sizing against values worked out by hand from VPA's and KRR's rules.

Every expected value is written from the formula: bucket ``i`` of VPA's CPU histogram starts at
``10 m * (1.05**i - 1) / 0.05`` (memory: ``1e7 B * ...``), a percentile is the END of the bucket
where the cumulative weight reaches ``p * total``, then + 15 %, times the confidence factor, and
never below the per-pod floor (25 m, 250 MiB) split over the pod's containers.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from stores import MI, T0, Container, container_series, pod, write_store

from heapster_columnar.analysis import rightsizing
from heapster_columnar.analysis.rollups import container_days
from heapster_columnar.analysis.store import Store
from heapster_columnar.errors import ConfigError

MINUTE = timedelta(minutes=1)
DAY = 1440  # samples a day at 60 s
MARGIN = 1.15
POD_MIN_CPU = 25.0  # millicores
POD_MIN_MEMORY = 250 * 1024 * 1024  # bytes (VPA's podMinMemoryMb = 250, times 1024 * 1024)


def cpu_bucket(millicores: float) -> int:
    return math.floor(math.log(1 + millicores * 0.05 / 10) / math.log(1.05))


def cpu_end(bucket: int) -> float:
    """End of CPU bucket ``bucket`` = start of the next one (millicores)."""
    return 10 * (1.05 ** (bucket + 1) - 1) / 0.05


def memory_bucket(size: float) -> int:
    return math.floor(math.log(1 + size * 0.05 / 1e7) / math.log(1.05))


def memory_end(bucket: int) -> float:
    return 1e7 * (1.05 ** (bucket + 1) - 1) / 0.05


def upper_factor(days: float) -> float:
    return 1 + 1 / days


def lower_factor(days: float) -> float:
    return (1 + 0.001 / days) ** -2


def usage(
    pod_name: str,
    cpu: float | list[float],
    memory: float | list[float],
    count: int | None = None,
    *,
    namespace: str = "a",
    container: str = "c",
    start: datetime = T0,
) -> pl.DataFrame:
    """cpu/usage_rate and memory/working_set of one container on node n1, every minute."""
    return container_series(
        start, MINUTE, namespace=namespace, pod=pod_name, container=container, node="n1", cpu=cpu, memory=memory,
        count=count,
    )  # fmt: skip


def one(frame: pl.DataFrame, **where: str) -> dict[str, object]:
    rows = frame.filter(*[pl.col(k) == v for k, v in where.items()])
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def test_a_container_at_a_constant_300m_for_a_week(tmp_path: Path) -> None:
    """300 m falls in bucket 18, which ends at 305.39 m: target 305.39 * 1.15 = 351.2 m. A week of
    1-minute samples is 7 * 1440 samples over 7 days minus one minute, the confidence."""
    name, owner = "web-7d4b9c8f5d-x2x9z", ("ReplicaSet", "web-7d4b9c8f5d")
    points = usage(name, 300.0, 200 * MI, 7 * DAY, namespace="shop", container="web")
    pods = [pod("shop", name, "n1", [Container("web", "500m", "256Mi")], owner=owner)]
    store = Store.open(write_store(tmp_path, points, pods=pods))
    got = rightsizing.recommend(store, "30d")
    row = one(got, container="web")

    assert cpu_bucket(300) == 18
    end = cpu_end(18)
    assert end == pytest.approx(305.39, abs=0.01)
    days = min((7 * DAY - 1) / DAY, 7 * DAY / DAY)  # lifespan (first to last sample) vs samples / 1440
    assert row["history_days"] == pytest.approx(days)
    assert row["samples"] == 7 * DAY
    assert row["vpa_cpu_target"] == pytest.approx(end * MARGIN)
    assert row["vpa_cpu_target"] == pytest.approx(351.2, abs=0.05)
    assert row["vpa_cpu_lower"] == pytest.approx(end * MARGIN * lower_factor(days))
    assert row["vpa_cpu_upper"] == pytest.approx(end * MARGIN * upper_factor(days))

    # 200 MiB peaks every day: bucket 14, ending at 215.8 MB; + 15 % is 248 MB, under the 250 MiB
    # floor (one container in the pod), which therefore is the target; the upper bound is above it
    peak_end = memory_end(memory_bucket(200 * MI))
    assert memory_bucket(200 * MI) == 14
    assert peak_end * MARGIN < POD_MIN_MEMORY
    assert row["vpa_memory_target"] == pytest.approx(POD_MIN_MEMORY)
    assert row["vpa_memory_lower"] == pytest.approx(POD_MIN_MEMORY)
    assert row["vpa_memory_upper"] == pytest.approx(peak_end * MARGIN * upper_factor(days))

    # KRR simple: p95 of the samples (the bucket's end here), memory = max + 15 %
    assert row["krr_cpu"] == pytest.approx(end)
    assert row["krr_memory"] == pytest.approx(200 * MI * 1.15)

    # side by side with the requests: 500 m > 1.2 * 351.2 m; 256 MiB is within 20 % of 250 MiB
    assert (row["cpu_request"], row["memory_request"]) == (500, 256 * MI)
    verdicts = (row["cpu_verdict"], row["memory_verdict"], row["verdict"])
    assert verdicts == ("over-requested", "well-sized", "over-requested")
    assert (row["namespace"], row["pod"], row["workload_kind"], row["workload_name"]) == (
        "shop", "web-7d4b9c8f5d-x2x9z", "Deployment", "web",
    )  # fmt: skip


def test_floors_are_split_over_the_pods_containers(tmp_path: Path) -> None:
    """Two idle containers in one pod: each gets 25 m / 2 and 250 MiB / 2 (VPA's per-pod minimum
    spread over the containers), because 1 m's bucket (0, ends at 10 m) + 15 % is only 11.5 m."""
    points = [usage("p", 1.0, MI, DAY, container=c) for c in ("main", "sidecar")]
    pods = [pod("a", "p", "n1", [Container("main", "100m"), Container("sidecar")])]
    store = Store.open(write_store(tmp_path, points, pods=pods))
    got = rightsizing.recommend(store, "30d")
    assert got.height == 2
    assert cpu_end(cpu_bucket(1.0)) * MARGIN == pytest.approx(11.5)
    for name in ("main", "sidecar"):
        row = one(got, container=name)
        assert row["vpa_cpu_target"] == pytest.approx(POD_MIN_CPU / 2)
        assert row["vpa_cpu_lower"] == pytest.approx(POD_MIN_CPU / 2)
        assert row["vpa_memory_target"] == pytest.approx(POD_MIN_MEMORY / 2)
    # the upper bound (1 day of history: x 2.0007) stays above the floor on its own
    days = (DAY - 1) / DAY
    assert one(got, container="main")["vpa_cpu_upper"] == pytest.approx(cpu_end(0) * MARGIN * upper_factor(days))
    assert one(got, container="sidecar")["cpu_verdict"] == "no-request"
    assert one(got, container="main")["cpu_verdict"] == "over-requested"  # 100 m against 12.5 m


def test_a_workload_of_three_pods_is_merged_per_container_name(tmp_path: Path) -> None:
    """Three replicas of Deployment api at 100, 200 and 400 m, same request (same weight), one
    day: the merged histogram has a third of the weight in each bucket (8, 14, 22). p50 is
    reached at the second (2/3 >= 1/2), p90 and p95 at the third."""
    usages = {"api-5d8f9c7b6-q2w4z": 100.0, "api-5d8f9c7b6-r5t7x": 200.0, "api-5d8f9c7b6-z9k8m": 400.0}
    points = [usage(name, cpu, 300e6, DAY, namespace="shop", container="api") for name, cpu in usages.items()]
    owner = ("ReplicaSet", "api-5d8f9c7b6")
    pods = [pod("shop", name, "n1", [Container("api", "500m", "512Mi")], owner=owner) for name in usages]
    store = Store.open(write_store(tmp_path, points, pods=pods))

    got = rightsizing.recommend(store, "30d", level="workload")
    assert got.height == 1
    row = got.row(0, named=True)
    assert (row["namespace"], row["workload_kind"], row["workload_name"], row["container"], row["pods"]) == (
        "shop", "Deployment", "api", "api", 3,
    )  # fmt: skip
    assert [cpu_bucket(v) for v in usages.values()] == [8, 14, 22]
    # confidence: samples of the three pods add up (3 days' worth), the lifespan stays one day
    days = min((DAY - 1) / DAY, 3 * DAY / DAY)
    assert row["history_days"] == pytest.approx(days)
    assert row["vpa_cpu_lower"] == pytest.approx(cpu_end(14) * MARGIN * lower_factor(days))
    assert row["vpa_cpu_target"] == pytest.approx(cpu_end(22) * MARGIN)
    assert row["vpa_cpu_upper"] == pytest.approx(cpu_end(22) * MARGIN * upper_factor(days))
    # KRR: the largest of the pods' own p95s
    assert row["krr_cpu"] == pytest.approx(cpu_end(22))
    assert row["krr_memory"] == pytest.approx(300e6 * 1.15)
    # memory: three peaks of 300 MB, all in one bucket
    assert row["vpa_memory_target"] == pytest.approx(memory_end(memory_bucket(300e6)) * MARGIN)

    per_container = rightsizing.recommend(store, "30d", level="container")
    assert per_container.height == 3
    alone = one(per_container, pod="api-5d8f9c7b6-q2w4z")
    assert alone["vpa_cpu_target"] == pytest.approx(cpu_end(8) * MARGIN)
    assert alone["history_days"] == pytest.approx(days)


def test_one_day_of_history_doubles_the_upper_bound(tmp_path: Path) -> None:
    """1,441 samples from midnight to midnight: a lifespan of exactly one day and more than 1,440
    samples, so the confidence is 1 day: upper bound x (1 + 1/1) = 2, lower x (1.001)^-2."""
    points = usage("p", 300.0, 400e6, DAY + 1)
    store = Store.open(write_store(tmp_path, points, pods=[pod("a", "p", "n1", [Container("c", "300m", "400M")])]))
    row = rightsizing.recommend(store, "30d").row(0, named=True)
    assert row["history_days"] == pytest.approx(1.0)
    end = cpu_end(18)
    assert row["vpa_cpu_upper"] == pytest.approx(end * MARGIN * 2)
    assert row["vpa_cpu_lower"] == pytest.approx(end * MARGIN * 1.001**-2)
    memory_target = memory_end(memory_bucket(400e6)) * MARGIN
    assert row["vpa_memory_upper"] == pytest.approx(memory_target * 2)
    # 300 m asked, 351 m recommended: within 20 %
    assert row["cpu_verdict"] == "well-sized"


def test_cpu_samples_are_weighted_by_request_and_decay(tmp_path: Path) -> None:
    """Day 1 at 100 m with a 2-core request, day 2 (the newest) at 400 m with a 50 m request.
    Weights: day 1 = 1440 * max(2.0, 0.1) * 2^-1 = 1440, day 2 = 1440 * max(0.05, 0.1) * 2^0 = 144.
    p50 (792) and p90 (1,425.6) are reached in day 1's bucket, p95 (1,504.8) only in day 2's.
    Unweighted, half the samples are at 400 m and the target would be day 2's bucket."""
    day1 = usage("p", 100.0, MI, DAY)
    day2 = usage("p", 400.0, MI, DAY, start=T0 + timedelta(days=1))
    store = Store.open(write_store(tmp_path / "s", [day1, day2]))
    # requests per day: patch the rollup rows (the snapshot holds one request for the whole store)
    days = container_days(store).with_columns(
        pl.when(pl.col("day") == T0.date()).then(pl.lit(2000)).otherwise(pl.lit(50)).cast(pl.Int64).alias("cpu_request")
    )
    weights = {"day1": DAY * max(2.0, 0.1) * 2**-1, "day2": DAY * max(0.05, 0.1) * 2**0}
    total = sum(weights.values())
    assert weights["day1"] >= 0.9 * total and weights["day1"] < 0.95 * total
    row = rightsizing.recommend_frame(days).row(0, named=True)
    history = (2 * DAY - 1) / DAY
    assert row["vpa_cpu_lower"] == pytest.approx(cpu_end(cpu_bucket(100)) * MARGIN * lower_factor(history))
    assert row["vpa_cpu_target"] == pytest.approx(cpu_end(cpu_bucket(100)) * MARGIN)
    assert row["vpa_cpu_upper"] == pytest.approx(cpu_end(cpu_bucket(400)) * MARGIN * upper_factor(history))
    assert row["cpu_request"] == 50  # the newest day's
    assert row["cpu_verdict"] == "under-requested"

    # same requests: only the decay is left, day 1 weighs 1/3 of the total, so p50 is day 2's
    same = rightsizing.recommend_frame(days.with_columns(pl.lit(500, pl.Int64).alias("cpu_request"))).row(0, named=True)
    assert same["vpa_cpu_lower"] == pytest.approx(cpu_end(cpu_bucket(400)) * MARGIN * lower_factor(history))
    # no request at all: every sample weighs the 0.1-core minimum, decay alone again
    unset = days.with_columns(pl.lit(None, pl.Int64).alias("cpu_request"))
    none = rightsizing.recommend_frame(unset).row(0, named=True)
    assert none["vpa_cpu_lower"] == same["vpa_cpu_lower"]
    assert none["cpu_verdict"] == "no-request"
    # KRR ignores weights: half the samples are at 400 m, so its p95 is 400 m's bucket
    assert row["krr_cpu"] == pytest.approx(cpu_end(cpu_bucket(400)))


def test_krr_simple_values_and_too_little_data(tmp_path: Path) -> None:
    """1,380 samples at 100 m and 60 at 1,000 m: 95.8 % of the samples are in 100 m's bucket, so
    KRR's p95 is that bucket's end; memory peaks of 100, 300 and 200 MB over three days give KRR
    300 MB * 1.15. A container with 50 samples (< 100, KRR's points_required) gets no KRR value."""
    cpu = [100.0] * 1380 + [1000.0] * 60
    memory = [100e6] * DAY + [300e6] * DAY + [200e6] * DAY
    points = [
        usage("p", cpu * 3, memory),
        usage("short", 100.0, MI, 50),
    ]
    pods = [pod("a", "p", "n1", [Container("c", "1", "1G")]), pod("a", "short", "n1", [Container("c", "1", "1G")])]
    store = Store.open(write_store(tmp_path, points, pods=pods))
    got = rightsizing.recommend(store, "30d", strategy="krr")
    row = one(got, pod="p")
    assert row["krr_cpu"] == pytest.approx(cpu_end(cpu_bucket(100)))
    assert row["krr_memory"] == pytest.approx(300e6 * 1.15)
    # request 1,000 m against 110 m; 1 GB against 345 MB
    assert (row["cpu_verdict"], row["memory_verdict"]) == ("over-requested", "over-requested")
    short = one(got, pod="short")
    assert short["krr_cpu"] is None and short["krr_memory"] is None
    assert short["verdict"] == "insufficient-data"
    # VPA still answers for it (with a tiny confidence: 49 minutes)
    assert short["vpa_cpu_target"] == pytest.approx(cpu_end(cpu_bucket(100)) * MARGIN)
    assert short["history_days"] == pytest.approx(49 / DAY)


def test_namespace_filter_levels_and_errors(tmp_path: Path) -> None:
    points = [usage("p", 50.0, MI, 200, namespace=ns) for ns in ("a", "b")]
    store = Store.open(write_store(tmp_path / "ab", points))
    assert rightsizing.recommend(store, "30d", namespace="b")["namespace"].to_list() == ["b"]
    assert rightsizing.recommend(store, "30d", namespace=["a", "b"]).height == 2
    with pytest.raises(ConfigError, match="level"):
        rightsizing.recommend(store, level="cluster")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="strategy"):
        rightsizing.recommend(store, strategy="goldilocks")  # type: ignore[arg-type]
    # a single sample: no history, so no upper bound (VPA's is infinite) and the floor as lower bound
    lone = Store.open(write_store(tmp_path / "lone", usage("p", 50.0, MI, 1)))
    row = rightsizing.recommend(lone, "30d").row(0, named=True)
    assert row["history_days"] == 0.0
    assert row["vpa_cpu_upper"] is None and row["vpa_memory_upper"] is None
    assert row["vpa_cpu_lower"] == pytest.approx(POD_MIN_CPU)
    assert row["vpa_cpu_target"] == pytest.approx(cpu_end(cpu_bucket(50)) * MARGIN)
    empty = rightsizing.recommend_frame(pl.DataFrame(), level="workload")
    assert empty.height == 0
    assert empty.columns[:5] == ["namespace", "workload_kind", "workload_name", "container", "pods"]
