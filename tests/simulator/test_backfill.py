"""``simulate --backfill``: a store written straight from the generator, checked by reading it back.

One small store (3 nodes x 10 pods, two days at 10 minutes, ending at midnight) is written once
and read with the analysis Store, as a notebook would: the window grid, row counts, sums that
must be exact, snapshots that cover every container, churn, rollups and the compactor's layout.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from heapster_columnar.analysis.rollups import rollup_points
from heapster_columnar.analysis.store import Store, TimeRange
from heapster_columnar.cli import main
from heapster_columnar.errors import ConfigError
from heapster_columnar.simulator.backfill import BackfillReport, backfill, default_end
from heapster_columnar.sinks._parquet_compact import sort_points
from heapster_columnar.sinks.parquet_history import HistoryWriter

sys.path.insert(0, str(Path(__file__).parents[1] / "sinks"))
from windows import decoded

END = datetime(2024, 6, 5, tzinfo=UTC)  # a Wednesday, midnight: 3 and 4 June are Monday and Tuesday
RES = timedelta(minutes=10)
NODES, PODS = 3, 10
USAGE = ["cpu/usage_rate", "memory/working_set", "memory/usage"]
LABELS = ["namespace_name", "pod_name", "container_name", "nodename"]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BackfillReport]:
    root = tmp_path_factory.mktemp("backfill") / "store"
    days: list[date] = []

    def progress(items: Iterable[date]) -> Iterable[date]:
        days.extend(items)
        return days

    report = backfill(
        str(root),
        nodes=NODES,
        pods_per_node=PODS,
        duration=timedelta(days=2),
        resolution=RES,
        end=END,
        seed=7,
        progress=progress,
    )
    assert days == [date(2024, 6, 3), date(2024, 6, 4), date(2024, 6, 5)]
    return root, report


@pytest.fixture(scope="module")
def store(written: tuple[Path, BackfillReport]) -> Store:
    return Store.open(written[0])


@pytest.fixture(scope="module")
def points(store: Store) -> pl.DataFrame:
    return store.points().collect()


def _windows() -> list[datetime]:
    count = timedelta(days=2) // RES
    return [END - RES * k for k in range(count - 1, -1, -1)]


def test_windows_every_resolution_up_to_the_end(points: pl.DataFrame, written: tuple[Path, BackfillReport]) -> None:
    report = written[1]
    stamps = points.select(pl.col("timestamp").unique().sort()).to_series().to_list()
    assert stamps == _windows()
    assert (report.first, report.last, report.windows) == (_windows()[0], END, len(_windows()))
    assert report.rows == points.height and report.rows_per_second > 0


def test_one_row_per_window_and_entity(store: Store, points: pl.DataFrame) -> None:
    windows = len(_windows())
    containers = store.dimension("containers").height
    pods = store.dimension("pods")
    assert pods.height == NODES * PODS
    namespaces = store.snapshots("pods").select(pl.col("namespace").n_unique()).collect().item()
    counts = {(t, m): n for t, m, n in points.group_by("type", "metric").len().iter_rows()}
    expected = {("pod_container", m): windows * containers for m in USAGE}
    expected |= {("pod", m): windows * NODES * PODS for m in USAGE}
    expected |= {("ns", m): windows * namespaces for m in [*USAGE, "cpu/request", "memory/request"]}
    expected |= {("cluster", m): windows for m in [*USAGE, "cpu/request", "memory/request"]}
    node_metrics = [*USAGE, *(f"{r}/node_{k}" for r in ("cpu", "memory") for k in ("allocatable", "utilization"))]
    node_metrics += ["cpu/node_reservation", "memory/node_reservation"]
    expected |= {("node", m): windows * NODES for m in node_metrics}
    assert counts == expected
    # the unfilled columns are null, the labels of each type as Heapster sets them
    assert (
        points.select(pl.col("pod_id", "resource_id", "labels", "sample_time").null_count().sum()).row(0)
        == (points.height,) * 4
    )
    ns = points.filter(pl.col("type") == "ns")
    assert ns.select(pl.col("nodename", "pod_name", "container_name").null_count()).row(0) == (ns.height,) * 3


def test_sums_are_exact(points: pl.DataFrame) -> None:
    usage = points.filter(pl.col("metric").is_in(USAGE))
    ints = usage.filter(pl.col("value_int").is_not_null())
    assert ints.height == usage.height and (ints["value"] == ints["value_int"].cast(pl.Float64)).all()

    def summed(kind: str, keys: list[str]) -> pl.DataFrame:
        rows = usage.filter(pl.col("type") == kind)
        return rows.group_by("timestamp", "metric", *keys).agg(pl.col("value_int").sum().alias("sum"))

    def of(kind: str, keys: list[str]) -> pl.DataFrame:
        return usage.filter(pl.col("type") == kind).select("timestamp", "metric", *keys, "value_int")

    pods = of("pod", ["namespace_name", "pod_name"]).join(
        summed("pod_container", ["namespace_name", "pod_name"]),
        on=["timestamp", "metric", "namespace_name", "pod_name"],
    )
    assert pods.height == usage.filter(pl.col("type") == "pod").height and (pods["value_int"] == pods["sum"]).all()
    ns = of("ns", ["namespace_name"]).join(
        summed("pod", ["namespace_name"]), on=["timestamp", "metric", "namespace_name"]
    )
    assert ns.height == usage.filter(pl.col("type") == "ns").height and (ns["value_int"] == ns["sum"]).all()
    nodes = of("node", ["nodename"]).join(summed("pod", ["nodename"]), on=["timestamp", "metric", "nodename"])
    assert (nodes["value_int"] > nodes["sum"]).all()  # the node's own system overhead on top of its pods
    cluster = of("cluster", []).join(summed("node", []), on=["timestamp", "metric"])
    assert cluster.height == len(_windows()) * 3 and (cluster["value_int"] == cluster["sum"]).all()

    memory = usage.filter(pl.col("metric").str.starts_with("memory/")).pivot(
        "metric", index=["timestamp", "type", *LABELS], values="value_int"
    )
    assert (memory["memory/usage"] >= memory["memory/working_set"]).all()
    assert (memory["memory/working_set"] % 4096 == 0).all()


def test_requests_and_node_ratios_follow_the_snapshot_in_force(store: Store, points: pl.DataFrame) -> None:
    containers = store.snapshots("containers").collect()
    pods = store.snapshots("pods").collect().select("namespace", "name", "node_name", "valid_from")
    # per snapshot: requests by namespace and by node
    requested = containers.join(
        pods, left_on=["namespace", "pod_name", "valid_from"], right_on=["namespace", "name", "valid_from"]
    )
    by_ns = requested.group_by("valid_from", "namespace").agg(pl.col("cpu_request", "memory_request").sum())
    by_node = requested.group_by("valid_from", "node_name").agg(pl.col("cpu_request", "memory_request").sum())
    versions = containers.select(pl.col("valid_from").unique().sort())

    def in_force(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.sort("timestamp").join_asof(versions, left_on="timestamp", right_on="valid_from")

    ns = in_force(
        points.filter(pl.col("type") == "ns").pivot("metric", index=["timestamp", "namespace_name"], values="value")
    )
    ns = ns.join(by_ns, left_on=["valid_from", "namespace_name"], right_on=["valid_from", "namespace"])
    assert ns.height == len(_windows()) * ns["namespace_name"].n_unique()
    assert (ns["cpu/request"] == ns["cpu_request"]).all() and (ns["memory/request"] == ns["memory_request"]).all()

    nodes = store.dimension("nodes").select("name", "allocatable_cpu", "allocatable_memory")
    node = in_force(
        points.filter(pl.col("type") == "node").pivot("metric", index=["timestamp", "nodename"], values="value")
    )
    node = node.join(by_node, left_on=["valid_from", "nodename"], right_on=["valid_from", "node_name"]).join(
        nodes, left_on="nodename", right_on="name"
    )
    assert node.height == len(_windows()) * NODES
    close = np.testing.assert_allclose
    close(node["cpu/node_reservation"], node["cpu_request"] / node["allocatable_cpu"], rtol=1e-12)
    close(node["memory/node_reservation"], node["memory_request"] / node["allocatable_memory"], rtol=1e-12)
    close(node["cpu/node_utilization"], node["cpu/usage_rate"] / node["allocatable_cpu"], rtol=1e-12)
    close(node["memory/node_utilization"], node["memory/usage"] / node["allocatable_memory"], rtol=1e-12)
    assert (node["cpu/node_allocatable"] == node["allocatable_cpu"]).all()
    # pods are sized for 30 a node (~65 % of a node requested); with 10, about a third of that
    reserved = node["cpu/node_reservation"].mean()
    assert isinstance(reserved, float) and 0.1 < reserved < 0.4


def test_every_container_is_in_a_snapshot_before_its_first_point(store: Store, points: pl.DataFrame) -> None:
    seen = (
        points.filter(pl.col("type") == "pod_container").group_by(LABELS).agg(pl.col("timestamp").min().alias("first"))
    )
    snapshots = store.snapshots("containers").collect()
    first_listed = snapshots.group_by("namespace", "pod_name", "name").agg(
        pl.col("valid_from").min(), pl.col("cpu_request").min(), pl.col("memory_request").min()
    )
    joined = seen.join(
        first_listed,
        left_on=["namespace_name", "pod_name", "container_name"],
        right_on=["namespace", "pod_name", "name"],
        how="left",
    )
    assert joined["valid_from"].null_count() == 0 and (joined["valid_from"] <= joined["first"]).all()
    assert (joined["cpu_request"] > 0).all() and (joined["memory_request"] > 0).all()
    # pods keep their node, and the API says the node the points say
    placed = store.snapshots("pods").collect().select("namespace", "name", "node_name").unique()
    assert placed.select("namespace", "name").is_duplicated().sum() == 0
    nodes = seen.join(placed, left_on=["namespace_name", "pod_name"], right_on=["namespace", "name"])
    assert nodes.height == seen.height and (nodes["nodename"] == nodes["node_name"]).all()


def test_churn_replaces_pods_on_the_same_node(store: Store, points: pl.DataFrame) -> None:
    assert store.snapshots("pods").select(pl.col("valid_from").n_unique()).collect().item() > 1
    pods = store.snapshots("pods").collect().unique(["namespace", "name"])
    life = (
        points.filter(pl.col("type") == "pod", pl.col("metric") == "cpu/usage_rate")
        .group_by("namespace_name", "pod_name", "nodename")
        .agg(pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last"), pl.len())
        .join(pods, left_on=["namespace_name", "pod_name"], right_on=["namespace", "name"])
    )
    # a pod runs without gaps, and each pod that went was followed on its node by one of the same
    # workload in the next window: the old pod's points stop when the new one's start
    assert (life["len"] == ((life["last"] - life["first"]) / RES).cast(pl.Int64) + 1).all()
    gone = life.filter(pl.col("last") < END)
    came = life.filter(pl.col("first") > _windows()[0])
    assert gone.height > 0 and gone.height == came.height
    app = pl.col("labels").map_elements(lambda m: dict(m)["app"] if m else None, return_dtype=pl.String)
    went = (
        gone.with_columns(app.alias("app"), (pl.col("last") + RES).alias("at")).group_by("nodename", "app", "at").len()
    )
    started = came.with_columns(app.alias("app"), pl.col("first").alias("at")).group_by("nodename", "app", "at").len()
    assert went.sort(pl.all()).equals(started.sort(pl.all()))
    # a new pod is in the API from its first window on, with a start time before that window
    listed = store.snapshots("pods").collect().group_by("namespace", "name").agg(pl.col("valid_from").min())
    new = came.join(listed, left_on=["namespace_name", "pod_name"], right_on=["namespace", "name"])
    assert (new["valid_from"] == new["first"]).all() and (new["start_time"] < new["first"]).all()
    # a rollout: one Deployment ran under two ReplicaSets (pod-template-hashes)
    replica_sets = pods.filter(pl.col("owner_kind") == "ReplicaSet").with_columns(app.alias("app"))
    assert (replica_sets.group_by("app").agg(pl.col("owner_name").n_unique())["owner_name"] > 1).any()


@pytest.mark.parametrize(("day", "windows"), [(date(2024, 6, 3), 143), (date(2024, 6, 4), 144)])
def test_rollups_of_closed_days_equal_the_readers(store: Store, day: date, windows: int) -> None:
    """Every day before the newest window's is stored, the first too (its first window ends at
    00:10); the newest (the midnight window of 5 June) is left to be computed when read."""
    assert store.rollup_dates("container_days") == [date(2024, 6, 3), date(2024, 6, 4)]
    assert store.rollup_dates("node_days") == [date(2024, 6, 3), date(2024, 6, 4)]
    containers, nodes = rollup_points(store, TimeRange.day(day))
    for table, expected, keys in (
        ("container_days", containers, ["namespace_name", "pod_name", "container_name", "nodename"]),
        ("node_days", nodes, ["nodename"]),
    ):
        stored = store.rollups(table)
        assert stored is not None
        frame = stored.filter(pl.col("day") == day).collect().select(expected.drop("day").columns).sort(keys)
        assert frame.height > 0
        assert frame.equals(expected.drop("day").sort(keys)), table
    assert containers["samples"].max() == windows  # a container that ran the whole day: every window


def test_files_are_what_the_history_writer_writes(written: tuple[Path, BackfillReport], tmp_path: Path) -> None:
    files = sorted(glob.glob(str(written[0] / "points" / "**" / "*.parquet"), recursive=True))
    assert len(files) == 2 * 24 + 1  # one file per hour partition (the last holds the midnight window)
    for path in files:
        table = pq.read_table(path, partitioning=None)
        assert decoded(table).equals(decoded(sort_points(table))), path
    # the same hour through HistoryWriter.write_points: same file name, rows and footer
    path = files[30]
    table = pq.read_table(path, partitioning=None)
    copy = Path(HistoryWriter(str(tmp_path)).write_points(table.replace_schema_metadata(None))[0])
    assert copy.name == Path(path).name and copy.parent.name == Path(path).parent.name
    again = pq.read_table(copy, partitioning=None)
    assert decoded(again).equals(decoded(table)) and again.schema.metadata == table.schema.metadata
    assert pq.ParquetFile(copy).metadata.row_group(0).sorting_columns == (
        pq.ParquetFile(path).metadata.row_group(0).sorting_columns
    )


def test_the_load_looks_like_a_cluster(store: Store, points: pl.DataFrame) -> None:
    cluster = points.filter(pl.col("type") == "cluster", pl.col("metric") == "cpu/usage_rate")
    hour = pl.col("timestamp").dt.hour()
    afternoon = cluster.filter(hour.is_between(13, 16))["value"].mean()
    night = cluster.filter(hour.is_between(1, 4))["value"].mean()
    assert isinstance(afternoon, float) and isinstance(night, float) and afternoon > 1.2 * night
    # right-sizing finds both kinds: requests far above and below what the app containers use
    usage = (
        points.filter(pl.col("type") == "pod_container", pl.col("metric") == "cpu/usage_rate")
        .group_by("namespace_name", "pod_name", "container_name")
        .agg(pl.col("value").quantile(0.9).alias("p90"))
    )
    requests = store.snapshots("containers").collect().unique(["namespace", "pod_name", "name"])
    ratio = usage.join(
        requests, left_on=["namespace_name", "pod_name", "container_name"], right_on=["namespace", "pod_name", "name"]
    ).select((pl.col("cpu_request") / pl.col("p90")).alias("ratio"))["ratio"]
    assert (ratio > 2).any() and (ratio < 0.9).any()
    assert requests["memory_limit"].is_not_null().any() and requests["memory_limit"].is_null().any()


def test_same_seed_same_store(tmp_path: Path) -> None:
    def write(name: str, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        backfill(str(tmp_path / name), nodes=2, pods_per_node=5, duration=timedelta(hours=6), resolution=RES,
                 end=END, seed=seed)  # fmt: skip
        store = Store.open(tmp_path / name)
        order = ["timestamp", "metric", "type", *LABELS]
        return store.points().collect().sort(order, nulls_last=True), store.snapshots("containers").collect()

    first, again, other = write("a", 3), write("b", 3), write("c", 4)
    assert first[0].equals(again[0]) and first[1].equals(again[1])
    assert not first[0].equals(other[0])


def test_an_unaligned_end_and_resolution(tmp_path: Path) -> None:
    end = datetime(2024, 6, 3, 12, 34, 56, 789000, tzinfo=UTC)
    report = backfill(
        str(tmp_path), nodes=1, pods_per_node=4, duration=timedelta(hours=3), resolution=timedelta(minutes=7), end=end
    )
    stamps = Store.open(tmp_path).points().select(pl.col("timestamp").unique().sort()).collect().to_series().to_list()
    assert stamps == [end - timedelta(minutes=7) * k for k in range(24, -1, -1)]
    assert report.windows == 25 and report.rollup_days == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration": timedelta(minutes=5)}, "--backfill"),
        ({"resolution": timedelta(milliseconds=500)}, "--resolution"),
        ({"nodes": 0}, "--nodes"),
        ({"pods_per_node": 501}, "--pods-per-node"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"duration": timedelta(hours=1), "resolution": RES, "end": END} | kwargs
    with pytest.raises(ConfigError, match=message):
        backfill(str(tmp_path), **arguments)  # type: ignore[arg-type]


def test_cli_writes_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = default_end()
    out = tmp_path / "history"
    assert main(["simulate", "--backfill", "2d", "--out", str(out), "--nodes", "3", "--resolution", "5m"]) == 0
    assert "points/s" in capsys.readouterr().out
    store = Store.open(out)
    stamps = store.points(types=["cluster"], metrics=["cpu/usage_rate"]).select("timestamp").collect().to_series()
    assert stamps.len() == 576 and stamps.max() in (before, default_end())
    assert store.dimension("pods").height == 3 * 30
    # a store that already holds points is not written again
    assert main(["simulate", "--backfill", "1h", "--out", str(out), "--end", "2024-06-01T00:00:00Z"]) == 2
    assert "already holds points" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backfill", "0d", "--out", "{out}"], "--backfill"),
        (["--backfill", "2d"], "--out"),
        (["--backfill", "2d", "--out", "{out}", "--resolution", "7x"], "--resolution"),
        (["--backfill", "2d", "--out", "{out}", "--end", "yesterday"], "--end"),
        (["--backfill", "1h", "--out", "{out}", "--resolution", "2h"], "--backfill"),
        (["--backfill", "1h", "--out", "{out}", "--nodes", "0"], "--nodes"),
        (["--out", "{out}"], "--out is only used with --backfill"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_flag(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *(a.replace("{out}", str(tmp_path / "s")) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "s" / "points").exists() or not any((tmp_path / "s" / "points").iterdir())
