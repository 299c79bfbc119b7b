"""Usage over time against hand-computed hourly values."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from stores import GI, T0, series, write_store

from heapster_columnar.analysis import usage as usage_module
from heapster_columnar.analysis.store import Store, TimeRange
from heapster_columnar.analysis.usage import polars_step, usage
from heapster_columnar.errors import ConfigError, StoreError

MINUTE = timedelta(minutes=1)
HOURS = 3
# namespace "shop": in hour h the minutes carry 1000 h + 1, …, 1000 h + 60 millicores
SHOP = np.concatenate([1000.0 * h + np.arange(1, 61) for h in range(HOURS)])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Three hours at 60 s of every level Heapster writes, with known values."""
    root = tmp_path_factory.mktemp("usage")
    count = HOURS * 60
    points = [
        series(T0, MINUTE, SHOP, metric="cpu/usage_rate", type="ns", namespace_name="shop"),
        series(T0, MINUTE, 5.0, count=count, metric="cpu/usage_rate", type="ns", namespace_name="other"),
        series(T0, MINUTE, 2.0 * GI, count=count, metric="memory/working_set", type="ns", namespace_name="shop"),
        series(T0, MINUTE, SHOP + 5.0, metric="cpu/usage_rate", type="cluster"),
        series(T0, MINUTE, 700.0, count=count, metric="cpu/usage_rate", type="node", nodename="n1"),
        series(T0, MINUTE, 900.0, count=count, metric="cpu/usage_rate", type="node", nodename="n2"),
        *[
            series(
                T0,
                MINUTE,
                value,
                count=count,
                metric="cpu/usage_rate",
                type=type_,
                namespace_name="shop",
                pod_name=pod,
                nodename="n1",
                **({"container_name": "main"} if type_ == "pod_container" else {}),
            )
            for pod, value in (("web", 300.0), ("db", 800.0))
            for type_ in ("pod", "pod_container")
        ],
        *[
            series(
                T0,
                MINUTE,
                value,
                count=count,
                metric="filesystem/usage",
                type="node",
                nodename="n1",
                resource_id=resource,
            )
            for resource, value in (("/", 10.0 * GI), ("logs", 1.0 * GI))
        ],
    ]
    return Store.open(write_store(root, points))


def hour(h: int) -> datetime:
    return T0 + timedelta(hours=h)


def test_a_namespace_per_hour_is_the_hand_average(store: Store) -> None:
    """Hour h holds 1000 h + 1 … 1000 h + 60: mean 1000 h + 30.5, 60 samples per bucket."""
    frame = usage(store, level="namespace", namespace="shop", since="3h")
    assert frame.columns == ["timestamp", "namespace", "value", "samples"]
    assert frame.rows() == [(hour(h), "shop", 1000.0 * h + 30.5, 60) for h in range(HOURS)]


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("max", 60.0),
        ("min", 1.0),
        ("sum", 1830.0),
        # linear interpolation at (60 - 1) * 0.95 = 56.05 between the 57th and 58th values
        ("p95", 57.05),
        ("p50", 30.5),
    ],
)
def test_aggregations_within_a_bucket(store: Store, agg: str, expected: float) -> None:
    frame = usage(store, level="namespace", namespace="shop", since="3h", agg=agg)
    offset = 60_000.0 if agg == "sum" else 1000.0
    assert frame["value"].to_list() == pytest.approx([offset * h + expected for h in range(HOURS)])


def test_a_one_namespace_question_returns_only_that_namespace(store: Store) -> None:
    everything = usage(store, level="namespace", since="3h")
    assert sorted(everything["namespace"].unique()) == ["other", "shop"]
    other = usage(store, level="namespace", namespace="other", since="3h")
    assert other["namespace"].unique().to_list() == ["other"]
    assert other["value"].to_list() == [5.0] * HOURS
    assert usage(store, level="namespace", namespace="absent", since="3h").is_empty()


def test_steps_split_or_merge_buckets(store: Store) -> None:
    half = usage(store, level="namespace", namespace="shop", since="3h", step="30m")
    assert half.height == 2 * HOURS
    assert half["value"].to_list()[:2] == [15.5, 45.5]  # minutes 1-30 and 31-60 of hour 0
    assert set(half["samples"]) == {30}
    day = usage(store, level="namespace", namespace="shop", since="3h", step="1d")
    assert day.rows() == [(T0, "shop", float(SHOP.mean()), HOURS * 60)]


