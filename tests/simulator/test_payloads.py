"""The simulated Summary documents: real shapes, deterministic, counters that obey the stated rule."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.json as pj
import pytest

from heapster_columnar.simulator.payloads import (
    DEFAULT_SHAPE,
    SYSTEM_CONTAINERS,
    NodeShape,
    cluster_documents,
    summary_bytes,
    summary_document,
)
from heapster_columnar.sources.summary import decode_summaries
from heapster_columnar.sources.summary_wire import SUMMARY

AT = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
FULL = NodeShape(
    pods_per_node=7,
    containers_per_pod=(2, 4),
    volumes_per_pod=(3, 5),
    interfaces_per_node=6,
    interfaces_per_pod=3,
    system_containers=SYSTEM_CONTAINERS,
    seed=42,
)
SHAPES = [DEFAULT_SHAPE, FULL]
NODE_KEYS = {"nodeName", "systemContainers", "startTime", "cpu", "memory", "network", "fs", "runtime", "rlimit", "swap"}
POD_KEYS = {"podRef", "startTime", "containers", "cpu", "memory", "network", "volume", "ephemeral-storage"}
POD_KEYS |= {"process_stats", "swap"}
CONTAINER_KEYS = {"name", "startTime", "cpu", "memory", "rootfs", "logs", "swap"}
MEMORY_KEYS = {"time", "usageBytes", "workingSetBytes", "rssBytes", "pageFaults", "majorPageFaults"}
FS_KEYS = {"time", "availableBytes", "capacityBytes", "usedBytes", "inodesFree", "inodes", "inodesUsed"}
IFACE_KEYS = ["rxBytes", "rxErrors", "txBytes", "txErrors"]


def seconds(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from leaves(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from leaves(value, f"{path}[{i}]")
    else:
        yield path, obj


def entities(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Everything with startTime, cpu and memory: node, system containers, pods, containers."""
    yield doc["node"]
    yield from doc["node"]["systemContainers"]
    for pod in doc["pods"]:
        yield pod
        yield from pod["containers"]


