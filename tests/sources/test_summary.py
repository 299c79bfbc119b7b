"""Decoder against the real captured payloads, with values read off the JSON by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest
from conftest import NOW, canonical, decode_files, metrics_of

from heapster_columnar.model.points import to_points
from heapster_columnar.samples import summary_paths
from heapster_columnar.sources.summary import decode_summaries


def ms_since(stamp: str) -> int:
    return int((NOW - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds() * 1000)


def ts(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


@pytest.mark.parametrize("path", summary_paths(), ids=lambda p: p.name)
def test_every_real_payload_decodes_with_one_row_per_entity(path: Path) -> None:
    doc = json.loads(path.read_bytes())
    result = decode_summaries([path.read_bytes()], now=NOW, sources=[path.name])
    assert result.errors == ()
    types = result.batch.entities.column("type").to_pylist()
    pods = doc.get("pods") or []
    assert types.count("node") == 1
    assert types.count("sys_container") == len(doc["node"].get("systemContainers") or [])
    assert types.count("pod") == len(pods)
    # no real payload repeats a container name within a pod
    assert types.count("pod_container") == sum(len(p.get("containers") or []) for p in pods)
    assert to_points(result.batch, NOW).num_rows == result.batch.num_points > 0


def test_all_real_payloads_decode_in_one_batch() -> None:
    paths = summary_paths()
    together = decode_files(*paths)
    one_by_one = sum(decode_files(p).num_rows for p in paths)
    assert together.num_rows == one_by_one
    assert len(pc.unique(together.column("nodename"))) == len(
        {json.loads(p.read_bytes())["node"]["nodeName"] for p in paths}
    )


class TestGke2017:
    """summary-beats-gke-2017.json: docker era, pods without cpu/memory, `runtime` system container."""

    @pytest.fixture
    def points(self, kubelet_data: Path):  # type: ignore[no-untyped-def]
        return decode_files(kubelet_data / "summary-beats-gke-2017.json")

    NODE = "gke-beats-default-pool-a5b33e2e-hdww"

    def test_node(self, points) -> None:  # type: ignore[no-untyped-def]
        assert metrics_of(points, type="node", resource_id=None) == {
            "uptime": ms_since("2017-04-18T12:53:49Z"),
            "cpu/usage": 4189523881380,
            "memory/usage": 2764943360,
            "memory/working_set": 2111090688,
            "memory/rss": 2150400,
            "memory/page_faults": 131567,
            "memory/major_page_faults": 103,
            "network/rx": 1115133198,
            "network/rx_errors": 0,
            "network/tx": 812729002,
            "network/tx_errors": 0,
            "ephemeral_storage/usage": 2514276352,
        }

    def test_node_filesystem(self, points) -> None:  # type: ignore[no-untyped-def]
        assert metrics_of(points, type="node", resource_id="/") == {
            "filesystem/usage": 2514276352,
            "filesystem/limit": 101258067968,
            "filesystem/available": 98727014400,
            "filesystem/inodes": 6258720,
            "filesystem/inodes_free": 6120096,
        }

    def test_system_container(self, points) -> None:  # type: ignore[no-untyped-def]
        sys_rows = points.filter(pc.equal(points.column("type"), "sys_container"))
        assert set(sys_rows.column("container_name").to_pylist()) == {"kubelet"}
        assert metrics_of(points, type="sys_container", container_name="kubelet") == {
            "uptime": ms_since("2017-04-18T12:53:49Z"),
            "cpu/usage": 2357800908948,
            "memory/usage": 36683776,
            "memory/working_set": 36495360,
            "memory/rss": 35512320,
            "memory/page_faults": 100835242,
            "memory/major_page_faults": 0,
        }

    def test_pod_without_cpu_memory_and_its_volume(self, points) -> None:  # type: ignore[no-untyped-def]
        pod = {"namespace_name": "default", "pod_name": "nginx-deployment-2303442956-pcqfc"}
        assert metrics_of(points, type="pod", resource_id=None, **pod) == {
            "uptime": ms_since("2017-04-18T16:47:44Z"),
            "network/rx": 107056,
            "network/rx_errors": 0,
            "network/tx": 72447,
            "network/tx_errors": 0,
        }
        assert metrics_of(points, type="pod", resource_id="Volume:default-token-sg8x5", **pod) == {
            "filesystem/usage": 12288,
            "filesystem/limit": 1939701760,
            "filesystem/available": 1939689472,
            "filesystem/inodes": 473560,
            "filesystem/inodes_free": 473551,
        }
        row = points.filter(pc.equal(points.column("type"), "pod")).to_pylist()[0]
        assert row["pod_id"] == "beabc196-2456-11e7-a3ad-42010a840235"
        assert row["sample_time"] == ts("2017-04-20T08:06:41Z")  # pods: network time only
        assert row["start_time"] == ts("2017-04-18T16:47:44Z")

    def test_container_and_its_filesystems(self, points) -> None:  # type: ignore[no-untyped-def]
        c = {"type": "pod_container", "pod_name": "nginx-deployment-2303442956-pcqfc", "container_name": "nginx"}
        assert metrics_of(points, resource_id=None, **c) == {
            "uptime": ms_since("2017-04-18T16:47:44Z"),
            "cpu/usage": 43959424,
            "memory/usage": 1462272,
            "memory/working_set": 1454080,
            "memory/rss": 1409024,
            "memory/page_faults": 841,
            "memory/major_page_faults": 0,
            "ephemeral_storage/usage": 61440 + 28672,  # rootfs + logs
        }
        assert metrics_of(points, resource_id="/", **c)["filesystem/usage"] == 61440
        assert metrics_of(points, resource_id="logs", **c)["filesystem/usage"] == 28672
        row = points.filter(pc.equal(points.column("container_name"), "nginx")).to_pylist()[0]
        assert row["sample_time"] == ts("2017-04-20T08:06:34Z")
        assert row["nodename"] == self.NODE


class TestMinikube128Swap:
    """summary-nri-minikube-v1.28-containerd-swap-2023.json: swap, process_stats, containerd."""

    @pytest.fixture
    def points(self, kubelet_data: Path):  # type: ignore[no-untyped-def]
        return decode_files(kubelet_data / "summary-nri-minikube-v1.28-containerd-swap-2023.json")

    def test_node_swap_extension(self, points) -> None:  # type: ignore[no-untyped-def]
        node = metrics_of(points, type="node", resource_id=None)
        assert node["memory/swap_usage"] == 0
        assert node["memory/swap_available"] == 1073737728
        assert node["cpu/usage"] == 117133655000
        assert node["ephemeral_storage/usage"] == 16047185920

    def test_system_container_pods(self, points) -> None:  # type: ignore[no-untyped-def]
        got = metrics_of(points, type="sys_container", container_name="pods", resource_id=None)
        assert got["cpu/usage"] == 44895745000
        assert got["memory/working_set"] == 544370688
        assert got["memory/swap_usage"] == 0
        assert "memory/swap_available" not in got  # absent in the payload → no point

    def test_pod(self, points) -> None:  # type: ignore[no-untyped-def]
        pod = {"namespace_name": "scraper", "pod_name": "e2e-statefulset-0"}
        got = metrics_of(points, type="pod", resource_id=None, **pod)
        assert got["cpu/usage"] == 2380520000
        assert got["memory/usage"] == 11169792
        assert got["network/tx"] == 796
        assert got["ephemeral_storage/usage"] == 69632
        assert got["process/count"] == 0
        assert metrics_of(points, type="pod", resource_id="Volume:kube-api-access-cptvf", **pod) == {
            "filesystem/usage": 12288,
            "filesystem/limit": 8232615936,
            "filesystem/available": 8232603648,
            "filesystem/inodes": 1004958,
            "filesystem/inodes_free": 1004949,
        }
        row = points.filter(pc.equal(points.column("pod_name"), "e2e-statefulset-0")).to_pylist()[0]
        assert row["sample_time"] == ts("2023-11-10T06:20:44Z")  # network.time, not cpu.time 06:20:48

    def test_container(self, points) -> None:  # type: ignore[no-untyped-def]
        c = {"type": "pod_container", "pod_name": "e2e-statefulset-0", "container_name": "compute-pi-digits"}
        got = metrics_of(points, resource_id=None, **c)
        assert got["cpu/usage"] == 2003015000
        assert got["memory/rss"] == 9867264
        assert got["ephemeral_storage/usage"] == 32768 + 4096
        assert got["memory/swap_usage"] == 0
        assert got["memory/swap_available"] == 0
        assert metrics_of(points, resource_id="logs", **c)["filesystem/usage"] == 4096


class TestWindowsPair:
    """The two consecutive Windows/containerd scrapes: sparse memory, no node counters, no inodes."""

    @pytest.fixture
    def pre(self, kubelet_data: Path):  # type: ignore[no-untyped-def]
        return decode_files(kubelet_data / "summary-aws-eks-windows-containerd-2023-pre.json")

    @pytest.fixture
    def cur(self, kubelet_data: Path):  # type: ignore[no-untyped-def]
        return decode_files(kubelet_data / "summary-aws-eks-windows-containerd-2023-cur.json")

    def test_node_has_no_network_and_no_inodes(self, pre) -> None:  # type: ignore[no-untyped-def]
        node = metrics_of(pre, type="node", resource_id=None)
        assert not any(name.startswith("network/") for name in node)
        assert node["memory/rss"] == 0
        assert metrics_of(pre, type="node", resource_id="/") == {
            "filesystem/usage": 34667089920,
            "filesystem/limit": 85897244672,
            "filesystem/available": 51230154752,
        }

    def test_container_memory_is_working_set_only(self, pre) -> None:  # type: ignore[no-untyped-def]
        got = metrics_of(pre, type="pod_container", resource_id=None)
        assert {k for k in got if k.startswith("memory/")} == {"memory/working_set"}
        assert got["memory/working_set"] == 208949248
        assert got["ephemeral_storage/usage"] == 339738624 + 919463

    def test_pod_network_without_error_counters(self, pre) -> None:  # type: ignore[no-untyped-def]
        got = metrics_of(pre, type="pod", resource_id=None)
        assert got["network/rx"] == 8787186
        assert got["network/tx"] == 3423484
        assert "network/rx_errors" not in got

    def test_counters_advance_over_one_minute(self, pre, cur) -> None:  # type: ignore[no-untyped-def]
        before, after = metrics_of(pre, type="node", resource_id=None), metrics_of(cur, type="node", resource_id=None)
        assert after["cpu/usage"] - before["cpu/usage"] == 3_100_000_000
        pod_before = metrics_of(pre, type="pod", resource_id=None)
        pod_after = metrics_of(cur, type="pod", resource_id=None)
        assert pod_after["cpu/usage"] - pod_before["cpu/usage"] == 187_500_000
        t0 = pre.filter(pc.equal(pre.column("type"), "node")).column("sample_time")[0].as_py()
        t1 = cur.filter(pc.equal(cur.column("type"), "node")).column("sample_time")[0].as_py()
        assert (t1 - t0).total_seconds() == 60


def test_runtime_system_container_is_renamed_docker_daemon(kubelet_data: Path) -> None:
    points = decode_files(kubelet_data / "summary-otel-minikube-2020.json")
    sys_rows = points.filter(pc.equal(points.column("type"), "sys_container"))
    assert set(sys_rows.column("container_name").to_pylist()) == {"kubelet", "docker-daemon", "pods"}


def test_uint64_max_is_unknown_not_negative(kubelet_data: Path) -> None:
    raw = (kubelet_data / "summary-beats-gke-2017-multicontainer-uint64max.json").read_bytes()
    result = decode_summaries([raw], now=NOW)
    points = to_points(result.batch, NOW)
    assert result.unknown_values == 1  # node fs inodesFree (imageFs is not read)
    node_fs = metrics_of(points, type="node", resource_id="/")
    assert "filesystem/inodes_free" not in node_fs
    assert node_fs["filesystem/inodes"] == 6258720
    assert pc.min(points.column("value_int")).as_py() >= 0
    both = metrics_of(points, type="pod_container", container_name="sidecar", resource_id=None)
    assert both["ephemeral_storage/usage"] == 90112


def test_ints_stay_exact_beyond_2_pow_53() -> None:
    big = 2**62 + 1  # not representable in float64
    doc = {"node": {"nodeName": "n", "cpu": {"time": "2024-01-01T00:00:00Z", "usageCoreNanoSeconds": big}}}
    points = to_points(decode_summaries([json.dumps(doc).encode()], now=NOW).batch, NOW)
    assert metrics_of(points, type="node")["cpu/usage"] == big


def test_duplicate_container_names_keep_the_later_start() -> None:
    def container(start: str, cpu: int) -> dict[str, object]:
        return {"name": "app", "startTime": start, "cpu": {"time": "2024-01-01T00:00:00Z", "usageCoreNanoSeconds": cpu}}

    pod = {
        "podRef": {"name": "p", "namespace": "ns", "uid": "u"},
        "containers": [
            container("2023-12-31T10:00:00Z", 1),
            container("2023-12-31T12:00:00Z", 2),  # latest start: wins
            container("2023-12-31T11:00:00Z", 3),
            {"name": "other", "startTime": "2023-12-31T10:00:00Z"},
        ],
    }
    tie = {
        "podRef": {"name": "q", "namespace": "ns", "uid": "v"},
        "containers": [container("2023-12-31T10:00:00Z", 4), container("2023-12-31T10:00:00Z", 5)],
    }
    doc = {"node": {"nodeName": "n"}, "pods": [pod, tie]}
    points = to_points(decode_summaries([json.dumps(doc).encode()], now=NOW).batch, NOW)
    assert metrics_of(points, pod_name="p", container_name="app")["cpu/usage"] == 2
    assert metrics_of(points, pod_name="q", container_name="app")["cpu/usage"] == 5  # tie: later in array
    assert metrics_of(points, pod_name="p", container_name="other") == {"uptime": ms_since("2023-12-31T10:00:00Z")}


def test_accelerators_and_user_defined_metrics() -> None:
    container = {
        "name": "trainer",
        "accelerators": [
            {
                "make": "nvidia",
                "model": "tesla-t4",
                "id": "GPU-1",
                "memoryTotal": (16e9).__int__(),
                "memoryUsed": 4000,
                "dutyCycle": 87,
            }
        ],
        "userDefinedMetrics": [
            {"name": "qps", "type": "gauge", "units": "", "value": 12.5},
            {"name": "bogus", "type": "histogram", "value": 1.0},
        ],
    }
    doc = {
        "node": {"nodeName": "n"},
        "pods": [{"podRef": {"name": "p", "namespace": "ml", "uid": "u"}, "containers": [container]}],
    }
    points = to_points(decode_summaries([json.dumps(doc).encode()], now=NOW).batch, NOW)
    gpu = metrics_of(points, container_name="trainer", accelerator_id="GPU-1", make="nvidia", model="tesla-t4")
    assert gpu == {
        "accelerator/memory_total": 16_000_000_000,
        "accelerator/memory_used": 4000,
        "accelerator/duty_cycle": 87,
    }
    custom = metrics_of(points, container_name="trainer", accelerator_id=None)
    assert custom == {"custom/qps": 12.5}
    qps = points.filter(pc.equal(points.column("metric"), "custom/qps")).to_pylist()[0]
    assert qps["value_int"] is None


BAD_DOCUMENTS = {
    "not-json": (b"<html>502 Bad Gateway</html>", "invalid Summary JSON"),
    "truncated": (b'{"node": {"nodeName": "n", "cpu": {"usageCoreNanoSeconds": 12', "invalid Summary JSON"),
    "string-number": (b'{"node": {"nodeName": "n", "memory": {"usageBytes": "12"}}}', "/node/memory/usageBytes"),
    "no-node": (b'{"pods": []}', "no `node`"),
    "empty": (b"", "empty document"),
    "two-objects": (b'{"node": {"nodeName": "a"}} {"node": {"nodeName": "b"}}', "found 2"),
    "array": (b"[1, 2]", "invalid Summary JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_bad_document_is_named_and_the_others_still_decode(case: str, kubelet_data: Path) -> None:
    bad, expected = BAD_DOCUMENTS[case]
    good = [
        (kubelet_data / name).read_bytes()
        for name in ("summary-splunk-eks-2018.json", "summary-otel-minikube-2020.json")
    ]
    result = decode_summaries([good[0], bad, good[1]], now=NOW, sources=["a", "kubelet:10.0.0.7", "c"])
    assert [e.source for e in result.errors] == ["kubelet:10.0.0.7"]
    assert expected in str(result.errors[0])
    assert result.documents == 2
    alone = decode_summaries(good, now=NOW)
    assert canonical(to_points(result.batch, NOW)) == canonical(to_points(alone.batch, NOW))


def test_times_with_nanosecond_fractions_and_offsets_parse() -> None:
    doc = {
        "node": {
            "nodeName": "n",
            "startTime": "2023-12-31T23:00:00.123456789Z",
            "cpu": {"time": "2024-01-01T01:00:00.999+01:00", "usageCoreNanoSeconds": 5},
        }
    }
    points = to_points(decode_summaries([json.dumps(doc).encode()], now=NOW).batch, NOW).to_pylist()
    cpu = next(p for p in points if p["metric"] == "cpu/usage")
    assert cpu["start_time"] == datetime(2023, 12, 31, 23, 0, 0, 123000, tzinfo=UTC)  # truncated to ms
    assert cpu["sample_time"] == datetime(2024, 1, 1, 0, 0, 0, 999000, tzinfo=UTC)
    assert (
        metrics_of(to_points(decode_summaries([json.dumps(doc).encode()], now=NOW).batch, NOW))["uptime"] == 3_599_877
    )
