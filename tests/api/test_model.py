"""Heapster's model API on real fixture windows: series, listings, aggregations, errors."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from heapster_columnar.api.server import ApiOptions, create_app, serve
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.memory import MemorySink
from heapster_columnar.telemetry import Telemetry

sys.path.insert(0, str(Path(__file__).parents[1] / "sinks"))
from windows import T0, fixture_windows

BASE = "/api/v1/model"
POD = ("kube-system", "coredns-5dd5756b68-xmx7l")


@pytest.fixture(scope="module")
def made(kubelet_data: Path) -> tuple[MemorySink, list[Window]]:
    memory = MemorySink(series_retention=timedelta(days=3650))
    windows = fixture_windows(kubelet_data, 3)
    for window in windows:
        memory.write(window)
    return memory, windows


def get_all(memory: MemorySink, paths: list[str]) -> list[httpx.Response]:
    async def scenario() -> list[httpx.Response]:
        options = ApiOptions(listen_ip="127.0.0.1", port=0)
        runner, port = await serve(create_app(memory, Telemetry(), options), options)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                return [await client.get(path) for path in paths]
        finally:
            await runner.cleanup()

    return asyncio.run(scenario())


def entity(window: Window, **key: str) -> dict[str, Any]:
    frame = pl.from_arrow(window.batch.entities)
    assert isinstance(frame, pl.DataFrame)
    mask = pl.lit(True)
    for name, value in key.items():
        mask &= pl.col(name) == value
    rows = frame.filter(mask)
    assert rows.height == 1, key
    return rows.row(0, named=True)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_series_equal_the_windows(made: Any) -> None:
    memory, windows = made
    ns, pod = POD
    pod_path = f"{BASE}/namespaces/{ns}/pods/{pod}"
    responses = get_all(
        memory,
        [
            f"{pod_path}/metrics/memory/usage",
            f"{pod_path}/metrics/cpu/usage_rate",
            f"{pod_path}/metrics/cpu-usage",  # Heapster's alias
            f"{pod_path}/metrics/memory/usage?start={stamp(windows[1].end)}",
            f"{BASE}/metrics/cpu/request",
            f"{BASE}/nodes/datagen-1-28/metrics/filesystem/usage?labels=resource_id:/",
        ],
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    memory_usage, rate, alias, since, cluster, filesystem = (r.json() for r in responses)
    want = [
        {"timestamp": stamp(w.end), "value": entity(w, type="pod", namespace_name=ns, pod_name=pod)["memory/usage"]}
        for w in windows
    ]
    assert memory_usage == {"metrics": want, "latestTimestamp": stamp(windows[-1].end)}
    rates = [entity(w, type="pod", namespace_name=ns, pod_name=pod)["cpu/usage_rate"] for w in windows[1:]]
    assert [p["value"] for p in rate["metrics"]] == rates and alias == rate  # no rate in the first window
    assert since["metrics"] == want[1:]
    assert cluster["metrics"][-1]["value"] == entity(windows[-1], type="cluster")["cpu/request"]
    assert [p["timestamp"] for p in filesystem["metrics"]] == [stamp(w.end) for w in windows]
    assert all(isinstance(p["value"], int) and p["value"] > 0 for p in filesystem["metrics"])


def test_listings_and_metric_names(made: Any) -> None:
    memory, _ = made
    ns, pod = POD
    responses = get_all(
        memory,
        [
            f"{BASE}/nodes/",
            f"{BASE}/namespaces/",
            f"{BASE}/namespaces/{ns}/pods/",
            f"{BASE}/namespaces/{ns}/pods/{pod}/containers",
            f"{BASE}/namespaces/{ns}/pods/{pod}/metrics",
            f"{BASE}/nodes/datagen-1-28/freecontainers/",
        ],
    )
    nodes, namespaces, pods, containers, names, free = (r.json() for r in responses)
    assert nodes == ["datagen-1-28"]
    assert "kube-system" in namespaces and namespaces == sorted(namespaces)
    assert pod in pods and all(isinstance(p, str) for p in pods)
    assert containers == ["coredns"]
    assert {"cpu/usage_rate", "memory/usage", "cpu/request", "memory/limit"} <= set(names)
    assert "kubelet" in free and "runtime" not in free  # Heapster's names: runtime -> docker-daemon


def test_aggregations_over_buckets(made: Any) -> None:
    memory, windows = made
    ns, pod = POD
    values = [entity(w, type="pod", namespace_name=ns, pod_name=pod)["memory/usage"] for w in windows]
    path = f"{BASE}/namespaces/{ns}/pods/{pod}/metrics-aggregated/count,max,min,average,95-perc/memory/usage"
    start = stamp(T0)
    one, two = get_all(
        memory, [f"{path}?start={start}&end={stamp(windows[-1].end)}", f"{path}?start={start}&bucket=30s"]
    )
    assert one.status_code == 200, one.text
    bucket = one.json()["buckets"][0]
    assert bucket["count"] == 3 and bucket["maximum"] == {"intValue": max(values)}
    assert bucket["minimum"] == {"intValue": min(values)}
    assert bucket["average"] == {"floatValue": sum(values) / 3}
    assert bucket["percentiles"] == {"95": {"intValue": max(values)}}
    assert one.json()["bucketSize"] == 30 * 10**9  # one bucket over the 30 s range
    buckets = two.json()["buckets"]
    assert [b["count"] for b in buckets] == [2, 1] and two.json()["bucketSize"] == 30 * 10**9


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        (f"{BASE}/metrics/cpu/usage_ratez", 400, "unknown metric"),
        (f"{BASE}/metrics/cpu/usage_rate?start=yesterday", 400, "RFC 3339"),
        (f"{BASE}/metrics/cpu/usage_rate?start=2024-01-02T00:00:00Z&end=2024-01-01T00:00:00Z", 400, "before start"),
        (f"{BASE}/namespaces/kube-system/pods/nope/metrics/cpu/usage_rate", 404, "kube-system/nope"),
        (f"{BASE}/metrics-aggregated/max/cpu/usage_rate", 400, "start is required"),
        (f"{BASE}/metrics-aggregated/maxx/cpu/usage_rate?start=2024-01-01T00:00:00Z", 400, "unknown aggregation"),
        (f"{BASE}/metrics-aggregated/max/cpu/usage_rate?start=2024-01-01T00:00:00Z&bucket=5y", 400, "bucket"),
        (f"{BASE}/nodes/datagen-1-28/metrics/filesystem/usage?labels=resource", 400, "key:value"),
    ],
)
def test_bad_requests_say_what_was_wrong(made: Any, path: str, code: int, message: str) -> None:
    memory, _ = made
    (response,) = get_all(memory, [path])
    assert response.status_code == code and message in response.json()["message"], response.text


def test_pod_list_keeps_the_order(made: Any) -> None:
    memory, windows = made
    ns = "kube-system"
    pods = ["kube-proxy-2c7rb", POD[1]]
    (response,) = get_all(memory, [f"{BASE}/namespaces/{ns}/pod-list/{','.join(pods)}/metrics/memory/usage"])
    items = response.json()["items"]
    assert [i["metrics"][-1]["value"] for i in items] == [
        entity(windows[-1], type="pod", namespace_name=ns, pod_name=p)["memory/usage"] for p in pods
    ]


def test_empty_store_is_a_clear_404() -> None:
    (response,) = get_all(MemorySink(), [f"{BASE}/nodes/"])
    assert response.status_code == 404 and "no window" in response.json()["message"]
