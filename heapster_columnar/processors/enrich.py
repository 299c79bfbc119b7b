"""Pod and namespace enrichers (HEAPSTER.md §5.2, §5.3): joins against the API's dimension tables.

Each is a handful of joins over entity rows (150 k pods and ~300 k containers at 5,000 nodes), never
a loop per pod. API pods are matched on namespace/name, not on UID: static pods carry a config-hash
UID at the kubelet and a mirror-pod UID in the API (the v1.28 fixture shows it); as in Heapster the
API UID then wins for ``pod_id``.

The pod enricher also fills ``hostname`` and ``host_id`` from the nodes table: Heapster's summary
source set them while scraping; our decoder knows only the node name, so the first join with API
knowledge does it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
import pyarrow as pa

from heapster_columnar.model import catalogue
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.labels import LabelCopier
from heapster_columnar.processors.base import (
    CONTAINER,
    CONTAINER_KEY,
    NODE,
    NS,
    POD,
    POD_KEY,
    SYS_CONTAINER,
    Frames,
    append_rows,
    lookup,
    set_where,
)

# dimension column -> metric column, as Heapster names them (cpu in millicores, the rest in units)
RESOURCES = {
    "cpu_request": "cpu/request",
    "memory_request": "memory/request",
    "ephemeral_storage_request": "ephemeral_storage/request",
    "cpu_limit": "cpu/limit",
    "memory_limit": "memory/limit",
    "ephemeral_storage_limit": "ephemeral_storage/limit",
}
RESTART_COUNT = catalogue.get("restart_count").name


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _with_missing(entities: pl.DataFrame, columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Add all-null columns the decoder did not produce (label columns, request metrics)."""
    missing = [pl.lit(None, dtype).alias(name) for name, dtype in columns.items() if name not in entities.columns]
    return entities.with_columns(missing) if missing else entities


