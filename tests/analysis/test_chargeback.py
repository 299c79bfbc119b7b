"""Chargeback against costs worked out by hand with OpenCost's rules.

One node (4 cores, 16 GB allocatable) for one day of 1-minute samples (24 h), and containers with
known requests and constant usage: cost = max(request, usage) * 24 h * price per resource;
idle = the node's cost - the allocations on it. Memory in GB of 10^9 bytes.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from stores import T0, Container, container_series, node, pod, series, write_store

from heapster_columnar.analysis import chargeback
from heapster_columnar.analysis.chargeback import Prices
from heapster_columnar.analysis.store import Store
from heapster_columnar.errors import ConfigError

MINUTE = timedelta(minutes=1)
DAY = 1440
HOURS = 24.0
GB = 1e9
PRICES = Prices(cpu_core_hour=0.04, memory_gb_hour=0.005)
NODE_CORES, NODE_GB = 4.0, 16.0


def cluster(root: Path) -> Store:
    """shop/web: requests 1 core and 2 GB, uses 500 m and 1 GB (team=a).
    batch/job: requests 250 m and 0.5 GB, uses 1,000 m and 1 GB, above its requests (team=b).
    shop/free: no requests, uses 100 m and 0.2 GB (no team label)."""
    node_points = [
        series(T0, MINUTE, 2000.0, count=DAY, metric="cpu/usage_rate", type="node", nodename="n1"),
        series(T0, MINUTE, 5 * GB, count=DAY, metric="memory/working_set", type="node", nodename="n1"),
    ]
    usage = {("shop", "web"): (500.0, 1 * GB), ("batch", "job"): (1000.0, 1 * GB), ("shop", "free"): (100.0, 0.2 * GB)}
    points = [
        container_series(T0, MINUTE, namespace=ns, pod=name, container="main", node="n1", cpu=c, memory=m, count=DAY)
        for (ns, name), (c, m) in usage.items()
    ]
    web_owner = ("ReplicaSet", "web-5d8f9c7b6")
    pods = [
        pod("shop", "web", "n1", [Container("main", "1", "2G")], labels={"team": "a"}, owner=web_owner),
        pod("batch", "job", "n1", [Container("main", "250m", "500M")], labels={"team": "b"}),
        pod("shop", "free", "n1", [Container("main")]),
    ]
    return Store.open(write_store(root, [*node_points, *points], pods=pods, nodes=[node("n1", cpu="4", memory="16G")]))


# allocated resource-hours, by hand: max(request, usage) * 24 h
WEB_CPU, WEB_RAM = max(1.0, 0.5) * HOURS, max(2.0, 1.0) * HOURS
JOB_CPU, JOB_RAM = max(0.25, 1.0) * HOURS, max(0.5, 1.0) * HOURS
FREE_CPU, FREE_RAM = max(0.0, 0.1) * HOURS, max(0.0, 0.2) * HOURS


def cost(cpu_core_hours: float, ram_gb_hours: float) -> float:
    return cpu_core_hours * PRICES.cpu_core_hour + ram_gb_hours * PRICES.memory_gb_hour


def by_key(frame: pl.DataFrame, column: str) -> dict[str, dict[str, float]]:
    return {row[column]: row for row in frame.iter_rows(named=True)}


def test_namespace_costs_requests_usage_and_idle(tmp_path: Path) -> None:
    store = cluster(tmp_path)
    got = by_key(chargeback.allocation(store, "30d", by="namespace", prices=PRICES), "namespace")
    assert set(got) == {"shop", "batch", "__idle__"}

    shop = got["shop"]
    assert shop["cpu_request_core_hours"] == pytest.approx(1.0 * HOURS)
    assert shop["cpu_usage_core_hours"] == pytest.approx((0.5 + 0.1) * HOURS)
    assert shop["cpu_core_hours"] == pytest.approx(WEB_CPU + FREE_CPU)
    assert shop["ram_gb_hours"] == pytest.approx(WEB_RAM + FREE_RAM)
    assert shop["cpu_cost"] == pytest.approx((WEB_CPU + FREE_CPU) * 0.04)
    assert shop["ram_cost"] == pytest.approx((WEB_RAM + FREE_RAM) * 0.005)
    assert shop["total_cost"] == pytest.approx(cost(WEB_CPU + FREE_CPU, WEB_RAM + FREE_RAM))

    # usage above the request is what is billed
    batch = got["batch"]
    assert batch["cpu_core_hours"] == pytest.approx(1.0 * HOURS)
    assert batch["ram_gb_hours"] == pytest.approx(1.0 * HOURS)
    assert batch["total_cost"] == pytest.approx(cost(JOB_CPU, JOB_RAM))

    # idle = node (4 cores, 16 GB for 24 h) - everything allocated on it
    idle = got["__idle__"]
    idle_cpu = NODE_CORES * HOURS - (WEB_CPU + JOB_CPU + FREE_CPU)
    idle_ram = NODE_GB * HOURS - (WEB_RAM + JOB_RAM + FREE_RAM)
    assert idle["cpu_core_hours"] == pytest.approx(idle_cpu)
    assert idle["ram_gb_hours"] == pytest.approx(idle_ram)
    assert idle["total_cost"] == pytest.approx(cost(idle_cpu, idle_ram))
    node_cost = cost(NODE_CORES * HOURS, NODE_GB * HOURS)
    assert sum(r["total_cost"] for r in got.values()) == pytest.approx(node_cost)
    assert idle["cpu_efficiency"] is None


def test_efficiency_is_usage_over_request_cost_weighted(tmp_path: Path) -> None:
    got = by_key(chargeback.allocation(cluster(tmp_path), "30d", by="pod", prices=PRICES), "pod")
    web = got["web"]
    assert web["cpu_efficiency"] == pytest.approx(0.5 / 1.0)
    assert web["ram_efficiency"] == pytest.approx(1.0 / 2.0)
    assert web["total_efficiency"] == pytest.approx(0.5)
    job = got["job"]
    cpu_cost, ram_cost = JOB_CPU * 0.04, JOB_RAM * 0.005
    assert job["cpu_efficiency"] == pytest.approx(1.0 / 0.25)
    assert job["ram_efficiency"] == pytest.approx(1.0 / 0.5)
    assert job["total_efficiency"] == pytest.approx((4.0 * cpu_cost + 2.0 * ram_cost) / (cpu_cost + ram_cost))
    # no request but usage and cost: 100 % (allocation.go)
    assert (got["free"]["cpu_efficiency"], got["free"]["ram_efficiency"]) == (1.0, 1.0)


def test_shared_idle_goes_to_the_node_s_allocations_by_cost(tmp_path: Path) -> None:
    store = cluster(tmp_path)
    alone = chargeback.allocation(store, "30d", by="namespace", prices=PRICES)
    shared = by_key(chargeback.allocation(store, "30d", by="namespace", prices=PRICES, share_idle=True), "namespace")
    assert "__idle__" not in shared
    idle_cpu = (NODE_CORES * HOURS - (WEB_CPU + JOB_CPU + FREE_CPU)) * 0.04
    idle_ram = (NODE_GB * HOURS - (WEB_RAM + JOB_RAM + FREE_RAM)) * 0.005
    cpu_part = (WEB_CPU + FREE_CPU) / (WEB_CPU + JOB_CPU + FREE_CPU)
    ram_part = (WEB_RAM + FREE_RAM) / (WEB_RAM + JOB_RAM + FREE_RAM)
    shop = shared["shop"]
    assert shop["shared_idle_cost"] == pytest.approx(idle_cpu * cpu_part + idle_ram * ram_part)
    assert shop["total_cost"] == pytest.approx(cost(WEB_CPU + FREE_CPU, WEB_RAM + FREE_RAM) + shop["shared_idle_cost"])
    assert shared["batch"]["shared_idle_cost"] == pytest.approx(idle_cpu * (1 - cpu_part) + idle_ram * (1 - ram_part))
    # nothing lost: everything still adds up to the node's cost
    assert sum(r["total_cost"] for r in shared.values()) == pytest.approx(alone["total_cost"].sum())
    # efficiency is about what was asked for, not the idle shared in
    unshared = alone.filter(pl.col("namespace") == "shop")["total_efficiency"].item()
    assert shop["total_efficiency"] == pytest.approx(unshared)


def test_label_workload_and_node_grouping(tmp_path: Path) -> None:
    store = cluster(tmp_path)
    teams = by_key(chargeback.allocation(store, "30d", by="label:team", prices=PRICES), "label:team")
    assert set(teams) == {"a", "b", "__unallocated__", "__idle__"}
    assert teams["a"]["total_cost"] == pytest.approx(cost(WEB_CPU, WEB_RAM))
    assert teams["b"]["total_cost"] == pytest.approx(cost(JOB_CPU, JOB_RAM))
    assert teams["__unallocated__"]["total_cost"] == pytest.approx(cost(FREE_CPU, FREE_RAM))

    workloads = chargeback.allocation(store, "30d", by="workload", prices=PRICES)
    web = workloads.filter(pl.col("workload_name") == "web").row(0, named=True)
    assert (web["namespace"], web["workload_kind"]) == ("shop", "Deployment")
    assert web["total_cost"] == pytest.approx(cost(WEB_CPU, WEB_RAM))

    nodes = by_key(chargeback.allocation(store, "30d", by="node", prices=PRICES), "node")
    assert nodes["n1"]["total_cost"] == pytest.approx(cost(WEB_CPU + JOB_CPU + FREE_CPU, WEB_RAM + JOB_RAM + FREE_RAM))

    per_node = chargeback.idle(store, "30d", prices=PRICES).row(0, named=True)
    assert per_node["node"] == "n1"
    assert per_node["hours"] == pytest.approx(HOURS)
    assert per_node["cpu_node_cost"] == pytest.approx(NODE_CORES * HOURS * 0.04)
    assert per_node["ram_node_cost"] == pytest.approx(NODE_GB * HOURS * 0.005)
    assert per_node["idle_cost"] == pytest.approx(nodes["__idle__"]["total_cost"])
    assert per_node["idle_fraction"] == pytest.approx(per_node["idle_cost"] / cost(NODE_CORES * HOURS, NODE_GB * HOURS))


def test_default_prices_and_errors(tmp_path: Path) -> None:
    assert (Prices().cpu_core_hour, Prices().memory_gb_hour) == (0.031611, 0.004237)
    store = cluster(tmp_path)
    batch = chargeback.allocation(store, "30d").filter(pl.col("namespace") == "batch").row(0, named=True)
    assert batch["total_cost"] == pytest.approx(JOB_CPU * 0.031611 + JOB_RAM * 0.004237)
    with pytest.raises(ConfigError, match="dimension"):
        chargeback.allocation(store, by="team")
    with pytest.raises(ConfigError, match="label key"):
        chargeback.allocation(store, by="label:")
    with pytest.raises(ConfigError, match="negative"):
        Prices(cpu_core_hour=-1.0)
    empty = chargeback.allocation_frames(pl.DataFrame(), pl.DataFrame(), by="workload")
    assert empty.height == 0
    assert empty.columns[:3] == ["namespace", "workload_kind", "workload_name"]


def test_a_pod_whose_label_changed_is_charged_per_day_to_the_value_it_had() -> None:
    """Rollups carry each day's pod labels: day 1 team a, day 2 team b; 1 core requested all day
    (24 core-hours a day at 0.04 = 0.96), nothing used, on a node of exactly that size."""
    days = [date(2024, 6, 1), date(2024, 6, 2)]
    containers = pl.DataFrame(
        {
            "day": days,
            "namespace_name": ["shop"] * 2,
            "pod_name": ["web-1"] * 2,
            "container_name": ["main"] * 2,
            "nodename": ["n1"] * 2,
            "workload_kind": [None, None],
            "workload_name": [None, None],
            "samples": [0, 0],
            "seconds": [86_400.0] * 2,
            "cpu_sum": [0.0, 0.0],
            "memory_samples": [0, 0],
            "memory_sum": [0.0, 0.0],
            "cpu_request": [1000, 1000],
            "memory_request": [0, 0],
            "labels": [[{"key": "team", "value": "a"}], [{"key": "team", "value": "b"}]],  # a map as Parquet gives it
        }
    )
    nodes = pl.DataFrame(
        {
            "day": days,
            "nodename": ["n1"] * 2,
            "seconds": [86_400.0] * 2,
            "allocatable_cpu": [1000] * 2,
            "allocatable_memory": [0] * 2,
        }
    )
    teams = chargeback.allocation_frames(containers, nodes, by="label:team", prices=PRICES)
    cost = dict(zip(teams["label:team"], teams["cpu_cost"], strict=True))
    assert cost["a"] == pytest.approx(0.96) and cost["b"] == pytest.approx(0.96)
