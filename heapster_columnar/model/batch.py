"""MetricBatch: a window's metrics in the pipeline's internal (entity-wide) form.

Heapster's DataBatch maps keys to MetricSets. Ours is two Arrow tables: ``entities`` has one row per
node / system container / pod / container with one int64 column per plain metric, and ``labeled``
holds the labeled metrics (filesystem, accelerator, custom) in long form, each row pointing at its
entity by row index. Processors work on the entity rows (150 k pods, not 8 M points); the public
long points table is made once, at the sink boundary, by :func:`heapster_columnar.model.points.to_points`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.model.schema import LABELED_SCHEMA, entity_schema, plain_metric_names


@dataclass(frozen=True, slots=True)
class MetricBatch:
    """Entity table + labeled table of one window (or of a part of one, before concatenation)."""

    entities: pa.Table
    labeled: pa.Table

    @classmethod
    def empty(cls) -> MetricBatch:
        return cls(entity_schema().empty_table(), LABELED_SCHEMA.empty_table())

    @property
    def num_points(self) -> int:
        """Points this batch turns into: non-null plain metric cells plus labeled rows."""
        columns = (self.entities.column(name) for name in plain_metric_names())
        plain: int = sum(len(col) - col.null_count for col in columns)
        return plain + int(self.labeled.num_rows)


def concat_batches(parts: Sequence[MetricBatch]) -> MetricBatch:
    """Concatenate parts (e.g. decoded chunks), re-basing each labeled row's entity index."""
    if not parts:
        return MetricBatch.empty()
    labeled: list[pa.Table] = []
    offset = 0
    for part in parts:
        if offset and part.labeled.num_rows:
            shifted = pc.add(part.labeled.column("entity"), pa.scalar(offset, pa.int64()))
            labeled.append(part.labeled.set_column(0, LABELED_SCHEMA.field("entity"), shifted))
        else:
            labeled.append(part.labeled)
        offset += part.entities.num_rows
    # One chunk, hence one dictionary per column, so group-bys and joins work without surprises
    # (unify_dictionaries would instead copy the merged dictionary into every chunk).
    return MetricBatch(
        pa.concat_tables([p.entities for p in parts]),
        pa.concat_tables(labeled).combine_chunks(),
    )