class PodEnricher:
    """pod_id, labels, stored labels, image, requests/limits, restart counts; stubs as Heapster made them."""

    name = "pod_enricher"
    skippable = True

    def __init__(self, labels: LabelCopier | None = None) -> None:
        self.labels = labels or LabelCopier()
        # The API side of the joins, rebuilt only when the dimension tables change (they are
        # replaced, never mutated, when list+watch sees a change): ~0.1 s a window saved at 150 k pods.
        self._prepared: tuple[pa.Table, pa.Table, pl.DataFrame, pl.DataFrame, list[str]] | None = None

    def _prepare(self, dimensions: Dimensions) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
        cached = self._prepared
        if cached is not None and cached[0] is dimensions.pods and cached[1] is dimensions.containers:
            return cached[2], cached[3], cached[4]
        containers, extended = self._containers(dimensions)
        counts = containers.group_by(POD_KEY).agg(pl.len().cast(pl.Int64).alias("_n_spec"))
        pods = self._pods(dimensions)
        pods = pods.hstack(lookup(pods, counts, POD_KEY, ["_n_spec"])).with_columns(pl.col("_n_spec").fill_null(0))
        self._prepared = (dimensions.pods, dimensions.containers, pods, containers, extended)
        return pods, containers, extended

    def _pods(self, dimensions: Dimensions) -> pl.DataFrame:
        """One row per API pod: key, uid, rendered labels and stored label columns."""
        pods = dimensions.pods
        stored = self.labels.stored(pods.column("labels"))
        frame = pl.DataFrame(
            {
                "namespace_name": pods.column("namespace"),
                "pod_name": pods.column("name"),
                "_uid": pods.column("uid"),
                "_labels": self.labels.render(pods.column("labels")),
                **{f"_stored:{name}": column for name, column in stored.items()},
            }
        )
        return frame

    def _containers(self, dimensions: Dimensions) -> tuple[pl.DataFrame, list[str]]:
        """One row per API spec container with Heapster's metric columns; and the extended resources."""
        containers = _frame(dimensions.containers.drop_columns(["other_requests"]))
        frame = containers.select(
            pl.col("namespace").alias("namespace_name"),
            pl.col("pod_name"),
            pl.col("name").alias("container_name"),
            pl.col("image").alias("_image"),
            pl.col("restart_count").alias("_restart_count"),
            pl.lit(True).alias("_image_matched"),
            *(pl.col(column).fill_null(0).alias(f"_{metric}") for column, metric in RESOURCES.items()),
        )
        extended: list[str] = []
        other = dimensions.containers.column("other_requests").combine_chunks()
        if len(other.keys):
            offsets = other.offsets.to_numpy()  # (list_parent_indices aborts on map arrays in pyarrow 26)
            parents = np.repeat(np.arange(len(other), dtype=np.int64), np.diff(offsets))
            keys, values = other.keys, other.items  # flattened children span offsets[0]..offsets[-1]
            requests = pl.DataFrame(
                {"_row": parents, "resource": keys[offsets[0] : offsets[-1]], "value": values[offsets[0] : offsets[-1]]}
            )
            wide = requests.pivot(on="resource", index="_row", values="value", aggregate_function="last")
            extended = [c for c in wide.columns if c != "_row"]
            wide = wide.rename({c: f"_{c}{catalogue.REQUEST_SUFFIX}" for c in extended})
            frame = (
                frame.with_row_index("_row")
                .with_columns(pl.col("_row").cast(pl.Int64))
                .join(wide.with_columns(pl.col("_row").cast(pl.Int64)), on="_row", how="left", maintain_order="left")
                .drop("_row")
            )
        return frame, [f"{name}{catalogue.REQUEST_SUFFIX}" for name in extended]

    def process(self, frames: Frames, dimensions: Dimensions) -> Frames:
        entities = _with_missing(
            frames.entities,
            {
                "hostname": pl.String(),
                "host_id": pl.String(),
                "namespace_id": pl.String(),
                "container_base_image": pl.String(),
                "labels": pl.String(),
            },
        )
        entities = _node_info(entities, dimensions)
        pods, containers, extended = self._prepare(dimensions)
        entities = _append_orphan_pods(entities, pods)
        pod_columns = [c for c in pods.columns if c.startswith("_")]
        container_columns = [c for c in containers.columns if c.startswith("_")]

        def found_for(rows: pl.DataFrame) -> pl.DataFrame:
            return lookup(rows, pods, POD_KEY, pod_columns).hstack(
                lookup(rows, containers, CONTAINER_KEY, container_columns)
            )

        found = found_for(entities)
        entities = entities.hstack(found)
        stubs = _missing_containers(entities, containers)
        if stubs.height:
            # placeholders carry requests and limits only (Heapster): no restart count of their own
            stub_found = found_for(stubs).with_columns(pl.lit(None, pl.Int64).alias("_restart_count"))
            entities = append_rows(entities, stubs.hstack(stub_found))

        is_pod, is_container = pl.col("type") == POD, pl.col("type") == CONTAINER
        of_pod = is_pod | is_container
        stored = [c for c in pods.columns if c.startswith("_stored:")]
        metrics = [*RESOURCES.values(), *extended]
        entities = _with_missing(entities, {m: pl.Int64() for m in metrics} | {RESTART_COUNT: pl.Int64()})
        entities = entities.with_columns(
            pl.when(of_pod).then(pl.coalesce("_uid", "pod_id")).otherwise("pod_id").alias("pod_id"),
            pl.when(of_pod & pl.col("_uid").is_not_null()).then("_labels").otherwise("labels").alias("labels"),
            *(set_where(of_pod, c, c.removeprefix("_stored:"), frames.entities.columns) for c in stored),
            pl.when(is_container)
            .then(pl.coalesce("container_base_image", "_image"))
            .otherwise("container_base_image")
            .alias("container_base_image"),
            pl.when(is_container)
            .then(pl.coalesce(RESTART_COUNT, "_restart_count"))
            .otherwise(RESTART_COUNT)
            .alias(RESTART_COUNT),
            *(pl.when(is_container).then(pl.coalesce(m, f"_{m}")).otherwise(pl.col(m)).alias(m) for m in metrics),
        )
        return frames.with_entities(entities.drop(found.columns))


def _node_info(entities: pl.DataFrame, dimensions: Dimensions) -> pl.DataFrame:
    """hostname (Hostname address, else the node name) and host_id for every row with a node."""
    nodes = _frame(dimensions.nodes.select(["name", "hostname", "host_id"])).rename(
        {"name": "nodename", "hostname": "_hostname", "host_id": "_host_id"}
    )
    found = lookup(entities, nodes, ["nodename"], ["_hostname", "_host_id"])
    has_node = pl.col("nodename").is_not_null() & pl.col("type").is_in([POD, CONTAINER, NODE, SYS_CONTAINER])
    return (
        entities.hstack(found)
        .with_columns(
            pl.when(has_node)
            .then(pl.coalesce("hostname", "_hostname", "nodename"))
            .otherwise("hostname")
            .alias("hostname"),
            pl.when(has_node).then(pl.coalesce("host_id", "_host_id")).otherwise("host_id").alias("host_id"),
        )
        .drop(found.columns)
    )


