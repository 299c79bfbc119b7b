"""Wide → long: turn a MetricBatch into the public points table (``POINTS_SCHEMA``).

Everything here is a handful of whole-column operations: one ``melt`` over the metric columns (a
loop per *metric*, never per point), one ``take`` per label column on dictionary indices, and a
concatenation with the already-long labeled rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.schema import (
    ENRICHED_LABELS,
    ENTITY_LABELS,
    LABEL_TYPE,
    METRIC_LABELS,
    METRIC_TYPE,
    POINTS_SCHEMA,
    TIME,
    TYPE_TYPE,
)


def melt(columns: Sequence[pa.Array]) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Long form of equally long columns: (row index, column index, value) of every non-null cell.

    Cells come out column by column, rows ascending within a column.
    """
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    values: list[pa.Array] = []
    for j, column in enumerate(columns):
        if column.null_count == len(column):
            continue
        if column.null_count == 0:
            idx = np.arange(len(column), dtype=np.int64)
            values.append(column)
        else:
            idx = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
            values.append(column.drop_null())
        rows.append(idx)
        cols.append(np.full(len(idx), j, dtype=np.int16))
    if not rows:
        typ = columns[0].type if columns else pa.int64()
        return np.empty(0, np.int64), np.empty(0, np.int16), pa.array([], typ)
    return np.concatenate(rows), np.concatenate(cols), pa.concat_arrays(values)


def _encode(column: pa.ChunkedArray | pa.Array, index: pa.Array, index_type: pa.DataType) -> pa.Array:
    """Dictionary-encode ``column`` once, then gather its indices at ``index`` (no string copies)."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks() if encoded.num_chunks else pa.array([], column.type).dictionary_encode()
    indices = encoded.indices.take(index).cast(index_type)
    return pa.DictionaryArray.from_arrays(indices, encoded.dictionary)


def metric_columns(entities: pa.Table) -> tuple[list[str], list[str]]:
    """(int64 metric columns, float64 metric columns) of an entity table, in table order.

    Every numeric column is a metric: the decoder's int64 ones, and what processors add (rates,
    requests, ``<resource>/request``, autoscaling ratios); keys and labels are strings.
    """
    ints = [f.name for f in entities.schema if pa.types.is_integer(f.type)]
    floats = [f.name for f in entities.schema if pa.types.is_floating(f.type)]
    return ints, floats


def label_columns(entities: pa.Table) -> list[str]:
    """String columns beyond Heapster's: labels copied with ``--store_label`` (after enrichment)."""
    known = {"type", *ENTITY_LABELS, *ENRICHED_LABELS}
    return [f.name for f in entities.schema if pa.types.is_string(f.type) and f.name not in known]


def points_schema(extra_labels: Sequence[str] = ()) -> pa.Schema:
    """``POINTS_SCHEMA`` plus one dictionary column per stored label, appended at the end."""
    return pa.schema([*POINTS_SCHEMA, *(pa.field(name, LABEL_TYPE) for name in extra_labels)])


def to_points(batch: MetricBatch, timestamp: datetime) -> pa.Table:
    """The public long-form points table of ``batch``, stamped with the window end ``timestamp``."""
    return points_with_entities(batch, timestamp)[0]


def points_with_entities(batch: MetricBatch, timestamp: datetime) -> tuple[pa.Table, np.ndarray]:
    """:func:`to_points` and, for each point, the row of ``batch.entities`` it was taken from.

    The row says which points share their entity's labels and times without comparing any of
    them: the DuckDB sink stores those once per entity (``Window.point_entities``).
    """
    entities = batch.entities
    int_names, float_names = metric_columns(entities)
    names = [*int_names, *float_names]
    int_rows, int_cols, int_values = melt([entities.column(n).combine_chunks() for n in int_names])
    float_rows, float_cols, float_values = melt(
        [entities.column(n).combine_chunks().cast(pa.float64()) for n in float_names]
    )
    rows = np.concatenate([int_rows, float_rows])
    cols = np.concatenate([int_cols, float_cols + len(int_names)]).astype(np.int16)
    labeled = batch.labeled.combine_chunks()
    n_plain, n_labeled = len(rows), labeled.num_rows
    n = n_plain + n_labeled
    extra = label_columns(entities)

    entity_rows = np.concatenate([rows, labeled.column("entity").to_numpy()]).astype(np.int64, copy=False)
    entity_index = pa.array(entity_rows, pa.int64())
    metric = pa.chunked_array(
        [
            pa.DictionaryArray.from_arrays(pa.array(cols, pa.int16()), pa.array(names, pa.string())),
            *labeled.column("metric").chunks,
        ],
        METRIC_TYPE,
    )

    def metric_label(label: str) -> pa.Array:
        chunks = labeled.column(label).chunks
        if all(chunk.null_count == len(chunk) for chunk in chunks):
            return no_label
        return _unified(pa.chunked_array([pa.nulls(n_plain, LABEL_TYPE), *chunks], LABEL_TYPE))

    no_label = pa.nulls(n, LABEL_TYPE)  # one shared all-null column: Arrow arrays are immutable
    # Independent whole-column gathers; pyarrow releases the GIL, so they run side by side.
    tasks: dict[str, Callable[[], pa.Array]] = {
        "timestamp": partial(_constant_time, timestamp, n),
        "type": partial(_encode, entities.column("type"), entity_index, TYPE_TYPE.index_type),
        "metric": partial(_unified, metric),
        "value": lambda: pa.concat_arrays(
            [
                int_values.cast(pa.float64(), safe=False),
                float_values.cast(pa.float64()),
                *labeled.column("value").chunks,
            ]
        ),
        "value_int": lambda: pa.concat_arrays(
            [
                int_values.cast(pa.int64()),
                pa.nulls(len(float_values), pa.int64()),
                *labeled.column("value_int").cast(pa.int64()).chunks,
            ]
        ),
        **{label: partial(_encode, entities.column(label), entity_index, pa.int32()) for label in ENTITY_LABELS},
        **{label: partial(metric_label, label) for label in METRIC_LABELS},
        **{
            label: partial(_encode, entities.column(label), entity_index, pa.int32())
            for label in (*ENRICHED_LABELS, *extra)
            if label in entities.column_names
        },
        "sample_time": partial(entities.column("sample_time").take, entity_index),
        "start_time": partial(entities.column("start_time").take, entity_index),
    }
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
        columns = {name: future.result() for name, future in futures.items()}
    for label in ENRICHED_LABELS:
        columns.setdefault(label, no_label)
    return pa.Table.from_pydict(columns, schema=points_schema(extra)), entity_rows


def _constant_time(stamp: datetime, n: int) -> pa.Array:
    """A timestamp column holding one value, built straight from a numpy buffer."""
    millis = int(stamp.timestamp() * 1000)
    return pa.Array.from_buffers(TIME, n, [None, pa.py_buffer(np.full(n, millis, dtype=np.int64))])


def _unified(column: pa.ChunkedArray) -> pa.Array:
    """One dictionary array from chunks that each carry their own dictionary."""
    return pa.table({"c": column}).unify_dictionaries().column("c").combine_chunks()
