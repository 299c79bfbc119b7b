"""Opening a store: errors that name the problem, time ranges, pruning filters, URLs, DuckDB views."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from stores import MI, T0, Container, container_series, node, pod, series, write_store

from heapster_columnar.analysis import rollups
from heapster_columnar.analysis.store import Store, TimeRange, parse_duration
from heapster_columnar.errors import ConfigError, StoreError

HOUR = timedelta(hours=1)


def two_namespaces(root: Path) -> Store:
    """48 hourly points of two containers in two namespaces; cpu = the hour index (a: +0, b: +1000)."""
    frames = [
        container_series(
            T0,
            HOUR,
            namespace=ns,
            pod=f"{ns}-p",
            container="c",
            node="n1",
            cpu=[float(offset + h) for h in range(48)],
            memory=[float(MI)] * 48,
        )
        for ns, offset in (("a", 0), ("b", 1000))
    ]
    frames.append(series(T0, HOUR, 5.0, count=48, metric="cpu/usage_rate", type="cluster"))
    return Store.open(
        write_store(
            root,
            frames,
            pods=[pod(ns, f"{ns}-p", "n1", [Container("c", "100m", "64Mi")]) for ns in ("a", "b")],
            nodes=[node("n1", cpu="2", memory="8Gi")],
        )
    )


def test_not_a_store_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"has no points/ directory"):
        Store.open(tmp_path)
    with pytest.raises(StoreError, match="nowhere"):
        Store.open(tmp_path / "nowhere")


def test_durations_and_ranges(tmp_path: Path) -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("90m") == timedelta(minutes=90)
    for bad in ("7", "7y", "-1d", "0h"):
        with pytest.raises(ConfigError, match=repr(bad).replace("-", r"\-")):
            parse_duration(bad)
    store = two_namespaces(tmp_path)
    assert store.span() == (T0, T0 + 47 * HOUR)
    time = store.resolve("1d")  # anchored at the newest window, not the wall clock
    assert time.end == T0 + 47 * HOUR + timedelta(milliseconds=1)
    assert store.points(time, metrics=["cpu/usage_rate"], types=["cluster"]).collect().height == 24
    with pytest.raises(ConfigError, match="empty"):
        store.resolve(T0 + 100 * HOUR)


def test_filters_select_exactly_and_strings_are_plain(tmp_path: Path) -> None:
    store = two_namespaces(tmp_path)
    day2 = TimeRange(T0 + 24 * HOUR, T0 + 48 * HOUR)
    got = store.points(day2, metrics=["cpu/usage_rate"], namespaces=["b"]).collect()
    assert got.height == 24
    assert got["value"].sort().to_list() == [1000.0 + h for h in range(24, 48)]
    assert got.schema["namespace_name"] == pl.String and "date" not in got.columns
    assert store.points(TimeRange(T0, T0 + HOUR), nodes=["n1"]).collect().height == 4  # 2 metrics x 2 ns


def test_an_fsspec_url_reads_the_same_as_the_path(tmp_path: Path) -> None:
    """A store on an fsspec filesystem (here fsspec's in-memory one, standing for object storage)
    is read through a pyarrow dataset; same rows, same rollups as the local path."""
    fsspec = pytest.importorskip("fsspec")
    store = two_namespaces(tmp_path)
    memory = fsspec.filesystem("memory")
    memory.put(str(tmp_path), "/copied", recursive=True)
    try:
        remote = Store.open("memory://copied")
        assert not remote.local
        keys = ["timestamp", "type", "namespace_name"]
        want = store.points(metrics=["cpu/usage_rate"]).collect().sort(keys)
        got = remote.points(metrics=["cpu/usage_rate"]).collect().sort(keys)
        assert got.equals(want)
        assert rollups.container_days(remote).equals(rollups.container_days(store))
    finally:
        memory.rm("/copied", recursive=True)


def test_duckdb_views(tmp_path: Path) -> None:
    store = two_namespaces(tmp_path)
    rollups.materialize(store)
    con = store.duckdb()
    (total,) = con.sql(
        "SELECT sum(value) FROM points WHERE metric = 'cpu/usage_rate' AND namespace_name = 'a' "
        "AND type = 'pod_container'"
    ).fetchall()[0]
    assert total == sum(range(48))
    assert con.sql("SELECT count(*) FROM pods").fetchall() == [(2,)]
    assert con.sql("SELECT count(*) FROM container_days").fetchall() == [(2,)]  # day 1 closed, 2 containers


def test_a_corrupt_file_is_named(tmp_path: Path) -> None:
    store = two_namespaces(tmp_path)
    victim = sorted((tmp_path / "points").rglob("*.parquet"))[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=victim.name):
        store.collect(store.points())
    with pytest.raises(StoreError, match=victim.name):
        rollups.container_days(store)
    assert store.verify() == [str(victim)]


def test_snapshots_of_a_range_are_chosen_by_name(tmp_path: Path) -> None:
    """Three daily snapshots: a range inside day 2 reads only the one in force then; a range
    across days 2-3 the two; the last known row of a pod deleted on day 3 comes from day 2's."""
    from stores import dimensions

    from heapster_columnar.sinks.parquet_history import HistoryWriter

    writer = HistoryWriter(str(tmp_path))
    writer.write_points(series(T0, HOUR, 1.0, count=72, metric="cpu/usage_rate", type="cluster").to_arrow())
    pods = [pod("a", "p1", "n1", [Container("c", "100m")]), pod("a", "p2", "n1", [Container("c", "200m")])]
    for day, listed in enumerate([pods[:1], pods, pods[1:]]):
        writer.write_dimensions(dimensions(listed), T0 + timedelta(days=day))
    store = Store.open(tmp_path)

    def names(time: TimeRange) -> list[tuple[str, int]]:
        frame = store.snapshots("pods", time).collect()
        return sorted((r["name"], r["valid_from"].day) for r in frame.iter_rows(named=True))

    day2 = T0 + timedelta(days=1)
    assert names(TimeRange(day2 + HOUR, day2 + 2 * HOUR)) == [("p1", day2.day), ("p2", day2.day)]
    assert names(TimeRange(day2 + HOUR, day2 + 26 * HOUR)) == [
        ("p1", day2.day),
        ("p2", day2.day),
        ("p2", day2.day + 1),
    ]
    last = store.last_known("containers", ["namespace", "pod_name", "name"]).collect()
    assert sorted(zip(last["pod_name"], last["cpu_request"], strict=True)) == [("p1", 100), ("p2", 200)]
