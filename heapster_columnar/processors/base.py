"""What every processor sees and returns, and the one rule that keeps them composable.

A window reaches the processors as :class:`Frames`: the entity rows (one per node, system
container, pod, container; later also namespaces and the cluster) as a Polars DataFrame with one
column per plain metric, and the labeled metrics (filesystem, accelerator, custom) as the decoder's
long Arrow table whose ``entity`` column is a row index into ``entities``. The labeled table stays
Arrow: it is ten times the rows of the entity frame (4 M at 5,000 nodes) and only the pod
aggregator reads a few of them (custom metrics); converting it to Polars and back cost 150 MiB and
a copy of every row per window.

The rule: a processor may **add columns** and **append rows** to ``entities`` and may append rows
to ``labeled``, but never reorders or removes existing entity rows, so every ``entity`` index in
``labeled`` stays valid through the chain without re-mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import polars as pl
import pyarrow as pa

from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.catalogue import EntityType
from heapster_columnar.model.dimensions import Dimensions

# Columns of the entity frame that identify an entity (Heapster's MetricSet key, HEAPSTER.md §2d,
# plus the node for pods and containers, which the kubelet that reported them knows).
KEY_COLUMNS: tuple[str, ...] = ("type", "nodename", "namespace_name", "pod_name", "container_name")
POD_KEY: tuple[str, ...] = ("namespace_name", "pod_name")
CONTAINER_KEY: tuple[str, ...] = (*POD_KEY, "container_name")
NODE, SYS_CONTAINER, POD, CONTAINER, NS, CLUSTER = (t.value for t in EntityType)


@dataclass(frozen=True, slots=True)
class Frames:
    """One window inside the processor chain."""

    timestamp: datetime  # the window end (Heapster's batch timestamp)
    entities: pl.DataFrame
    labeled: pa.Table  # LABELED_SCHEMA

    @classmethod
    def of(cls, batch: MetricBatch, timestamp: datetime) -> Frames:
        entities = pl.from_arrow(batch.entities)
        assert isinstance(entities, pl.DataFrame)
        return cls(timestamp, entities, batch.labeled)

    def with_entities(self, entities: pl.DataFrame) -> Frames:
        if entities.height < self.entities.height:
            raise AssertionError("a processor removed entity rows (labeled rows point at them by index)")
        return replace(self, entities=entities)

    def with_labeled(self, labeled: pa.Table) -> Frames:
        return replace(self, labeled=labeled)

    def to_batch(self) -> MetricBatch:
        """Back to Arrow for the sinks: strings as ``string`` (Polars hands out ``large_string``)."""
        entities = self.entities.to_arrow(compat_level=pl.CompatLevel.oldest())
        fields = [
            pa.field(f.name, pa.string(), f.nullable) if pa.types.is_large_string(f.type) else f
            for f in entities.schema
        ]
        return MetricBatch(entities.cast(pa.schema(fields)), self.labeled)


_SEED = 0x5EED


def key_hash(columns: Sequence[str]) -> pl.Expr:
    """One 64-bit hash of a multi-column key: joins on it run ~3x faster than on the strings."""
    return pl.struct(list(columns)).hash(_SEED)


def lookup(left: pl.DataFrame, right: pl.DataFrame, on: Sequence[str], columns: Sequence[str]) -> pl.DataFrame:
    """For every row of ``left``, ``columns`` of the ``right`` row with the same key ``on`` (null where
    there is none, or where a key column is null): same height and order as ``left``.

    Right keys should be unique; if not, the last row of a key wins. The join runs on a hash of the
    key and then checks the key itself, so a hash collision can cost a match but never pair two
    different entities; if two different right keys share a hash, it joins on the key columns.
    """
    keys = [f"_key{i}" for i in range(len(on))]
    right_keys = right.select(
        key_hash(on).alias("_hash"), *(pl.col(c).alias(k) for c, k in zip(on, keys, strict=True)), *columns
    )
    if right_keys["_hash"].n_unique() != right_keys.height:
        right_keys = right_keys.unique(subset=keys, keep="last")
        if right_keys["_hash"].n_unique() != right_keys.height:  # a real collision (p ~ 1e-9)
            exact = right_keys.drop("_hash").rename(dict(zip(keys, on, strict=True)))
            joined = left.select(on).join(exact, on=list(on), how="left", maintain_order="left", nulls_equal=False)
            return joined.select(columns)
    joined = left.select(key_hash(on).alias("_hash"), *on).join(
        right_keys, on="_hash", how="left", maintain_order="left"
    )
    same = pl.all_horizontal([pl.col(c) == pl.col(k) for c, k in zip(on, keys, strict=True)])
    return joined.select(pl.when(same).then(pl.col(c)).alias(c) for c in columns)


def append_rows(frame: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``rows`` below it. ``rows`` is first shaped like ``frame`` (missing columns null,
    same types and order), so the append is a zero-copy ``vstack``; ``pl.concat(how="diagonal_relaxed")``
    copied the whole 415 k-row frame to add one cluster row. Columns only ``rows`` has are added."""
    if rows.height == 0:
        return frame
    new = [c for c in rows.columns if c not in frame.columns]
    if new:
        frame = frame.with_columns(pl.lit(None, rows.schema[c]).alias(c) for c in new)
    shaped = rows.select(
        (pl.col(c) if c in rows.columns else pl.lit(None)).cast(dtype).alias(c) for c, dtype in frame.schema.items()
    )
    return frame.vstack(shaped)


def scatter(entities: pl.DataFrame, rows: pl.Series, values: pl.DataFrame) -> pl.DataFrame:
    """Write ``values`` (one row per index in ``rows``) into those rows of ``entities``, column by
    column; other rows keep their value (or null, for a new column). For stages that touch a few
    rows (nodes, namespaces, pods) this beats a when/then over all 415 k rows."""
    columns = []
    for name, dtype in values.schema.items():  # a loop over columns, each one whole-column
        if name in entities.columns:
            column = entities.get_column(name).clone()
        else:
            column = pl.Series(name, [], dtype).extend_constant(None, entities.height)
        column.scatter(rows, values.get_column(name).cast(column.dtype))
        columns.append(column)
    return entities.with_columns(columns)


def set_where(where: pl.Expr, value: str, name: str, columns: Sequence[str]) -> pl.Expr:
    """Column ``name`` := ``value`` on the rows matching ``where``, unchanged (or null) elsewhere;
    stored label columns are written by more than one stage and must not erase each other."""
    otherwise = pl.col(name) if name in columns else pl.lit(None, pl.String)
    return pl.when(where).then(pl.col(value)).otherwise(otherwise).alias(name)


class Processor(Protocol):
    """One stage. ``name`` appears in timings and failure reports; ``skippable`` says whether the
    window may go on without this stage when it raises (see ``chain.py``)."""

    name: str
    skippable: bool

    def process(self, frames: Frames, dimensions: Dimensions) -> Frames: ...
