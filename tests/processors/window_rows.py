"""Hand-made windows for processor tests: rows as dicts, every other column null.

A helper module, not a conftest: the root conftest is imported by name from other tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa

from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.schema import LABELED_SCHEMA, entity_schema
from heapster_columnar.processors.base import Frames

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def make_frames(
    rows: Sequence[dict[str, Any]], *, labeled: Sequence[dict[str, Any]] = (), timestamp: datetime = T0
) -> Frames:
    """A window of the given entity rows (keys: entity schema columns, or extra metric columns such
    as ``cpu/usage_rate`` / ``cpu/request`` as Int64), and labeled rows (entity, metric, value...)."""
    base = Frames.of(MetricBatch(entity_schema().empty_table(), LABELED_SCHEMA.empty_table()), timestamp)
    extra = {k for row in rows for k in row if k not in base.entities.columns}
    schema = dict(base.entities.schema) | {k: pl.Int64() for k in sorted(extra)}
    full = [{k: row.get(k) for k in schema} for row in rows]
    entities = pl.DataFrame(full, schema=schema, orient="row") if full else pl.DataFrame(schema=schema)
    labeled_rows = [
        {"entity": r["entity"], "metric": r["metric"], "value_int": r.get("value_int"), "value": r["value"]}
        for r in labeled
    ]
    labeled_frame = pa.Table.from_pylist(labeled_rows, schema=LABELED_SCHEMA)
    return Frames(timestamp, entities, labeled_frame)


def row_of(frames: Frames, **key: Any) -> dict[str, Any]:
    """The one entity row matching ``key`` (None matches null)."""
    matches = [r for r in frames.entities.to_dicts() if all(r.get(k) == v for k, v in key.items())]
    assert len(matches) == 1, f"{len(matches)} rows match {key}"
    return matches[0]
