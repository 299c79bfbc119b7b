"""Daily rollups against hand-computed answers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from stores import GI, MI, T0, Container, container_series, node, pod, series, write_store

from heapster_columnar.analysis import rollups
from heapster_columnar.analysis.store import Store

MINUTE = timedelta(minutes=1)


def test_a_container_at_a_constant_300m_for_a_week(tmp_path: Path) -> None:
    """Seven days of 1,440 samples at 300 m: one row a day, one histogram bucket (18: VPA's
    bucket ``floor(log(1 + 300 * 0.05 / 10) / log(1.05))``), sums exact, requests from the pod."""
    points = container_series(
        T0,
        MINUTE,
        namespace="shop",
        pod="web-7d4b9c8f5d-x2x9z",
        container="web",
        node="n1",
        cpu=300.0,
        memory=200 * MI,
        count=7 * 1440,
    )
    owner = ("ReplicaSet", "web-7d4b9c8f5d")
    store = Store.open(
        write_store(
            tmp_path,
            points,
            pods=[pod("shop", "web-7d4b9c8f5d-x2x9z", "n1", [Container("web", "500m", "256Mi")], owner=owner)],
            nodes=[node("n1", cpu="4", memory="16Gi")],
        )
    )
    days = rollups.container_days(store)
    assert days.height == 7
    assert days["day"].to_list() == [(T0 + timedelta(days=d)).date() for d in range(7)]
    row = days.row(0, named=True)
    assert (row["samples"], row["cpu_sum"], row["cpu_max"]) == (1440, 1440 * 300.0, 300.0)
    assert (row["cpu_buckets"], row["cpu_counts"]) == ([18], [1440])
    assert (row["memory_samples"], row["memory_max"]) == (1440, 200 * MI)
    assert (row["cpu_request"], row["memory_request"], row["cpu_limit"]) == (500, 256 * MI, None)
    assert (row["workload_kind"], row["workload_name"]) == ("Deployment", "web")
    assert row["seconds"] == 86400.0


def test_vpa_bucket_boundaries() -> None:
    """Bucket i starts at 10 * (1.05**i - 1) / 0.05 millicores; 176 buckets up to 1,000 cores."""
    b = rollups.CPU_BUCKETS
    assert b.count == 176
    frame = pl.DataFrame({"v": [0.0, 9.99, 10.0, 10.5, 300.0, 305.3, 305.5, 2e6]})
    got = frame.select(b.index(pl.col("v"))).to_series().to_list()
    assert got == [0, 0, 1, 1, 18, 18, 19, 175]
    end = pl.select(b.percentile_value(pl.lit(18))).item()
    assert end == pytest.approx(10 * (1.05**19 - 1) / 0.05)  # 305.39...


def test_workload_names_from_owner_references() -> None:
    frame = pl.DataFrame(
        {
            "kind": ["ReplicaSet", "ReplicaSet", "Job", "Job", "DaemonSet", None],
            "name": ["api-5d8f9c7b6", "legacy-rs", "backup-28571520", "adhoc", "agent", None],
            "pod": ["api-5d8f9c7b6-q2w4z", "legacy-rs-abcde", "backup-28571520-x", "adhoc-y", "agent-z", "lonely"],
        }
    )
    kind, name = rollups.workload_of(pl.col("kind"), pl.col("name"), pl.col("pod"))
    got = frame.select(kind.alias("k"), name.alias("n")).rows()
    assert got == [
        ("Deployment", "api"),
        ("ReplicaSet", "legacy-rs"),  # no template hash: the ReplicaSet itself
        ("CronJob", "backup"),
        ("Job", "adhoc"),
        ("DaemonSet", "agent"),
        ("Pod", "lonely"),
    ]


def test_node_days_and_requests_placed(tmp_path: Path) -> None:
    """A node at a constant 1,000 m of 4 cores with one container requesting 500 m for the
    second half of the day only: requested = 250 m on average over the node's samples."""
    node_points = pl.concat(
        [
            series(T0, MINUTE, 1000.0, count=1440, metric="cpu/usage_rate", type="node", nodename="n1"),
            series(T0, MINUTE, 4.0 * GI, count=1440, metric="memory/working_set", type="node", nodename="n1"),
        ]
    )
    half = T0 + timedelta(hours=12)
    container = container_series(
        half, MINUTE, namespace="a", pod="p", container="c", node="n1", cpu=100.0, memory=MI, count=720
    )
    store = Store.open(
        write_store(
            tmp_path,
            [node_points, container],
            pods=[pod("a", "p", "n1", [Container("c", "500m", "1Gi")])],
            nodes=[node("n1", cpu="4", memory="16Gi")],
        )
    )
    days = rollups.node_days(store)
    row = days.row(0, named=True)
    assert (row["samples"], row["cpu_sum"], row["cpu_max"], row["cpu_p95"]) == (1440, 1440 * 1000.0, 1000.0, 1000.0)
    assert (row["allocatable_cpu"], row["allocatable_memory"]) == (4000, 16 * GI)
    assert row["cpu_requested"] == pytest.approx(250.0)
    assert row["memory_requested"] == pytest.approx(GI / 2)


def test_materialized_days_read_back_equal_to_computed_ones(tmp_path: Path) -> None:
    points = container_series(
        T0,
        MINUTE,
        namespace="a",
        pod="p",
        container="c",
        node="n1",
        cpu=[float(i % 700) for i in range(3 * 1440)],
        memory=[float(MI)] * (3 * 1440),
        count=None,
    )
    store = Store.open(write_store(tmp_path, points, pods=[pod("a", "p", "n1", [Container("c", "1", "1Gi")])]))
    computed = rollups.container_days(store)
    assert rollups.closed_days(store) == [T0.date(), (T0 + timedelta(days=1)).date()]  # the last day is open
    assert rollups.materialize(store) == rollups.closed_days(store)
    assert store.rollup_dates("container_days") == rollups.closed_days(store)
    assert rollups.container_days(store).equals(computed)
    assert sum(computed["cpu_counts"].list.sum()) == 3 * 1440


def test_seven_days_back_from_midday_are_seven_whole_days() -> None:
    """The newest window at 12:00 on day 8: ``7d`` starts at 12:00 on day 1, so the rollups
    cover days 2-8 (not 8 days with a half first one); a range starting at midnight keeps it."""
    from heapster_columnar.analysis.store import TimeRange

    end = T0 + timedelta(days=7, hours=12)
    assert rollups.whole_days(TimeRange(end - timedelta(days=7), end)) == (
        (T0 + timedelta(days=1)).date(),
        (T0 + timedelta(days=7)).date(),
    )
    assert rollups.whole_days(TimeRange(T0, T0 + timedelta(days=2))) == (T0.date(), (T0 + timedelta(days=1)).date())


def test_a_day_with_one_window_counts_it_at_the_store_resolution(tmp_path: Path) -> None:
    """Ten-minute windows up to the midnight one of the next day: that open day has a single
    window, so no gap of its own; its one sample stands for 600 s (the day before), not the
    60 s default."""
    step = timedelta(minutes=10)
    points = container_series(
        T0, step, namespace="shop", pod="web-1", container="web", node="n1", cpu=300.0, memory=200 * MI, count=145
    )
    store = Store.open(write_store(tmp_path, points, nodes=[node("n1", cpu="4", memory="16Gi")]))
    days = rollups.container_days(store).sort("day")
    assert days["samples"].to_list() == [144, 1]
    assert days["seconds"].to_list() == [86400.0, 600.0]
