"""Heapster's model API (HEAPSTER.md §8.1, §8.3) under ``/api/v1/model``, with JSON shapes old
clients parse, from the in-memory windows and, for older ranges, the durable history.

Series come from three places, newest first: the whole windows the memory sink keeps (~140 s,
every metric), its 15-minute series store (CPU and memory), and — when a Parquet or DuckDB sink is
configured — the stored history, so a range older than memory is answered transparently (what
Heapster's separate "historical" API tried to do against InfluxDB). Entity lookups use a per-window
index over its entity rows (``entity_index.py``), never a scan of a window's 13 M points.

Deviations from Heapster, on purpose (docs/deviations.md): values are exact — integers for
integer metrics, JSON numbers with their fraction for float metrics (Heapster truncated floats to
unsigned integers, so negative values wrapped); an unknown metric, entity, bad time or an end
before the start is a 4xx with a JSON message (Heapster returned empty results or a 500); node
routes use the Kubernetes node name (Heapster's used the ``hostname`` label, equal on most
clusters); the aggregation routes are served on the model API itself for every range.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from aiohttp import web

from heapster_columnar.api.entity_index import EntityIndex, IndexCache
from heapster_columnar.model import catalogue
from heapster_columnar.model.points import metric_columns
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.memory import MemorySink

__all__ = ["HistoryReader", "ModelApi", "add_model_routes"]

ZERO_TIME = "0001-01-01T00:00:00Z"
ALIASES = {
    "cpu-usage": "cpu/usage_rate",
    "cpu-limit": "cpu/limit",
    "memory-limit": "memory/limit",
    "memory-usage": "memory/usage",
    "memory-working": "memory/working_set",
}
LABEL_COLUMNS = {"resource_id": "resource_id", "make": "make", "model": "model", "accelerator_id": "accelerator_id"}
AGGREGATIONS = ("average", "max", "min", "median", "count", "50-perc", "95-perc", "99-perc")
_BUCKET_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

Entity = tuple[str, str | None, str | None, str | None, str | None]  # type, node, namespace, pod, container


class HistoryReader(Protocol):
    """Stored points (a durable sink's data) for one entity and metric in ``[start, end)``."""

    def points(self, entity: Entity, metric: str, start: datetime | None, end: datetime) -> pa.Table: ...


class BadRequest(ValueError):
    pass


class NotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Query:
    entity: Entity
    metric: str
    start: datetime | None
    end: datetime | None
    labels: dict[str, str]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(text: str | None, name: str) -> datetime | None:
    if text is None or text == "":
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}={text!r} is not an RFC 3339 time (like 2024-01-01T00:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _labels(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in filter(None, (text or "").split(",")):
        key, sep, value = pair.partition(":")
        if not sep or not key:
            raise BadRequest(f"labels: {pair!r} is not key:value")
        if key not in LABEL_COLUMNS:
            raise BadRequest(f"labels: unknown label {key!r} (known: {', '.join(LABEL_COLUMNS)})")
        out[key] = value
    return out


def _metric(name: str) -> str:
    name = ALIASES.get(name, name)
    if name.startswith(catalogue.CUSTOM_PREFIX) or name.endswith(catalogue.REQUEST_SUFFIX):
        return name
    try:
        catalogue.get(name)
    except KeyError:
        raise BadRequest(f"unknown metric {name!r}") from None
    return name


def _bucket(text: str | None) -> float | None:
    if not text:
        return None
    for unit in ("ms", "s", "m", "h", "d"):
        number = text.removesuffix(unit)
        if number != text and number.isdigit() and int(number) > 0:
            return int(number) * _BUCKET_UNITS[unit]
    raise BadRequest(f"bucket={text!r} is not a positive integer followed by ms, s, m, h or d")


class ModelApi:
    def __init__(self, memory: MemorySink, history: HistoryReader | None = None) -> None:
        self.memory, self.history = memory, history
        self._indices = IndexCache()
        self._pod_nodes: tuple[Window, dict[tuple[str, str], str | None]] | None = None

    # --- data -------------------------------------------------------------------------------------

    def _tables(self) -> list[tuple[datetime, pa.Table, pa.Table | None]]:
        """(window end, entity rows, labeled rows or None): whole windows, then series-store windows."""
        windows = self.memory.windows()
        ends = {w.end for w in windows}
        tables: list[tuple[datetime, pa.Table, pa.Table | None]] = [
            (w.end, w.batch.entities, w.batch.labeled) for w in windows
        ]
        tables += [(end, table, None) for end, table in self.memory.series_tables() if end not in ends]
        self._indices.keep([t for _, t, _ in tables])
        return tables

    def latest(self) -> Window:
        latest = self.memory.latest()
        if latest is None:
            raise NotFound("no window has been collected yet")
        return latest

    def series(self, query: Query) -> pl.DataFrame:
        """timestamp, value_int, value of the query's points, oldest first, one per timestamp."""
        stamps: list[datetime] = []
        ints: list[int | None] = []
        floats: list[float | None] = []
        earliest: datetime | None = None
        for end, entities, labeled in self._tables():  # a loop per kept window (<= 60), not per point
            earliest = end if earliest is None or end < earliest else earliest
            if (query.start is not None and end < query.start) or (query.end is not None and end > query.end):
                continue
            index = self._indices.get(entities)
            rows = index.rows(query.entity)
            for value_int, value in self._values(index, labeled, rows, query):
                stamps.append(end)
                ints.append(value_int)
                floats.append(value)
        frame = pl.DataFrame(
            {"timestamp": stamps, "value_int": ints, "value": floats},
            schema={"timestamp": pl.Datetime("ms", "UTC"), "value_int": pl.Int64, "value": pl.Float64},
        )
        if self.history is not None and (query.start is None or earliest is None or query.start < earliest):
            until = earliest or query.end or datetime.now(UTC)
            stored = self.history.points(query.entity, query.metric, query.start, until)
            stored = self._select_points(stored, query)
            if stored.num_rows:
                old = pl.from_arrow(stored.select(["timestamp", "value_int", "value"]))
                assert isinstance(old, pl.DataFrame)
                frame = pl.concat([frame, old], how="vertical_relaxed")
        return frame.unique("timestamp", keep="first", maintain_order=True).sort("timestamp")

    @staticmethod
    def _values(
        index: EntityIndex, labeled: pa.Table | None, rows: np.ndarray, query: Query
    ) -> list[tuple[int | None, float | None]]:
        """(exact int or None, float) per matching point of ``rows`` (normally one row)."""
        entities = index.table
        if len(rows) == 0:
            return []
        if not query.labels and query.metric in entities.column_names:
            values = index.values(query.metric, rows)
            if pa.types.is_integer(entities.schema.field(query.metric).type):
                return [(int(v), float(v)) for v in values if isinstance(v, int)]
            return [(None, float(v)) for v in values if isinstance(v, int | float)]
        if labeled is None or labeled.num_rows == 0:
            return []
        mask = pc.and_(
            pc.is_in(labeled.column("entity"), value_set=pa.array(rows, pa.int64())),
            pc.equal(labeled.column("metric").cast(pa.string()), query.metric),
        )
        for key, value in query.labels.items():
            label = pc.equal(labeled.column(LABEL_COLUMNS[key]).cast(pa.string()), value)
            mask = pc.and_(mask, pc.fill_null(label, False))
        found = labeled.filter(mask)
        return list(zip(found.column("value_int").to_pylist(), found.column("value").to_pylist(), strict=True))

    @staticmethod
    def _select_points(rows: pa.Table, query: Query) -> pa.Table:
        """Stored points of the entity narrowed to the metric, labels and range."""
        if rows.num_rows == 0:
            return rows
        stamp = pa.timestamp("ms", "UTC")
        mask = pc.equal(rows.column("metric").cast(pa.string()), query.metric)
        for key, value in query.labels.items():
            label = pc.equal(rows.column(LABEL_COLUMNS[key]).cast(pa.string()), value)
            mask = pc.and_(mask, pc.fill_null(label, False))
        if query.start is not None:
            mask = pc.and_(mask, pc.greater_equal(rows.column("timestamp"), pa.scalar(query.start, stamp)))
        if query.end is not None:
            mask = pc.and_(mask, pc.less_equal(rows.column("timestamp"), pa.scalar(query.end, stamp)))
        return rows.filter(mask)

    def pod_nodes(self) -> dict[tuple[str, str], str | None]:
        """(namespace, pod) -> node of the newest window, built once per window (150 k pods: ~0.1 s)."""
        latest = self.latest()
        cached = self._pod_nodes
        if cached is not None and cached[0] is latest:
            return cached[1]
        entities = pl.from_arrow(latest.batch.entities.select(["type", "nodename", "namespace_name", "pod_name"]))
        assert isinstance(entities, pl.DataFrame)
        pods = entities.filter(pl.col("type") == "pod")
        keys = zip(pods.get_column("namespace_name").to_list(), pods.get_column("pod_name").to_list(), strict=True)
        mapping = dict(zip(keys, pods.get_column("nodename").to_list(), strict=True))
        self._pod_nodes = (latest, mapping)
        return mapping

    def metric_names(self, entity: Entity) -> list[str]:
        latest = self.latest()
        entities, labeled = latest.batch.entities, latest.batch.labeled
        rows = self._indices.get(entities).rows(entity)
        if len(rows) == 0:
            raise NotFound(f"no {entity[0]} {'/'.join(v for v in entity[1:] if v)} in the newest window")
        ints, floats = metric_columns(entities)
        picked = entities.select([*ints, *floats]).take(pa.array(rows))
        names = {name for name in picked.column_names if picked.column(name).null_count < picked.num_rows}
        in_labeled = labeled.filter(pc.is_in(labeled.column("entity"), value_set=pa.array(rows, pa.int64())))
        names |= set(pc.unique(in_labeled.column("metric").cast(pa.string())).to_pylist())
        return sorted(names)

    def names(self, entity_type: str, column: str, **where: str) -> list[str]:
        entities = pl.from_arrow(self.latest().batch.entities.select(["type", *where, column]))
        assert isinstance(entities, pl.DataFrame)
        mask = pl.col("type") == entity_type
        for key, value in where.items():
            mask &= pl.col(key) == value
        found = entities.filter(mask)
        if found.height == 0 and where:
            raise NotFound(f"nothing under {', '.join(f'{k}={v}' for k, v in where.items())} in the newest window")
        return sorted(found.get_column(column).drop_nulls().unique().to_list())

    # --- JSON shapes --------------------------------------------------------------------------------

    def result(self, query: Query) -> dict[str, Any]:
        frame = self.series(query)
        is_int = frame.get_column("value_int").null_count() < frame.height if frame.height else False
        values = frame.get_column("value_int" if is_int else "value").to_list()
        stamps = [_rfc3339(t) for t in frame.get_column("timestamp").to_list()]  # per point of one series
        metrics = [{"timestamp": t, "value": v} for t, v in zip(stamps, values, strict=True)]
        return {"metrics": metrics, "latestTimestamp": stamps[-1] if stamps else ZERO_TIME}

    def aggregated(self, query: Query, aggregations: Sequence[str], bucket: float | None) -> dict[str, Any]:
        if query.start is None:
            raise BadRequest("start is required for aggregations")
        frame = self.series(query)
        is_int = frame.height > 0 and frame.get_column("value_int").null_count() < frame.height
        value = pl.col("value_int" if is_int else "value")
        span = ((query.end or datetime.now(UTC)) - query.start).total_seconds()
        size = bucket or max(span, 1.0)
        start_ms = int(query.start.timestamp() * 1000)
        bucket_of = (pl.col("timestamp").dt.epoch("ms") - start_ms) // int(size * 1000) if bucket else pl.lit(0)
        frame = frame.with_columns(bucket_of.alias("_bucket"))  # no bucket: one over the whole range
        exprs = {
            "count": pl.len().alias("count"),
            "average": value.mean().alias("average"),
            "max": value.max().alias("maximum"),
            "min": value.min().alias("minimum"),
            "median": value.quantile(0.5, "nearest").alias("median"),
            "50-perc": value.quantile(0.5, "nearest").alias("p50"),
            "95-perc": value.quantile(0.95, "nearest").alias("p95"),
            "99-perc": value.quantile(0.99, "nearest").alias("p99"),
        }
        grouped = frame.group_by("_bucket").agg(*(exprs[a] for a in aggregations)).sort("_bucket")

        def number(v: Any, *, exact_int: bool) -> dict[str, Any]:
            return {"intValue": int(v)} if exact_int else {"floatValue": float(v)}

        buckets = []
        for row in grouped.iter_rows(named=True):  # one per bucket of one series
            out: dict[str, Any] = {"timestamp": _rfc3339(query.start + timedelta(seconds=row["_bucket"] * size))}
            if "count" in row:
                out["count"] = row["count"]
            for name in ("average", "maximum", "minimum", "median"):
                if name in row:
                    out[name] = number(row[name], exact_int=is_int and name != "average")
            percentiles = {k[1:]: number(row[k], exact_int=is_int) for k in ("p50", "p95", "p99") if k in row}
            if percentiles:
                out["percentiles"] = percentiles
            buckets.append(out)
        return {"buckets": buckets, "bucketSize": int(size * 1e9)}


def add_model_routes(api: ModelApi) -> Callable[[web.Application], None]:
    """The routes, for :class:`~heapster_columnar.api.server.ApiOptions` ``extra_routes``."""

    def respond(body: object) -> web.Response:
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def call(function: Callable[[], object]) -> web.Response:
        try:
            return respond(await asyncio.to_thread(function))
        except BadRequest as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        except NotFound as exc:
            raise web.HTTPNotFound(text=str(exc)) from None

    def entity_of(request: web.Request, kind: str) -> Entity:
        m = request.match_info
        if kind == "cluster":
            return ("cluster", None, None, None, None)
        if kind == "node":
            return ("node", m["node"], None, None, None)
        if kind == "freecontainer":
            return ("sys_container", m["node"], None, None, m["container"])
        if kind == "namespace":
            return ("ns", None, m["namespace"], None, None)
        node = _node_of(api, m["namespace"], m["pod"])
        if kind == "pod":
            return ("pod", node, m["namespace"], m["pod"], None)
        return ("pod_container", node, m["namespace"], m["pod"], m["container"])

    def query_of(request: web.Request, entity: Entity) -> Query:
        start, end = _time(request.query.get("start"), "start"), _time(request.query.get("end"), "end")
        if start is not None and end is not None and end < start:
            raise BadRequest(f"end {request.query['end']} is before start {request.query['start']}")
        return Query(entity, _metric(request.match_info["metric"]), start, end, _labels(request.query.get("labels")))

    def series_handler(kind: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return await call(lambda: api.result(query_of(request, entity_of(request, kind))))

        return handler

    def aggregated_handler(kind: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            names = request.match_info["aggregations"].split(",")
            unknown = [n for n in names if n not in AGGREGATIONS]

            def run() -> object:
                if unknown:
                    raise BadRequest(f"unknown aggregation {unknown[0]!r} (known: {', '.join(AGGREGATIONS)})")
                return api.aggregated(
                    query_of(request, entity_of(request, kind)), names, _bucket(request.query.get("bucket"))
                )

            return await call(run)

        return handler

    def names_handler(kind: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return await call(lambda: api.metric_names(entity_of(request, kind)))

        return handler

    async def pod_list(request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        pods = [p for p in request.match_info["pods"].split(",") if p]

        def run() -> object:
            items = []
            for pod in pods:  # one series per pod the client listed
                entity: Entity = ("pod", _node_of(api, namespace, pod), namespace, pod, None)
                items.append(api.result(query_of(request, entity)))
            return {"items": items}

        return await call(run)

    def listing(function: Callable[[web.Request], object]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return await call(lambda: function(request))

        return handler

    def add(app: web.Application) -> None:
        get = app.router.add_get
        base = "/api/v1/model"
        scopes = {
            "cluster": "",
            "node": "/nodes/{node}",
            "freecontainer": "/nodes/{node}/freecontainers/{container}",
            "namespace": "/namespaces/{namespace}",
            "pod": "/namespaces/{namespace}/pods/{pod}",
            "container": "/namespaces/{namespace}/pods/{pod}/containers/{container}",
        }
        for kind, scope in scopes.items():
            get(f"{base}{scope}/metrics", names_handler(kind))
            get(f"{base}{scope}/metrics/", names_handler(kind))
            get(f"{base}{scope}/metrics/{{metric:.+}}", series_handler(kind))
            get(f"{base}{scope}/metrics-aggregated/{{aggregations}}/{{metric:.+}}", aggregated_handler(kind))
        get(f"{base}/namespaces/{{namespace}}/pod-list/{{pods}}/metrics/{{metric:.+}}", pod_list)
        lists = {
            "/nodes": lambda r: api.names("node", "nodename"),
            "/namespaces": lambda r: api.names("ns", "namespace_name"),
            "/namespaces/{namespace}/pods": lambda r: api.names(
                "pod", "pod_name", namespace_name=r.match_info["namespace"]
            ),
            "/namespaces/{namespace}/pods/{pod}/containers": lambda r: api.names(
                "pod_container",
                "container_name",
                namespace_name=r.match_info["namespace"],
                pod_name=r.match_info["pod"],
            ),
            "/nodes/{node}/freecontainers": lambda r: api.names(
                "sys_container", "container_name", nodename=r.match_info["node"]
            ),
        }
        for path, function in lists.items():
            get(f"{base}{path}", listing(function))
            get(f"{base}{path}/", listing(function))

    return add


def _node_of(api: ModelApi, namespace: str, pod: str) -> str | None:
    """A pod's node in the newest window (part of the entity key); unknown pods are a 404."""
    nodes = api.pod_nodes()
    if (namespace, pod) not in nodes:
        raise NotFound(f"pod {namespace}/{pod} is not in the newest window")
    return nodes[(namespace, pod)]
