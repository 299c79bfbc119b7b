"""Splitting a window's points into metric sets (``sinks/_duckdb_sets.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from heapster_columnar.model.schema import LABEL_TYPE, POINTS_SCHEMA
from heapster_columnar.sinks import _duckdb_sets
from heapster_columnar.sinks._duckdb_schema import SET_CONTRACT
from heapster_columnar.sinks._duckdb_sets import split
from tests.sinks.windows import fixture_windows

SETS = list(SET_CONTRACT)


def partition(ids: np.ndarray) -> list[list[int]]:
    """The groups of point positions ``ids`` makes, independent of how the sets are numbered."""
    groups: dict[int, list[int]] = {}
    for position, set_id in enumerate(ids.tolist()):
        groups.setdefault(set_id, []).append(position)
    return sorted(groups.values())


def hand_built() -> tuple[pa.Table, np.ndarray]:
    """Two containers (entity rows 0 and 2; row 1 has no points): each two plain points, then
    container 0's filesystem '/' and 'logs' metrics interleaved metric by metric, as the decoder
    emits them, and container 2's '/'. Container 2 also has one point of a volume only."""
    entity = [0, 2, 0, 2, 0, 0, 2, 0, 0, 2, 2]
    resource = [None, None, None, None, "/", "logs", "/", "/", "logs", "/", "vol"]
    pod = ["a" if e == 0 else "b" for e in entity]
    n = len(entity)
    columns: dict[str, pa.Array] = {}
    for f in POINTS_SCHEMA:
        if f.name == "timestamp":
            columns[f.name] = pa.array([1_000] * n, f.type)
        elif f.name == "metric":
            columns[f.name] = pa.array(
                ["cpu", "cpu", "mem", "mem", *["fs/usage"] * 3, *["fs/limit"] * 3, "fs/usage"]
            ).dictionary_encode()
        elif f.name == "value":
            columns[f.name] = pa.array(np.arange(n, dtype=np.float64))
        elif f.name == "value_int":
            columns[f.name] = pa.array(range(n), pa.int64())
        elif f.name == "pod_name":
            columns[f.name] = pa.array(pod).dictionary_encode()
        elif f.name == "resource_id":
            columns[f.name] = pa.array(resource).dictionary_encode()
        elif f.name == "type":
            columns[f.name] = pa.array(["pod_container"] * n).dictionary_encode()
        elif f.name in ("sample_time", "start_time"):
            columns[f.name] = pa.array([500 if e == 0 else 600 for e in entity], f.type)
        else:
            columns[f.name] = pa.nulls(n, LABEL_TYPE)
    return pa.Table.from_pydict(columns, schema=POINTS_SCHEMA), np.array(entity, dtype=np.int64)


EXPECTED = [[0, 2], [1, 3], [4, 7], [5, 8], [6, 9], [10]]


def test_sets_come_from_entity_rows_and_metric_labels() -> None:
    points, entities = hand_built()
    parts = split(points, SETS, entities)
    assert partition(parts.set_of_point) == EXPECTED
    # Entities' own sets first, in row order (row 1 had no points: no gap), then labeled ones.
    assert parts.set_of_point.tolist() == [0, 1, 0, 1, 2, 3, 4, 2, 3, 4, 5]
    assert parts.sets.column_names == SETS
    assert parts.sets.column("pod_name").to_pylist() == ["a", "b", "a", "a", "b", "b"]
    assert parts.sets.column("resource_id").to_pylist() == [None, None, "/", "logs", "/", "vol"]
    assert parts.sets.column("sample_time").cast(pa.int64()).to_pylist() == [500, 600, 500, 500, 600, 600]


def test_without_entity_rows_the_columns_are_compared() -> None:
    points, _ = hand_built()
    for entities in (None, np.zeros(3, dtype=np.int64)):  # absent, or not one per point
        parts = split(points, SETS, entities)
        assert partition(parts.set_of_point) == EXPECTED
        assert parts.set_of_point.tolist() == [0, 1, 0, 1, 2, 3, 4, 2, 3, 4, 5]  # by first appearance


def test_a_key_too_wide_for_int64_falls_back_to_comparing(monkeypatch: pytest.MonkeyPatch) -> None:
    points, entities = hand_built()
    monkeypatch.setattr(_duckdb_sets, "_KEY_LIMIT", 4)
    assert _duckdb_sets._by_entity(points, entities) is None
    assert partition(split(points, SETS, entities).set_of_point) == EXPECTED


def test_chunks_with_different_dictionaries_are_merged() -> None:
    points, entities = hand_built()
    a, b = points.slice(0, 5), points.slice(5)
    # Rebuild the second half's dictionaries so no buffer is shared, and in another order.
    rebuilt = {
        name: pa.chunked_array([pa.array(b.column(name).to_pylist()[::-1]).dictionary_encode()]).combine_chunks()
        for name in ("resource_id", "pod_name")
    }
    b = b.set_column(
        b.schema.get_field_index("resource_id"), "resource_id", rebuilt["resource_id"].take(pa.array(range(5, -1, -1)))
    )
    b = b.set_column(
        b.schema.get_field_index("pod_name"), "pod_name", rebuilt["pod_name"].take(pa.array(range(5, -1, -1)))
    )
    chunked = pa.concat_tables([a, b.cast(a.schema)])
    assert chunked.column("resource_id").num_chunks == 2
    for hint in (entities, None):
        assert partition(split(chunked, SETS, hint).set_of_point) == EXPECTED


def test_real_windows_split_as_exact_grouping_does(kubelet_data: Path) -> None:
    (window,) = fixture_windows(kubelet_data, 1)
    assert window.point_entities is not None
    fast = split(window.points, SETS, window.point_entities)
    slow = split(window.points, SETS, None)
    assert partition(fast.set_of_point) == partition(slow.set_of_point)
    assert fast.sets.num_rows == slow.sets.num_rows < window.points.num_rows / 5
    # Every point's set columns are its set's: taking the sets back by point gives the points.
    for name in SETS:
        assert (
            fast.sets.column(name).take(pa.array(fast.set_of_point)).to_pylist()
            == window.points.column(name).to_pylist()
        )
