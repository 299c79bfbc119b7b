"""Node autoscaling enricher: Heapster's ratios and zero guards (HEAPSTER.md §5.8), by hand."""

from __future__ import annotations

import pyarrow as pa
import pytest
from window_rows import make_frames, row_of

from heapster_columnar.model.dimensions import NODES_SCHEMA, Dimensions
from heapster_columnar.model.labels import LabelCopier
from heapster_columnar.processors.autoscaling import NodeAutoscalingEnricher

GI = 1 << 30


def nodes(*rows: dict[str, object]) -> Dimensions:
    full = [{f.name: r.get(f.name) for f in NODES_SCHEMA} for r in rows]
    empty = Dimensions.empty()
    return Dimensions(empty.pods, empty.containers, empty.namespaces, pa.Table.from_pylist(full, schema=NODES_SCHEMA))


DIMS = nodes(
    {
        "name": "n1",
        "labels": [("zone", "a"), ("arch", "arm64")],
        "capacity_cpu": 4000,
        "allocatable_cpu": 3920,
        "capacity_memory": 16 * GI,
        "allocatable_memory": 15 * GI,
        "capacity_ephemeral_storage": 100 * GI,
        "allocatable_ephemeral_storage": 90 * GI,
    },
    # allocatable cpu 0: no ratios; ephemeral storage only in capacity: no ephemeral metrics at all
    {"name": "n2", "capacity_cpu": 2000, "allocatable_cpu": 0, "capacity_ephemeral_storage": 50 * GI},
)

WINDOW = [
    {
        "type": "node",
        "nodename": "n1",
        "cpu/usage_rate": 980,
        "cpu/request": 1960,
        "memory/usage": 3 * GI,
        "memory/request": 5 * GI,
        "ephemeral_storage/usage": 9 * GI,
    },
    {"type": "node", "nodename": "n2", "cpu/usage_rate": 100, "memory/usage": 1},
    {"type": "node", "nodename": "n3", "cpu/usage_rate": 100},  # not in the API
    {"type": "pod", "nodename": "n1", "namespace_name": "a", "pod_name": "p"},
]


def test_ratios_by_hand() -> None:
    out = NodeAutoscalingEnricher().process(make_frames(WINDOW), DIMS)
    n1 = row_of(out, type="node", nodename="n1")
    assert n1["cpu/node_capacity"] == 4000.0 and n1["cpu/node_allocatable"] == 3920.0
    assert n1["cpu/node_utilization"] == pytest.approx(980 / 3920) == 0.25
    assert n1["cpu/node_reservation"] == 0.5
    assert n1["memory/node_utilization"] == pytest.approx(0.2)  # memory/usage, not working set
    assert n1["memory/node_reservation"] == pytest.approx(1 / 3)
    assert n1["ephemeral_storage/node_utilization"] == pytest.approx(0.1)
    assert n1["ephemeral_storage/node_reservation"] == 0.0  # no request: read as 0
    assert n1["labels"] == "arch:arm64,zone:a"


def test_zero_guards_and_unknown_nodes() -> None:
    out = NodeAutoscalingEnricher().process(make_frames(WINDOW), DIMS)
    n2 = row_of(out, type="node", nodename="n2")
    assert (n2["cpu/node_capacity"], n2["cpu/node_allocatable"]) == (2000.0, 0.0)
    assert n2["cpu/node_utilization"] is None and n2["cpu/node_reservation"] is None
    assert n2["memory/node_capacity"] == 0.0 and n2["memory/node_utilization"] is None
    assert n2["ephemeral_storage/node_capacity"] is None  # allocatable does not list it
    n3 = row_of(out, type="node", nodename="n3")
    assert n3["cpu/node_capacity"] is None and n3["labels"] is None
    pod = row_of(out, type="pod")
    assert pod["cpu/node_capacity"] is None and pod["labels"] is None


def test_stored_node_labels() -> None:
    out = NodeAutoscalingEnricher(LabelCopier(store=["zone", "cpu_arch=arch"])).process(make_frames(WINDOW), DIMS)
    n1 = row_of(out, type="node", nodename="n1")
    assert (n1["zone"], n1["cpu_arch"]) == ("a", "arm64")
