"""Entity lookups in a window's points table in microseconds instead of a 13 M-row scan.

A model-API query asks for one entity's metric across every kept window; scanning each window's
points (13 M rows at 5,000 nodes) would take ~100 ms per window. Instead each points table gets,
once, a 64-bit key per row — a hash of (type, node, namespace, pod, container) computed from the
hashes of each column's *dictionary* (a few thousand distinct strings) combined over the int32
indices with numpy — and a sort by that key. A lookup is then a binary search and a slice. Two
entities sharing a key (p ~ 1e-10 per pair) are told apart by comparing the strings of the rows
found.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["KEY_COLUMNS", "PointsIndex", "key_of"]

KEY_COLUMNS = ("type", "nodename", "namespace_name", "pod_name", "container_name")
_SEED = 0x4D0DE1
_NULL = np.uint64(0x9E3779B97F4A7C15)
_MULTIPLIER = np.uint64(0x100000001B3)


def _hash_strings(values: pa.Array) -> np.ndarray:
    hashed = pl.Series(values.cast(pa.string())).hash(_SEED).to_numpy().astype(np.uint64)
    return np.where(np.asarray(pc.is_null(values)), _NULL, hashed)


def _column_hash(column: pa.ChunkedArray) -> np.ndarray:
    """One uint64 per row: the hash of the row's string (via its dictionary when there is one)."""
    parts = []
    for chunk in column.chunks:  # a loop per chunk (a handful per window), never per row
        if pa.types.is_dictionary(chunk.type):
            dictionary = _hash_strings(chunk.dictionary)
            indices = pc.fill_null(chunk.indices, 0).to_numpy(zero_copy_only=False)
            valid = np.asarray(pc.is_valid(chunk))
            parts.append(np.where(valid, dictionary[indices], _NULL))
        else:
            parts.append(_hash_strings(chunk))
    return np.concatenate(parts) if parts else np.empty(0, np.uint64)


def _combine(hashes: Sequence[np.ndarray]) -> np.ndarray:
    key = np.zeros(len(hashes[0]), np.uint64)
    with np.errstate(over="ignore"):
        for column in hashes:
            key = key * _MULTIPLIER ^ column
    return key


def key_of(entity: Sequence[str | None]) -> np.uint64:
    """The key :class:`PointsIndex` gives rows of ``entity`` (values in ``KEY_COLUMNS`` order)."""
    columns = [_hash_strings(pa.array([value], pa.string())) for value in entity]
    return np.uint64(_combine(columns)[0])


class PointsIndex:
    """Rows of one points table by entity; built once (in a worker thread), read by many queries."""

    def __init__(self, points: pa.Table) -> None:
        self.points = points
        keys = _combine([_column_hash(points.column(name)) for name in KEY_COLUMNS])
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]

    def rows(self, entity: Sequence[str | None]) -> pa.Table:
        """The points of ``entity`` (type, node, namespace, pod, container; None for absent)."""
        key = key_of(entity)
        first, last = np.searchsorted(self._keys, key, "left"), np.searchsorted(self._keys, key, "right")
        if first == last:
            return self.points.schema.empty_table()
        found = self.points.take(pa.array(self._order[first:last]))
        same = None
        for name, value in zip(KEY_COLUMNS, entity, strict=True):  # verify: a shared key never mixes
            column = found.column(name).cast(pa.string())
            check = pc.is_null(column) if value is None else pc.fill_null(pc.equal(column, value), False)
            same = check if same is None else pc.and_(same, check)
        return found.filter(same)


class IndexCache:
    """Indices of the points tables still kept in memory, by table identity."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indices: dict[int, PointsIndex] = {}

    def get(self, points: pa.Table) -> PointsIndex:
        with self._lock:
            found = self._indices.get(id(points))
        if found is not None and found.points is points:
            return found
        index = PointsIndex(points)
        with self._lock:
            self._indices[id(points)] = index
        return index

    def keep(self, tables: Sequence[pa.Table]) -> None:
        """Forget the indices of tables no longer kept (the memory sink let them go)."""
        alive = {id(t) for t in tables}
        with self._lock:
            self._indices = {k: v for k, v in self._indices.items() if k in alive}