def test_levels_and_their_keys(store: Store) -> None:
    cluster = usage(store, since="3h")
    assert cluster.columns == ["timestamp", "value", "samples"]
    assert cluster["value"].to_list() == [1000.0 * h + 35.5 for h in range(HOURS)]

    nodes = usage(store, level="node", since="3h", agg="max")
    assert nodes.select("node", "value").unique().sort("node").rows() == [("n1", 700.0), ("n2", 900.0)]

    pods = usage(store, level="pod", namespace="shop", pod="db", since="3h")
    assert pods.columns == ["timestamp", "namespace", "pod", "value", "samples"]
    assert pods["value"].to_list() == [800.0] * HOURS

    containers = usage(store, level="container", node="n1", since="3h")
    assert containers.columns == ["timestamp", "namespace", "pod", "container", "value", "samples"]
    assert containers.select("pod", "value").unique().sort("pod").rows() == [("db", 800.0), ("web", 300.0)]

    memory = usage(store, "memory/working_set", level="ns", since="3h")  # Heapster's type name works too
    assert memory["value"].to_list() == [2.0 * GI] * HOURS


def test_a_labeled_metric_has_one_series_per_label(store: Store) -> None:
    frame = usage(store, "filesystem/usage", level="node", since="3h", step="1d")
    assert frame.columns == ["timestamp", "node", "resource_id", "value", "samples"]
    assert frame.select("resource_id", "value").rows() == [("/", 10.0 * GI), ("logs", 1.0 * GI)]


def test_the_range_counts_back_from_the_newest_window(store: Store) -> None:
    """``1h`` ends just after the newest window (02:59): minutes 02:00-02:59, one bucket."""
    last = usage(store, level="namespace", namespace="shop", since="1h")
    assert last.rows() == [(hour(2), "shop", 2030.5, 60)]
    middle = usage(store, level="namespace", namespace="shop", since=TimeRange(hour(1), hour(2)))
    assert middle["timestamp"].to_list() == [hour(1)]
    until = usage(store, level="namespace", namespace="shop", since="1h", until=hour(1))
    assert until["timestamp"].to_list() == [hour(0)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": "node", "namespace": "shop"}, "level 'node' cannot be filtered by namespace"),
        ({"level": "namespace", "node": "n1"}, "level 'namespace' cannot be filtered by node"),
        ({"level": "cluster", "pod": "web"}, "level 'cluster' cannot be filtered by pod"),
        ({"level": "deployment"}, "unknown level 'deployment'"),
        ({"agg": "median"}, "unknown aggregation 'median'"),
        ({"agg": "p100"}, "unknown aggregation 'p100'"),
        ({"step": "1x"}, "'1x' is not a duration"),
        ({"since": "yesterday"}, "'yesterday' is not a duration"),
    ],
)
def test_bad_arguments_are_named(store: Store, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        usage(store, **kwargs)


def test_polars_steps() -> None:
    assert [polars_step(s) for s in ("1h", "15m", "30s", "1d", "2w", "1.5h")] == [
        "1h",
        "15m",
        "30s",
        "1d",
        "2w",
        "5400s",
    ]
    with pytest.raises(ConfigError, match="whole seconds"):
        polars_step("0.5s")


def test_the_namespace_filter_reaches_the_parquet_scan(store: Store, tmp_path: Path) -> None:
    """The filters must be in the scan (row groups of other namespaces skipped by their
    statistics), not in a filter above it (every row group read, then dropped): in DuckDB's scan
    for a local store, in Polars' for a store behind a URL."""
    import duckdb
    import fsspec

    sql = store.points_sql(store.resolve("3h"), metrics=["cpu/usage_rate"], types=["ns"], namespaces=["shop"])
    assert sql is not None
    plan = duckdb.connect().sql(sql).explain()
    scan = plan[plan.index("READ_PARQUET") if "READ_PARQUET" in plan else plan.index("TABLE_SCAN") :]
    assert "FILTER" not in plan and "namespace_name" in scan and "shop" in scan

    memory = fsspec.filesystem("memory")
    memory.put(store.root, "/usage-copy", recursive=True)
    try:
        remote = Store.open("memory://usage-copy")
        query = usage_module._query(
            remote,
            "cpu/usage_rate",
            level="namespace",
            since="3h",
            until=None,
            step="1h",
            namespace="shop",
            node=None,
            pod=None,
            agg="mean",
        )
        polars_plan = query.explain()
        polars_scan = polars_plan[polars_plan.index("SCAN") :]
        assert "namespace_name" in polars_scan and "shop" in polars_scan
    finally:
        memory.rm("/usage-copy", recursive=True)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    points = series(T0, MINUTE, 1.0, count=120, metric="cpu/usage_rate", type="ns", namespace_name="a")
    store = Store.open(write_store(tmp_path, points))
    broken = sorted((tmp_path / "points").rglob("*.parquet"))[0]
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(StoreError, match=str(broken)):
        usage(store, level="namespace", since=TimeRange(T0, T0 + timedelta(hours=2)))


def test_an_empty_range_gives_an_empty_frame_with_the_columns(store: Store) -> None:
    frame = usage(store, level="pod", since=TimeRange(T0 - timedelta(days=2), T0 - timedelta(days=1)))
    assert frame.is_empty()
    assert frame.columns == ["timestamp", "namespace", "pod", "value", "samples"]
    assert frame.schema["value"] == pl.Float64
