"""Wide → long: melt and to_points keep every value, label and time, and nothing else."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
from conftest import NOW

from heapster_columnar.model.batch import MetricBatch, concat_batches
from heapster_columnar.model.points import melt, to_points
from heapster_columnar.model.schema import POINTS_SCHEMA
from heapster_columnar.sources.summary import decode_summaries


def test_melt_keeps_non_null_cells_column_by_column() -> None:
    rows, cols, values = melt([pa.array([1, None, 3]), pa.array([None, None, None]), pa.array([None, 5, 6])])
    assert rows.tolist() == [0, 2, 1, 2]
    assert cols.tolist() == [0, 0, 2, 2]
    assert values.to_pylist() == [1, 3, 5, 6]


def test_empty_batch_gives_empty_points_with_the_schema() -> None:
    points = to_points(MetricBatch.empty(), NOW)
    assert points.num_rows == 0
    assert points.schema == POINTS_SCHEMA


def _doc(node: str, volume: str) -> bytes:
    return json.dumps(
        {
            "node": {"nodeName": node, "memory": {"time": "2024-01-01T00:00:00Z", "usageBytes": 7}},
            "pods": [
                {"podRef": {"name": "p", "namespace": "n", "uid": "u"}, "volume": [{"name": volume, "usedBytes": 1}]}
            ],
        }
    ).encode()


def test_concatenated_parts_rebase_labeled_rows_and_unify_dictionaries() -> None:
    parts = [decode_summaries([_doc(f"node-{i}", f"vol-{i}")], now=NOW).batch for i in range(3)]
    batch = concat_batches(parts)
    assert batch.labeled.column("resource_id").num_chunks == 1  # one dictionary, not one per part
    grouped = batch.labeled.group_by("resource_id").aggregate([("value", "sum")])
    assert grouped.num_rows == 3
    points = to_points(batch, NOW)
    fs = points.filter(pc.equal(points.column("metric"), "filesystem/usage")).to_pylist()
    assert sorted((r["nodename"], r["resource_id"]) for r in fs) == [
        ("node-0", "Volume:vol-0"),
        ("node-1", "Volume:vol-1"),
        ("node-2", "Volume:vol-2"),
    ]
    assert all(r["pod_name"] == "p" and r["type"] == "pod" for r in fs)
    assert points.num_rows == batch.num_points == 3 * 2  # memory/usage + filesystem/usage per node
    assert set(points.column("timestamp").to_pylist()) == {NOW}