_CARRIED = ("nodename", "hostname", "host_id", "pod_id", "start_time", "sample_time")
_PRESENT = pl.lit(True).alias("_present")


def _append_orphan_pods(entities: pl.DataFrame, pods: pl.DataFrame) -> pl.DataFrame:
    """Heapster's pod placeholder: a pod row for an API pod seen only through its containers."""
    narrow = entities.select("type", *POD_KEY, *_CARRIED)  # filter a narrow frame, not all metrics
    container_rows = narrow.filter(pl.col("type") == CONTAINER)
    pod_rows = narrow.filter(pl.col("type") == POD).select(*POD_KEY, _PRESENT)
    known = lookup(container_rows, pods.select(*POD_KEY, _PRESENT), POD_KEY, ["_present"])["_present"]
    has_row = lookup(container_rows, pod_rows, POD_KEY, ["_present"])["_present"]
    orphans = (
        container_rows.filter(known.is_not_null() & has_row.is_null())
        .group_by(POD_KEY, maintain_order=True)
        .agg(*(pl.col(c).first() for c in _CARRIED[:4]), pl.col("start_time").min(), pl.col("sample_time").max())
        .with_columns(pl.lit(POD).alias("type"))
    )
    return append_rows(entities, orphans)


def _missing_containers(entities: pl.DataFrame, containers: pl.DataFrame) -> pl.DataFrame:
    """Heapster's container placeholders: a row (requests and limits only, filled by the caller's
    lookups) for every spec container of an API pod in the window that the kubelet did not report.

    ``entities`` already carries the lookups (``_uid``: the row's pod is known to the API,
    ``_n_spec``: its spec containers, ``_image``: the container row matched a spec container). When
    every spec container of those pods matched a container row (the usual case) there is nothing
    to add, which two sums show without the two 245 k-row lookups below.
    """
    api_pod, matched = pl.col("type") == POD, pl.col("type") == CONTAINER
    api_pod, matched = api_pod & pl.col("_uid").is_not_null(), matched & pl.col("_image_matched").fill_null(False)
    spec_count, seen_count = entities.select(pl.col("_n_spec").filter(api_pod).sum(), matched.sum()).row(0)
    if spec_count == seen_count:  # (a missing and a duplicated container would cancel out: malformed input)
        return entities.clear().select(*CONTAINER_KEY, *_CARRIED, "type")
    narrow = entities.select("type", *CONTAINER_KEY, *_CARRIED)
    pods_seen = narrow.filter(pl.col("type") == POD).select(*POD_KEY, *_CARRIED, _PRESENT)
    reported = narrow.filter(pl.col("type") == CONTAINER).select(*CONTAINER_KEY, _PRESENT)
    spec = containers.select(CONTAINER_KEY)
    of_pod = lookup(spec, pods_seen, POD_KEY, [*_CARRIED, "_present"])
    seen = lookup(spec, reported, CONTAINER_KEY, ["_present"])["_present"]
    return (
        spec.hstack(of_pod)
        .filter(pl.col("_present").is_not_null() & seen.is_null())
        .drop("_present")
        .with_columns(pl.lit(CONTAINER).alias("type"))
    )


class NamespaceEnricher:
    """namespace_id on containers, pods and namespaces; unknown namespaces stay null (Heapster warns)."""

    name = "namespace_enricher"
    skippable = True

    def process(self, frames: Frames, dimensions: Dimensions) -> Frames:
        namespaces = _frame(dimensions.namespaces.select(["name", "uid"])).rename(
            {"name": "namespace_name", "uid": "_namespace_uid"}
        )
        entities = _with_missing(frames.entities, {"namespace_id": pl.String()})
        entities = entities.hstack(lookup(entities, namespaces, ["namespace_name"], ["_namespace_uid"]))
        applies = pl.col("type").is_in([POD, CONTAINER, NS])
        entities = entities.with_columns(
            pl.when(applies)
            .then(pl.coalesce("_namespace_uid", "namespace_id"))
            .otherwise("namespace_id")
            .alias("namespace_id")
        ).drop("_namespace_uid")
        return frames.with_entities(entities)
