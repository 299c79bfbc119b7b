"""FaultSpec parsing and assignment; ClusterSpec limits; loopback addresses."""

from __future__ import annotations

import pytest

from heapster_columnar.errors import ConfigError
from heapster_columnar.simulator.spec import ClusterSpec, Fault, FaultRule, FaultSpec, kubelet_ip


def test_parse_counts_fractions_and_parameters() -> None:
    spec = FaultSpec.parse("slow=0.1:3, hang=2,uint64max")
    assert spec.rules == (
        FaultRule(Fault.SLOW, 0.1, 3.0),
        FaultRule(Fault.HANG, 2.0, None),
        FaultRule(Fault.UINT64_MAX, 1.0, None),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [("explode=1", "unknown fault 'explode'"), ("slow=x", "'slow=x' is not"), ("hang=-1", "negative")],
)
def test_bad_faults_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FaultSpec.parse(text)


def test_assignment_is_deterministic_disjoint_and_sized() -> None:
    spec = FaultSpec.parse("slow=0.1:3,hang=2")
    first = spec.assign(100, seed=1)
    assert first == spec.assign(100, seed=1)
    slow = [n for n, f in first.items() if Fault.SLOW in f]
    hang = [n for n, f in first.items() if Fault.HANG in f]
    assert len(slow) == 10 and len(hang) == 2
    assert not set(slow) & set(hang)
    assert all(first[n][Fault.SLOW] == 3.0 for n in slow)
    assert spec.assign(100, seed=2) != first


def test_cluster_spec_limits() -> None:
    with pytest.raises(ConfigError, match="--nodes"):
        ClusterSpec(nodes=0)
    with pytest.raises(ConfigError, match="--pods-per-node"):
        ClusterSpec(pods_per_node=501)


def test_kubelet_addresses_are_unique_loopback() -> None:
    ips = [kubelet_ip(i) for i in range(70_000 - 10_000)]
    assert len(set(ips)) == len(ips)
    assert all(ip.startswith("127.") and all(0 <= int(o) <= 255 for o in ip.split(".")) for ip in ips)
    assert kubelet_ip(0) == "127.1.0.1" and kubelet_ip(255) == "127.1.1.0"
