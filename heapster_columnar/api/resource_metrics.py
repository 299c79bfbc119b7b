"""``metrics.k8s.io/v1beta1`` from the newest window: what ``kubectl top`` and the HPA read.

HEAPSTER.md §8.4 with the aggregated-API shape metrics-server serves (kind, apiVersion, list
metadata), so the API server's aggregation layer can front it unchanged. CPU is ``cpu/usage_rate``
(millicores), memory ``memory/working_set`` (bytes). A node is listed when its row has both; a pod
when every spec container the API knows has both (Heapster's rule: half a pod would under-report
to the autoscaler). The JSON of 150,000 pods is built by Polars column expressions, not a loop
per pod. Deviation: ``window`` is the collector's real resolution, not Heapster's hard-coded 1m.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import polars as pl
import pyarrow as pa

from heapster_columnar.api.selectors import Requirement, matches
from heapster_columnar.model.window import Window
from heapster_columnar.processors.base import lookup

__all__ = ["GROUP", "VERSION", "as_list", "discovery", "group", "node_metrics", "pod_metrics"]

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
CPU, MEMORY = "cpu/usage_rate", "memory/working_set"


def discovery() -> dict[str, object]:
    """The APIResourceList an API server asks an aggregated API for."""
    verbs = ["get", "list"]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": verbs},
            {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": verbs},
        ],
    }


def group() -> dict[str, object]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [version], "preferredVersion": version}


def go_duration(span: timedelta) -> str:
    """Go's ``time.Duration.String()`` for whole seconds: ``15s``, ``1m0s``, ``1h0m0s``."""
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _entities(window: Window, entity_type: str) -> pl.DataFrame:
    entities = window.batch.entities
    columns = [c for c in ("type", "nodename", "namespace_name", "pod_name", "container_name", CPU, MEMORY)]
    if CPU not in entities.column_names or MEMORY not in entities.column_names:
        return pl.DataFrame()
    frame = pl.from_arrow(entities.select(columns))
    assert isinstance(frame, pl.DataFrame)
    return frame.filter((pl.col("type") == entity_type) & pl.col(CPU).is_not_null() & pl.col(MEMORY).is_not_null())


def _usage() -> pl.Expr:
    return pl.struct(
        pl.format("{}m", pl.col(CPU).cast(pl.Int64)).alias("cpu"),
        pl.col(MEMORY).cast(pl.Int64).cast(pl.String).alias("memory"),
    ).alias("usage")


def node_metrics(window: Window | None, selector: list[Requirement], *, now: datetime) -> pl.DataFrame:
    """One row per listed node: ``name`` and ``json`` (its NodeMetrics object)."""
    if window is None:
        return pl.DataFrame({"name": [], "json": []}, schema={"name": pl.String, "json": pl.String})
    rows = _entities(window, "node")
    if rows.height == 0:
        return pl.DataFrame({"name": [], "json": []}, schema={"name": pl.String, "json": pl.String})
    rows = rows.rename({"nodename": "name"})
    if selector:
        nodes = window.dimensions.nodes if window.dimensions is not None else None
        if nodes is None or nodes.num_rows == 0:
            return rows.clear().select("name", pl.lit("").alias("json"))
        keep = pl.from_arrow(nodes.column("name").filter(pa.array(matches(nodes.column("labels"), selector))))
        assert isinstance(keep, pl.Series)
        rows = rows.filter(pl.col("name").is_in(keep.cast(pl.String).implode()))
    meta = pl.struct(pl.col("name"), pl.lit(_rfc3339(now)).alias("creationTimestamp")).alias("metadata")
    objects = pl.struct(
        pl.lit("NodeMetrics").alias("kind"),
        pl.lit(GROUP_VERSION).alias("apiVersion"),
        meta,
        pl.lit(_rfc3339(window.end)).alias("timestamp"),
        pl.lit(go_duration(window.end - window.start)).alias("window"),
        _usage(),
    )
    return rows.sort("name").select("name", objects.struct.json_encode().alias("json"))


def select_pods(window: Window, rows: pl.DataFrame, selector: list[Requirement]) -> pl.DataFrame:
    """The rows of :func:`pod_metrics` whose pods match ``selector`` (the API's pod labels)."""
    if not selector or rows.height == 0:
        return rows
    assert window.dimensions is not None
    table = window.dimensions.pods
    keep = pa.array(matches(table.column("labels"), selector))
    chosen = pl.from_arrow(table.select(["namespace", "name"]).filter(keep))
    assert isinstance(chosen, pl.DataFrame)
    return rows.join(chosen, on=["namespace", "name"], how="semi", maintain_order="left")


def pod_metrics(window: Window | None, *, now: datetime) -> pl.DataFrame:
    """One row per listed pod: ``namespace``, ``name`` and ``json`` (its PodMetrics object).
    Depends only on the window: the server computes it once per window and filters that."""
    empty = pl.DataFrame(schema={"namespace": pl.String, "name": pl.String, "json": pl.String})
    if window is None or window.dimensions is None:
        return empty
    containers = _entities(window, "pod_container")
    if containers.height == 0:
        return empty
    dims = window.dimensions
    spec = pl.from_arrow(dims.containers.select(["namespace", "pod_name", "name"]))
    assert isinstance(spec, pl.DataFrame)
    spec = spec.rename({"namespace": "namespace_name", "name": "container_name"})
    # The API's containers table lists each pod's containers together: a run id over the pod key is
    # the pod's number, so grouping is on an integer in order, never a sort of 300 k string keys.
    spec = spec.with_columns(pl.concat_str("namespace_name", "pod_name", separator="/").rle_id().alias("_pod"))
    usage = lookup(spec, containers, ["namespace_name", "pod_name", "container_name"], [CPU, MEMORY])
    joined = spec.hstack(usage).filter(pl.col(CPU).is_not_null().all().over("_pod"))
    encoded = joined.select(
        "_pod",
        "namespace_name",
        "pod_name",
        pl.struct(pl.col("container_name").alias("name"), _usage()).struct.json_encode().alias("c"),
    )
    grouped = encoded.group_by("_pod", maintain_order=True).agg(
        pl.col("namespace_name").first(), pl.col("pod_name").first(), pl.col("c").str.join(",")
    )
    meta = pl.struct(
        pl.col("pod_name").alias("name"),
        pl.col("namespace_name").alias("namespace"),
        pl.lit(_rfc3339(now)).alias("creationTimestamp"),
    ).alias("metadata")
    head = pl.struct(
        pl.lit("PodMetrics").alias("kind"),
        pl.lit(GROUP_VERSION).alias("apiVersion"),
        meta,
        pl.lit(_rfc3339(window.end)).alias("timestamp"),
        pl.lit(go_duration(window.end - window.start)).alias("window"),
    ).struct.json_encode()
    return grouped.select(
        pl.col("namespace_name").alias("namespace"),
        pl.col("pod_name").alias("name"),
        pl.concat_str(head.str.slice(0, head.str.len_bytes() - 1), pl.lit(',"containers":['), "c", pl.lit("]}")).alias(
            "json"
        ),
    )


def as_list(kind: str, rows: pl.DataFrame) -> bytes:
    """``NodeMetricsList`` / ``PodMetricsList`` bytes of the rows' objects."""
    head = orjson.dumps({"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {}})[:-1]
    body = rows.select(pl.col("json").str.join(",")).item() if rows.height else ""
    return head + b',"items":[' + body.encode() + b"]}"
