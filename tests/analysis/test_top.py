"""Top consumers over stored history against hand-computed averages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from stores import MI, T0, Container, container_series, pod, write_store

from heapster_columnar.analysis import rollups
from heapster_columnar.analysis.store import Store, TimeRange
from heapster_columnar.analysis.top import rank, top
from heapster_columnar.errors import ConfigError, StoreError

MINUTE = timedelta(minutes=1)
DAY = 1440


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One day at 60 s:

    - shop/web (Deployment web): 300 m, requests 1000 m; 200 Mi, requests 256 Mi;
    - shop/db: 800 m, requests 500 m (uses more than it asked); 1 Gi, requests 1 Gi;
    - batch/job: 100 m requesting 200 m, 64 Mi requesting 128 Mi, for the second half of the day only.
    """
    half = T0 + timedelta(hours=12)
    points = [
        container_series(
            T0, MINUTE, namespace="shop", pod="web-7d4b9c8f5d-x2x9z", container="web", node="n1", cpu=300.0,
            memory=200 * MI, count=DAY,
        ),
        container_series(
            T0, MINUTE, namespace="shop", pod="db-0", container="db", node="n1", cpu=800.0, memory=1024 * MI,
            count=DAY,
        ),
        container_series(
            half, MINUTE, namespace="batch", pod="job-x", container="job", node="n2", cpu=100.0, memory=64 * MI,
            count=DAY // 2,
        ),
    ]  # fmt: skip
    pods = [
        pod(
            "shop",
            "web-7d4b9c8f5d-x2x9z",
            "n1",
            [Container("web", "1", "256Mi")],
            owner=("ReplicaSet", "web-7d4b9c8f5d"),
        ),
        pod("shop", "db-0", "n1", [Container("db", "500m", "1Gi")], owner=("StatefulSet", "db")),
        pod("batch", "job-x", "n2", [Container("job", "200m", "128Mi")]),
    ]
    return Store.open(write_store(tmp_path_factory.mktemp("top"), points, pods=pods))


def test_a_container_at_300m_requesting_1000m_wastes_700m(store: Store) -> None:
    frame = top(store, by="waste", level="container", since="1d")
    assert frame.columns == [
        "namespace",
        "pod",
        "container",
        "rank",
        "cpu_usage",
        "cpu_request",
        "cpu_waste",
        "containers",
    ]
    assert frame.select("container", "rank", "cpu_usage", "cpu_request", "cpu_waste").rows() == [
        ("web", 1, 300.0, 1000.0, 700.0),
        # half a day at 100 m requesting 200 m: averages over the day of 50 m and 100 m
        ("job", 2, 50.0, 100.0, 50.0),
        ("db", 3, 800.0, 500.0, -300.0),
    ]


def test_namespaces_by_usage_and_by_request(store: Store) -> None:
    by_usage = top(store, by="usage", since="1d")
    assert by_usage.select("namespace", "cpu_usage", "containers").rows() == [("shop", 1100.0, 2), ("batch", 50.0, 1)]
    by_request = top(store, by="request", since="1d")
    assert by_request.select("namespace", "cpu_request").rows() == [("shop", 1500.0), ("batch", 100.0)]


def test_memory_ranking(store: Store) -> None:
    frame = top(store, by="waste", resource="memory", level="pod", since="1d")
    assert frame.columns[:2] == ["namespace", "pod"]
    rows = frame.select("pod", "memory_usage", "memory_request", "memory_waste").rows()
    assert rows == [
        ("web-7d4b9c8f5d-x2x9z", 200.0 * MI, 256.0 * MI, 56.0 * MI),
        ("job-x", 32.0 * MI, 64.0 * MI, 32.0 * MI),
        ("db-0", 1024.0 * MI, 1024.0 * MI, 0.0),
    ]


def test_workloads_come_from_owner_references(store: Store) -> None:
    frame = top(store, level="workload", since="1d")
    assert frame.select("namespace", "workload_kind", "workload_name", "cpu_usage").rows() == [
        ("shop", "StatefulSet", "db", 800.0),
        ("shop", "Deployment", "web", 300.0),
        ("batch", "Pod", "job-x", 50.0),
    ]


def test_n_and_namespace_filter(store: Store) -> None:
    assert top(store, level="container", n=1, since="1d")["container"].to_list() == ["db"]
    shop = top(store, level="container", namespace="shop", since="1d")
    assert shop["container"].to_list() == ["db", "web"]
    assert shop["rank"].to_list() == [1, 2]


def test_a_namespace_is_the_sum_of_its_containers(store: Store) -> None:
    days = rollups.container_days(store)
    for by in ("usage", "request", "waste"):
        for resource in ("cpu", "memory"):
            column = f"{resource}_{by}"
            namespaces = rank(days, by=by, resource=resource, level="namespace")
            containers = rank(days, by=by, resource=resource, level="container")
            summed = containers.group_by("namespace").agg(pl.col(column).sum())
            joined = namespaces.join(summed, on="namespace", suffix="_sum")
            assert joined.height == 2
            assert joined[column].to_list() == pytest.approx(joined[f"{column}_sum"].to_list())


def test_a_range_without_days_is_empty(store: Store) -> None:
    frame = top(store, since=TimeRange(T0 - timedelta(days=3), T0 - timedelta(days=2)))
    assert frame.is_empty()
    assert frame.columns == ["namespace", "rank", "cpu_usage", "cpu_request", "cpu_waste", "containers"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": "cost"}, "unknown ranking 'cost'"),
        ({"resource": "gpu"}, "unknown resource 'gpu'"),
        ({"level": "node"}, "unknown level 'node'"),
        ({"n": 0}, "n must be at least 1"),
        ({"since": "a week"}, "'a week' is not a duration"),
    ],
)
def test_bad_arguments_are_named(store: Store, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        top(store, **kwargs)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    points = container_series(T0, MINUTE, namespace="a", pod="p", container="c", node="n", cpu=1.0, memory=MI, count=60)
    store = Store.open(write_store(tmp_path, points))
    broken = sorted((tmp_path / "points").rglob("*.parquet"))[0]
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(StoreError, match=str(broken)):
        top(store)