def networks(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield doc["node"]["startTime"], doc["node"]["network"]
    for pod in doc["pods"]:
        yield pod["startTime"], pod["network"]


def total(items: list[dict[str, Any]], block: str, key: str) -> int:
    return sum(item[block][key] for item in items)


# --- shape -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_document_has_the_configured_shape(shape: NodeShape) -> None:
    doc = summary_document(3, at=AT, shape=shape)
    node = doc["node"]
    assert set(node) == NODE_KEYS
    assert node["nodeName"] == "node-00003"
    assert [c["name"] for c in node["systemContainers"]] == list(shape.system_containers)
    assert node["network"]["interfaces"][0]["name"] == node["network"]["name"] == "eth0"
    assert len(node["network"]["interfaces"]) == shape.interfaces_per_node
    assert set(node["runtime"]) == {"imageFs"} and set(node["runtime"]["imageFs"]) == FS_KEYS
    assert set(node["fs"]) == FS_KEYS and set(node["rlimit"]) == {"time", "maxpid", "curproc"}
    assert len(doc["pods"]) == shape.pods_per_node
    for pod in doc["pods"]:
        assert set(pod) == POD_KEYS
        assert set(pod["podRef"]) == {"name", "namespace", "uid"}
        assert uuid.UUID(pod["podRef"]["uid"]).version == 4
        assert shape.containers_per_pod[0] <= len(pod["containers"]) <= shape.containers_per_pod[1]
        assert shape.volumes_per_pod[0] <= len(pod["volume"]) <= shape.volumes_per_pod[1]
        assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", pod["volume"][0]["name"])
        assert all(set(v) >= FS_KEYS for v in pod["volume"])
        assert len({v["name"] for v in pod["volume"]}) == len(pod["volume"])
        assert len(pod["network"]["interfaces"]) == shape.interfaces_per_pod
        assert pod["network"]["name"] == "eth0"
        names = [c["name"] for c in pod["containers"]]
        assert len(set(names)) == len(names)
        for container in pod["containers"]:
            assert set(container) == CONTAINER_KEYS
            assert MEMORY_KEYS <= set(container["memory"]) <= MEMORY_KEYS | {"availableBytes"}
            assert set(container["rootfs"]) == set(container["logs"]) == FS_KEYS
    for path, value in leaves(doc):
        if path.endswith(("time", "Time")):
            assert TIME_RE.match(value), path


def test_names_look_like_a_real_cluster() -> None:
    docs = [summary_document(i, at=AT) for i in range(20)]
    pods = [p["podRef"] for d in docs for p in d["pods"]]
    assert len({(p["namespace"], p["name"]) for p in pods}) == len(pods)  # unique across the cluster
    assert len({p["uid"] for p in pods}) == len(pods)
    namespaces = Counter(p["namespace"] for p in pods)
    assert {"kube-system", "monitoring", "default", "payments"} <= set(namespaces)
    assert sum(p["name"].startswith("kube-proxy-") for p in pods) == 20  # a DaemonSet: one per node
    # Deployment pods share their ReplicaSet hash on every node: <deployment>-<10 chars>-<5 chars>.
    hashes = {p["name"].rsplit("-", 2)[1] for p in pods if p["name"].startswith("checkout-")}
    assert len(hashes) == 1 and len(hashes.pop()) == 10


# --- determinism and the counter rule --------------------------------------------------------------


def test_same_inputs_same_bytes() -> None:
    assert summary_bytes(7, at=AT) == summary_bytes(7, at=AT)
    assert summary_bytes(7, at=AT) == summary_bytes(7, at=AT + timedelta(milliseconds=900))  # whole seconds
    assert summary_bytes(7, at=AT) != summary_bytes(8, at=AT)
    assert summary_bytes(7, at=AT) != summary_bytes(7, at=AT, shape=NodeShape(seed=1))
    assert cluster_documents(3, at=AT, shape=FULL) == [summary_bytes(i, at=AT, shape=FULL) for i in range(3)]
    assert json.loads(summary_bytes(7, at=AT)) == summary_document(7, at=AT)


@pytest.mark.parametrize("shape", SHAPES)
def test_counters_grow_as_rate_times_elapsed(shape: NodeShape) -> None:
    """The module's rule: counter == per-second rate * (block time - startTime); rate is fixed per entity."""
    step = 15
    before = summary_document(5, at=AT, shape=shape)
    after = summary_document(5, at=AT + timedelta(seconds=step), shape=shape)
    checked = 0
    for a, b in zip(entities(before), entities(after), strict=True):
        assert a.get("name", a.get("nodeName")) == b.get("name", b.get("nodeName"))
        assert a["startTime"] == b["startTime"]
        elapsed = seconds(a["cpu"]["time"]) - seconds(a["startTime"])
        assert seconds(b["cpu"]["time"]) - seconds(a["cpu"]["time"]) == step
        assert seconds(a["memory"]["time"]) == seconds(a["cpu"]["time"])
        rate = a["cpu"]["usageNanoCores"]
        assert rate > 0 and b["cpu"]["usageNanoCores"] == rate
        assert a["cpu"]["usageCoreNanoSeconds"] == rate * elapsed
        assert b["cpu"]["usageCoreNanoSeconds"] - a["cpu"]["usageCoreNanoSeconds"] == rate * step
        for key in ("pageFaults", "majorPageFaults"):
            per_second, rest = divmod(a["memory"][key], elapsed)
            assert rest == 0, key
            assert b["memory"][key] - a["memory"][key] == per_second * step, key
        checked += 1
    for (start, a), (_, b) in zip(networks(before), networks(after), strict=True):
        elapsed = seconds(a["time"]) - seconds(start)
        assert seconds(b["time"]) - seconds(a["time"]) == step
        for ia, ib in zip(a["interfaces"], b["interfaces"], strict=True):
            assert ia["name"] == ib["name"]
            for key in IFACE_KEYS:
                per_second, rest = divmod(ia[key], elapsed)
                assert rest == 0
                assert ib[key] - ia[key] == per_second * step
        assert {k: a[k] for k in IFACE_KEYS} == {k: a["interfaces"][0][k] for k in IFACE_KEYS}
    assert checked == 1 + len(shape.system_containers) + len(before["pods"]) + sum(
        len(p["containers"]) for p in before["pods"]
    )
    assert [p["podRef"] for p in before["pods"]] == [p["podRef"] for p in after["pods"]]


def test_traffic_and_faults_are_not_all_zero() -> None:
    docs = [summary_document(i, at=AT) for i in range(10)]
    pods = [p for d in docs for p in d["pods"]]
    assert all(p["network"]["rxBytes"] > 0 and p["network"]["txBytes"] > 0 for p in pods)
    assert any(p["network"]["rxErrors"] > 0 for p in pods)
    assert any(p["memory"]["majorPageFaults"] > 0 for p in pods)
    assert any("availableBytes" in c["memory"] for p in pods for c in p["containers"])  # memory limits
    assert any("availableBytes" not in c["memory"] for p in pods for c in p["containers"])


# --- consistency -----------------------------------------------------------------------------------


def check_memory(memory: dict[str, Any]) -> None:
    assert memory["rssBytes"] <= memory["workingSetBytes"] <= memory["usageBytes"]
    assert memory.get("availableBytes", 1) > 0


def check_fs(fs: dict[str, Any]) -> None:
    assert fs["usedBytes"] + fs["availableBytes"] <= fs["capacityBytes"]
    assert fs["inodesUsed"] + fs["inodesFree"] <= fs["inodes"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("node", [0, 1, 917])
def test_values_are_consistent(shape: NodeShape, node: int) -> None:
    doc = summary_document(node, at=AT, shape=shape)
    for path, value in leaves(doc):
        if isinstance(value, int):
            assert 0 <= value < 2**63, path
    for entity in entities(doc):
        check_memory(entity["memory"])
        assert entity["startTime"] <= entity["cpu"]["time"]  # same format, so text order is time order
    for pod in doc["pods"]:
        cs = pod["containers"]
        assert all(pod["startTime"] <= c["startTime"] for c in cs)
        # pod = sum of containers + a small sandbox overhead
        assert 0 < pod["cpu"]["usageNanoCores"] - total(cs, "cpu", "usageNanoCores") < 1_000_000
        assert pod["cpu"]["usageCoreNanoSeconds"] >= total(cs, "cpu", "usageCoreNanoSeconds")
        for key in ("workingSetBytes", "usageBytes", "rssBytes"):
            assert 0 < pod["memory"][key] - total(cs, "memory", key) <= 2_000_000, key
        for key in ("pageFaults", "majorPageFaults"):
            assert pod["memory"][key] >= total(cs, "memory", key)
        for block in [*(c[b] for c in cs for b in ("rootfs", "logs")), *pod["volume"], pod["ephemeral-storage"]]:
            check_fs(block)
        on_nodefs = [v for v in pod["volume"] if v["name"] in ("config", "tmp-dir", "cache")]
        eph = pod["ephemeral-storage"]
        assert eph["usedBytes"] == sum(c["rootfs"]["usedBytes"] + c["logs"]["usedBytes"] for c in cs) + sum(
            v["usedBytes"] for v in on_nodefs
        )
        assert {v["capacityBytes"] for v in on_nodefs} <= {doc["node"]["fs"]["capacityBytes"]}
        assert all(v["pvcRef"]["name"] == f"data-{pod['podRef']['name']}" for v in pod["volume"] if "pvcRef" in v)
    node, pods = doc["node"], doc["pods"]
    check_memory(node["memory"])
    check_fs(node["fs"])
    check_fs(node["runtime"]["imageFs"])
    assert node["fs"]["usedBytes"] > node["runtime"]["imageFs"]["usedBytes"] + sum(
        p["ephemeral-storage"]["usedBytes"] for p in pods
    )
    assert node["rlimit"]["curproc"] > sum(p["process_stats"]["process_count"] for p in pods)
    # node >= kubepods ("pods" system container) >= sum of pods, for rates, counters and gauges
    kubepods = {c["name"]: c for c in node["systemContainers"]}.get("pods")
    parents = [node] if kubepods is None else [node, kubepods]
    for parent in parents:
        for block, key in [("cpu", "usageNanoCores"), ("cpu", "usageCoreNanoSeconds")] + [
            ("memory", k) for k in ("usageBytes", "workingSetBytes", "rssBytes", "pageFaults", "majorPageFaults")
        ]:
            assert parent[block][key] >= total(pods, block, key), (parent.get("name"), key)
    assert node["cpu"]["usageNanoCores"] >= sum(c["cpu"]["usageNanoCores"] for c in node["systemContainers"])
    assert node["cpu"]["usageNanoCores"] < shape.node_cores * 1_000_000_000
    assert node["memory"]["availableBytes"] == shape.node_memory_bytes - node["memory"]["workingSetBytes"]
    for key in IFACE_KEYS:
        assert node["network"][key] >= total(pods, "network", key), key


def test_far_future_stays_below_int64() -> None:
    shape = NodeShape(node_cores=64, pods_per_node=110, interfaces_per_pod=3, system_containers=SYSTEM_CONTAINERS)
    at = shape.epoch + timedelta(days=5 * 365)
    biggest = max(v for _, v in leaves(summary_document(1, at=at, shape=shape)) if isinstance(v, int))
    assert biggest < 2**63


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="containers_per_pod"):
        NodeShape(containers_per_pod=(0, 2))
    with pytest.raises(ValueError, match="system_containers"):
        NodeShape(system_containers=("docker",))
    with pytest.raises(ValueError, match="epoch"):
        summary_document(0, at=DEFAULT_SHAPE.epoch - timedelta(seconds=1))
    with pytest.raises(ValueError, match="node_index"):
        summary_document(-1, at=AT)


# --- size and the project's own reader ------------------------------------------------------------


def test_default_node_is_about_80_kb() -> None:
    sizes = [len(summary_bytes(i, at=AT)) for i in range(5)]
    assert all(70_000 <= size <= 90_000 for size in sizes), sizes
    assert b"\n" not in summary_bytes(0, at=AT) and b": " not in summary_bytes(0, at=AT)  # compact


def test_pyarrow_reads_it_with_the_wire_schema() -> None:
    doc = summary_bytes(2, at=AT)
    parsed = json.loads(doc)
    options = pj.ParseOptions(explicit_schema=SUMMARY, unexpected_field_behavior="ignore")
    table = pj.read_json(pa.BufferReader(doc), parse_options=options)
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["node"]["nodeName"] == "node-00002"
    assert row["node"]["cpu"]["time"] == datetime.strptime(parsed["node"]["cpu"]["time"], "%Y-%m-%dT%H:%M:%S%z")
    assert len(row["pods"]) == len(parsed["pods"]) == 30
    for got, want in zip(row["pods"], parsed["pods"], strict=True):
        assert got["podRef"] == want["podRef"]
        assert [c["name"] for c in got["containers"]] == [c["name"] for c in want["containers"]]
        assert (
            got["containers"][0]["cpu"]["usageCoreNanoSeconds"] == want["containers"][0]["cpu"]["usageCoreNanoSeconds"]
        )
        assert [v["name"] for v in got["volume"]] == [v["name"] for v in want["volume"]]


@pytest.mark.parametrize("shape", SHAPES)
def test_decode_summaries_decodes_every_entity(shape: NodeShape) -> None:
    docs = cluster_documents(3, at=AT, shape=shape)
    parsed = [json.loads(d) for d in docs]
    result = decode_summaries(docs, now=AT + timedelta(seconds=30))
    assert result.errors == ()
    assert result.documents == 3
    assert result.unknown_values == 0
    containers = sum(len(p["containers"]) for d in parsed for p in d["pods"])
    volumes = sum(len(p["volume"]) for d in parsed for p in d["pods"])
    types = Counter(result.batch.entities.column("type").to_pylist())
    assert types == {
        "node": 3,
        "sys_container": 3 * len(shape.system_containers),
        "pod": 3 * shape.pods_per_node,
        "pod_container": containers,
    }
    # filesystem rows: node "/", container "/" and "logs", one per volume; five metrics each
    assert result.batch.labeled.num_rows == 5 * (3 + 2 * containers + volumes)
    pods = result.batch.entities.filter(pa.compute.equal(result.batch.entities.column("type"), "pod"))
    assert pods.column("cpu/usage").to_pylist() == [p["cpu"]["usageCoreNanoSeconds"] for d in parsed for p in d["pods"]]
    assert pods.column("pod_id").to_pylist() == [p["podRef"]["uid"] for d in parsed for p in d["pods"]]


def test_progress_bar_does_not_change_the_documents(capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster_documents(2, at=AT, progress=True) == cluster_documents(2, at=AT)
    assert capsys.readouterr().out == ""  # the bar, if any, goes to stderr


def test_stdlib_json_fallback_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from heapster_columnar.simulator import payloads

    expected = summary_bytes(4, at=AT, shape=FULL)
    monkeypatch.setattr(payloads, "orjson", None)
    assert summary_bytes(4, at=AT, shape=FULL) == expected
