"""A window's points as metric sets and point rows, in Arrow, without comparing rows in Python.

Heapster's MetricSet is one entity's labels and times with its metrics; a points table repeats
the set's 18 columns on each of its ~11 points. DuckDB's insert cost grows with cells (~18 ns
each here, whatever the type), so the store keeps each set once (``metric_sets``) and four
columns per point (``point_rows``): 8.15 M points write 13.8 M set cells and 32.6 M point cells
instead of 171 M.

Which points share a set comes from the window when it can tell (``Window.point_entities``: the
entity row each point was taken from), plus the labeled metrics' own labels (``resource_id``,
``make``, ``model``, ``accelerator_id``: a filesystem's five metrics are one set). Grouping 8 M rows
on 18 columns instead costs 2-6 s on two cores (Polars ``group_by``/``rank``), so it is only the
fallback for points that came without their entity rows (a hand-built table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.model.schema import METRIC_LABELS

# Room for the combined key of a point's entity row and its metric labels in one int64.
_KEY_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class Split:
    """The window's metric sets, and which one each point belongs to."""

    sets: pa.Table  # one row per set: the set columns as the points carry them
    set_of_point: np.ndarray  # int64 per point: the row of ``sets``


def split(points: pa.Table, set_columns: Sequence[str], entities: np.ndarray | None) -> Split:
    """Group ``points`` into sets of equal ``set_columns``.

    ``entities``, when given, must be the entity row each point was taken from (its set columns
    other than the metric labels are that row's); otherwise the columns are compared.
    """
    ids = None
    if entities is not None and len(entities) == points.num_rows:
        ids = _by_entity(points, np.asarray(entities, dtype=np.int64))
    if ids is None:
        ids = _by_columns(points, set_columns)
    count = int(ids.max()) + 1 if len(ids) else 0
    representative = np.full(count, -1, dtype=np.int64)
    representative[ids] = np.arange(len(ids), dtype=np.int64)  # any point of a set will do: they agree
    unused = representative < 0  # an entity row without points of its own (all labeled, or none)
    if unused.any():
        ids = (np.cumsum(~unused) - 1)[ids]
        representative = representative[~unused]
    return Split(points.select(list(set_columns)).take(pa.array(representative)), ids)


def _by_entity(points: pa.Table, entities: np.ndarray) -> np.ndarray | None:
    """Set ids from entity rows and metric labels: each entity's unlabeled points are one set
    (ids in entity row order, with gaps where a row has none), then each distinct (entity, metric
    labels) of the labeled points, in that order. None if the key cannot fit an int64.

    The labeled points are numbered by a stable sort of their keys: the decoder emits them metric
    by metric, each metric's in entity order, so the keys come in ascending runs, which a merge
    sort takes in 20 ms for 2.4 M points (hashing them took 120 ms).
    """
    n = len(entities)
    rows = int(entities.max()) + 1 if n else 0
    labels = [points.column(name) for name in METRIC_LABELS if name in points.column_names]
    labels = [column.combine_chunks() for column in labels if column.null_count < n]
    ids = entities.copy()
    if not labels:
        return ids
    valid = [column.is_valid().to_numpy(zero_copy_only=False) for column in labels]
    where = np.flatnonzero(np.logical_or.reduce(valid)) if len(valid) > 1 else np.flatnonzero(valid[0])
    key, span = entities[where], 1
    for column in labels:
        codes, radix = _codes(column, where)
        span *= radix
        if span * rows >= _KEY_LIMIT:
            return None
        key *= radix
        key += codes + 1  # null -> 0
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    starts = np.empty(len(ordered), dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    ids[where[order]] = rows - 1 + np.cumsum(starts)
    return ids


def _by_columns(points: pa.Table, set_columns: Sequence[str]) -> np.ndarray:
    """Set ids by comparing the columns (numbered in order of first appearance)."""
    if points.num_rows == 0:
        return np.empty(0, dtype=np.int64)
    keys = {f"k{i}": _codes(points.column(name))[0] for i, name in enumerate(set_columns)}
    frame = pl.DataFrame(keys).with_row_index("row")
    first = frame.select(pl.col("row").min().over(list(keys))).to_series().to_numpy().astype(np.int64)
    representatives = np.unique(first)
    return np.searchsorted(representatives, first).astype(np.int64)


def _codes(column: pa.Array | pa.ChunkedArray, rows: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(an int64 per row, or per row of ``rows``, equal exactly when the values are, -1 for null;
    how many codes there are). Strings by their position in the column's (merged) dictionary,
    anything else by value.
    """
    kind = column.type
    if isinstance(column, pa.ChunkedArray):
        # Concatenation merges the chunks' dictionaries by hashing them once (unify_dictionaries
        # instead copies the merged one into every chunk: 1.8 s for 125 chunks of 90,000 strings).
        column = column.combine_chunks() if column.num_chunks else pa.array([], kind)
    if pa.types.is_dictionary(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        array = column if pa.types.is_dictionary(kind) else pc.dictionary_encode(column)
        indices, radix = array.indices, len(array.dictionary) + 1
    else:
        encoded = pc.dictionary_encode(column.cast(pa.int64()) if pa.types.is_timestamp(kind) else column)
        indices, radix = encoded.indices, len(encoded.dictionary) + 1
    if rows is not None:
        indices = indices.take(pa.array(rows))
    return pc.fill_null(indices.cast(pa.int64()), -1).to_numpy(), radix
