"""Node efficiency against nodes at known utilization."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from stores import GI, MI, T0, Container, container_series, node, pod, series, write_store

from heapster_columnar.analysis.nodes import RATIO_COLUMNS, bands, distribution, efficiency
from heapster_columnar.analysis.store import Store
from heapster_columnar.errors import ConfigError, StoreError

MINUTE = timedelta(minutes=1)
DAY = 1440


def node_series(name: str, cpu: float | np.ndarray, memory: float, days: int = 2) -> list[pl.DataFrame]:
    count = days * DAY
    return [
        series(T0, MINUTE, cpu, count=count, metric="cpu/usage_rate", type="node", nodename=name),
        series(T0, MINUTE, memory, count=count, metric="memory/working_set", type="node", nodename=name),
    ]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Two days at 60 s, nodes of 4 cores and 16 Gi:

    - busy: 1,000 m on day 1 and 2,000 m on day 2 (25 % then 50 %), 4 Gi (25 %); one pod
      requesting 500 m and 2 Gi for both days (12.5 % of each);
    - quiet: 200 m (5 %) and 1 Gi (6.25 %): idle;
    - unknown: usage but no Node object (allocatable unknown).
    """
    busy_cpu = np.concatenate([np.full(DAY, 1000.0), np.full(DAY, 2000.0)])
    points = [
        *node_series("busy", busy_cpu, 4.0 * GI),
        *node_series("quiet", 200.0, 1.0 * GI),
        *node_series("unknown", 100.0, 1.0 * GI),
        container_series(
            T0, MINUTE, namespace="a", pod="p", container="c", node="busy", cpu=500.0, memory=GI, count=2 * DAY
        ),
    ]
    return Store.open(
        write_store(
            tmp_path_factory.mktemp("nodes"),
            points,
            pods=[pod("a", "p", "busy", [Container("c", "500m", "2Gi")])],
            nodes=[node("busy", cpu="4", memory="16Gi"), node("quiet", cpu="4", memory="16Gi")],
        )
    )


def test_a_node_at_a_known_utilization(store: Store) -> None:
    """busy: (1,000 m + 2,000 m) / 2 = 1,500 m of 4,000 m = 37.5 % on average; the p95 is the
    highest daily p95, 2,000 m = 50 %; 500 m requested = 12.5 %."""
    frame = efficiency(store, "2d")
    busy = frame.filter(pl.col("node") == "busy").row(0, named=True)
    assert (busy["days"], busy["allocatable_cpu"], busy["allocatable_memory"]) == (2, 4000, 16 * GI)
    assert (busy["cpu_usage"], busy["cpu_p95"], busy["cpu_requested"]) == (1500.0, 2000.0, 500.0)
    assert (busy["cpu_utilization"], busy["cpu_utilization_p95"]) == (0.375, 0.5)
    assert busy["cpu_reservation"] == 0.125
    assert (busy["memory_usage"], busy["memory_utilization"], busy["memory_utilization_p95"]) == (4.0 * GI, 0.25, 0.25)
    assert busy["memory_reservation"] == 0.125
    assert busy["idle"] is False


def test_one_day_at_1000m_of_4_cores_is_25_percent(store: Store) -> None:
    frame = efficiency(store, "1d", until=T0 + timedelta(days=1))
    busy = frame.filter(pl.col("node") == "busy").row(0, named=True)
    assert (busy["days"], busy["cpu_usage"], busy["cpu_utilization"], busy["cpu_utilization_p95"]) == (
        1,
        1000.0,
        0.25,
        0.25,
    )


def test_an_idle_node_is_flagged(store: Store) -> None:
    frame = efficiency(store, "2d")
    assert frame["node"].to_list() == ["busy", "quiet", "unknown"]
    quiet = frame.filter(pl.col("node") == "quiet").row(0, named=True)
    assert (quiet["cpu_utilization"], quiet["memory_utilization"]) == (0.05, 0.0625)
    assert quiet["cpu_reservation"] == 0.0  # no pods placed
    assert quiet["idle"] is True
    unknown = frame.filter(pl.col("node") == "unknown").row(0, named=True)
    assert unknown["cpu_usage"] == 100.0
    assert (unknown["cpu_utilization"], unknown["idle"]) == (None, None)  # no allocatable, no verdict


def test_idle_thresholds_are_parameters(store: Store) -> None:
    loose = efficiency(store, "2d", cpu_idle=0.40, memory_idle=0.30)
    assert loose.filter(pl.col("idle"))["node"].to_list() == ["busy", "quiet"]
    strict = efficiency(store, "2d", cpu_idle=0.01)
    assert not strict["idle"].any()
    with pytest.raises(ConfigError, match="cpu_idle is a fraction"):
        efficiency(store, cpu_idle=10)


def test_distribution_counts_nodes_per_band(store: Store) -> None:
    frame = distribution(store, "2d")
    assert frame.columns == ["measure", "lower", "upper", "nodes"]
    assert frame["measure"].unique(maintain_order=True).to_list() == list(RATIO_COLUMNS)
    cpu = frame.filter(pl.col("measure") == "cpu_utilization")
    assert cpu.height == 11  # ten 10 % bands and one for nodes over their allocatable
    assert cpu.filter(pl.col("nodes") > 0).select("lower", "nodes").rows() == [(0.0, 1), (0.3, 1)]
    assert cpu["nodes"].sum() == 2  # the node without allocatable has no ratio
    assert (cpu["lower"][-1], cpu["upper"][-1]) == (1.0, math.inf)
    p95 = frame.filter(pl.col("measure") == "cpu_utilization_p95", pl.col("nodes") > 0)
    assert p95.select("lower", "nodes").rows() == [(0.0, 1), (0.5, 1)]


def test_band_boundaries() -> None:
    """A ratio on a boundary belongs to the band it starts (0.3 is in [0.3, 0.4), whatever
    3 * 0.1 is in binary); 1.0 and above go to the last band."""
    frame = pl.DataFrame({"cpu_utilization": [0.0, 0.1, 0.3, 0.7, 0.99, 1.0, 1.7, None]})
    got = bands(frame, columns=["cpu_utilization"], width=0.1)
    counts = dict(zip(got["lower"].round(6).to_list(), got["nodes"].to_list(), strict=True))
    assert counts == {0.0: 1, 0.1: 1, 0.2: 0, 0.3: 1, 0.4: 0, 0.5: 0, 0.6: 0, 0.7: 1, 0.8: 0, 0.9: 1, 1.0: 2}
    quarters = bands(frame, columns=["cpu_utilization"], width=0.25)
    assert quarters["nodes"].to_list() == [2, 1, 1, 1, 2]
    with pytest.raises(ConfigError, match="band width"):
        bands(frame, width=0)


def test_no_days_no_rows(tmp_path: Path) -> None:
    store = Store.open(
        write_store(
            tmp_path,
            container_series(T0, MINUTE, namespace="a", pod="p", container="c", node="n", cpu=1.0, memory=MI, count=5),
        )
    )
    frame = efficiency(store)
    assert frame.is_empty()
    assert "idle" in frame.columns
    assert distribution(store)["nodes"].sum() == 0


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    store = Store.open(write_store(tmp_path, node_series("n", 1.0, 1.0, days=1)))
    broken = sorted((tmp_path / "points").rglob("*.parquet"))[3]
    broken.write_bytes(broken.read_bytes()[:-50])
    with pytest.raises(StoreError, match=str(broken)):
        efficiency(store)
