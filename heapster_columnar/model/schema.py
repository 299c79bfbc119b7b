"""Arrow schemas: the public points table and the internal entity table it is built from.

The **points table** (``POINTS_SCHEMA``) is the public contract that sinks write and notebooks read:
long form, one row per entity x metric x resource, label columns named as in Heapster. It is
documented with a worked example in ``docs/schema.md``.

Inside the pipeline a window travels as a :class:`~heapster_columnar.model.window.Window`: one wide
**entity table** (one row per node / system container / pod / container, one column per plain
metric) plus a long **labeled table** for filesystem, accelerator and custom metrics that points
at entity rows. ``docs/design/window-form.md`` has the measurements behind that choice.
"""

from __future__ import annotations

import pyarrow as pa

from heapster_columnar.model import catalogue

TIME = pa.timestamp("ms", tz="UTC")
LABEL_TYPE = pa.dictionary(pa.int32(), pa.string())
METRIC_TYPE = pa.dictionary(pa.int16(), pa.string())
TYPE_TYPE = pa.dictionary(pa.int8(), pa.string())

# Identity labels every entity row carries (HEAPSTER.md §2b), in column order.
ENTITY_LABELS: tuple[str, ...] = ("nodename", "namespace_name", "pod_name", "pod_id", "container_name")
# Labels only labeled metrics carry.
METRIC_LABELS: tuple[str, ...] = ("resource_id", "make", "model", "accelerator_id")
# Labels the enrichers fill (issue: processors); null straight out of the decoder.
ENRICHED_LABELS: tuple[str, ...] = ("hostname", "host_id", "namespace_id", "container_base_image", "labels")

POINTS_SCHEMA = pa.schema(
    [
        pa.field("timestamp", TIME, nullable=False).with_metadata({"doc": "batch time = window end"}),
        pa.field("type", TYPE_TYPE, nullable=False),
        pa.field("metric", METRIC_TYPE, nullable=False),
        pa.field("value", pa.float64(), nullable=False).with_metadata(
            {"doc": "the value as float64, always set (exact for ints below 2^53)"}
        ),
        pa.field("value_int", pa.int64()).with_metadata({"doc": "exact value of int64 metrics; null for double"}),
        *(pa.field(name, LABEL_TYPE) for name in ENTITY_LABELS),
        *(pa.field(name, LABEL_TYPE) for name in METRIC_LABELS),
        *(pa.field(name, LABEL_TYPE) for name in ENRICHED_LABELS),
        pa.field("sample_time", TIME).with_metadata({"doc": "kubelet sample time (Heapster ScrapeTime)"}),
        pa.field("start_time", TIME).with_metadata({"doc": "counter start (Heapster CollectionStartTime)"}),
    ]
)

ENTITY_KEY_COLUMNS: tuple[str, ...] = ("type", *ENTITY_LABELS)


def is_text(kind: pa.DataType) -> bool:
    """Strings in any Arrow form a window may carry them: plain, large, view, or dictionary-encoded."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def plain_metric_names() -> tuple[str, ...]:
    """Entity-table metric columns the decoder fills: uptime, ephemeral storage and field metrics."""
    return (
        catalogue.UPTIME.name,
        catalogue.EPHEMERAL_STORAGE_USAGE.name,
        *(m.name for m in catalogue.summary_plain_metrics()),
    )


def entity_schema() -> pa.Schema:
    """Schema of the decoder's entity table: keys, times, then one int64 column per plain metric."""
    return pa.schema(
        [
            pa.field("type", pa.string(), nullable=False),
            *(pa.field(name, pa.string()) for name in ENTITY_LABELS),
            pa.field("start_time", TIME),
            pa.field("sample_time", TIME),
            *(pa.field(name, pa.int64()) for name in plain_metric_names()),
        ]
    )


LABELED_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.int64(), nullable=False).with_metadata({"doc": "row index in the entity table"}),
        pa.field("metric", METRIC_TYPE, nullable=False),
        *(pa.field(name, LABEL_TYPE) for name in METRIC_LABELS),
        pa.field("value_int", pa.int64()),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
