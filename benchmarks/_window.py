"""Shared by the sink benchmarks: one processed window of a synthetic cluster (the simulator's
documents and Pod objects, Heapster's chain, the points table), cached on disk.

Building 5,000 nodes takes ~1 minute (two windows are decoded so the second has rates); the
points and the API tables are kept as Arrow IPC files under ``$TMPDIR/heapster-bench-window-N``
so the next benchmark run starts in seconds. The cache is keyed by node and pod counts, this
package's version and a digest of the table schemas (a new column rebuilds it); delete the
directory to rebuild otherwise.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.feather as feather

from heapster_columnar import __version__
from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.dimensions import (
    CONTAINERS_SCHEMA,
    NAMESPACES_SCHEMA,
    NODES_SCHEMA,
    PODS_SCHEMA,
    Dimensions,
)
from heapster_columnar.model.points import points_with_entities
from heapster_columnar.model.schema import POINTS_SCHEMA
from heapster_columnar.model.window import Window
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.simulator.cluster import prepare_nodes
from heapster_columnar.simulator.objects import namespace_object, node_object
from heapster_columnar.simulator.payloads import NodeShape
from heapster_columnar.sources.objects import namespaces_table, nodes_table, pods_tables
from heapster_columnar.sources.summary import decode_summaries

AT = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp())
STEP = 15
_TABLES = ("points", "point_entities", "entities", "labeled", "pods", "containers", "namespaces", "nodes")
_SCHEMAS = (POINTS_SCHEMA, PODS_SCHEMA, CONTAINERS_SCHEMA, NAMESPACES_SCHEMA, NODES_SCHEMA)
_DIGEST = hashlib.sha1("".join(str(s) for s in _SCHEMAS).encode()).hexdigest()[:8]


def bench_window(nodes: int, pods_per_node: int = 30) -> Window:
    """The second window (with rates) of ``nodes`` x ``pods_per_node``, ending at 2024-06-01T00:00:30Z."""
    cache = Path(tempfile.gettempdir()) / f"heapster-bench-window-{nodes}x{pods_per_node}-{__version__}-{_DIGEST}"
    if not all((cache / f"{name}.arrow").exists() for name in _TABLES):
        _build(nodes, pods_per_node, cache)
    tables = {name: feather.read_table(cache / f"{name}.arrow", memory_map=False) for name in _TABLES}
    # One chunk, as ``to_points`` makes it (the file holds 64 Ki-row batches, each with a copy of
    # every dictionary).
    tables["points"] = tables["points"].combine_chunks()
    end = datetime.fromtimestamp(AT + 2 * STEP, UTC)
    dimensions = Dimensions(tables["pods"], tables["containers"], tables["namespaces"], tables["nodes"])
    batch = MetricBatch(tables["entities"], tables["labeled"])
    entities = tables["point_entities"].column(0).to_numpy()
    start = end - timedelta(seconds=STEP)
    return Window(start, end, batch, tables["points"], nodes, {}, {}, dimensions, point_entities=entities)


def _build(nodes: int, pods_per_node: int, cache: Path) -> None:
    print(f"building a {nodes}-node window (cached in {cache})", flush=True)
    shape = NodeShape(pods_per_node=pods_per_node, memory_wave=False)
    pods: list[dict[str, Any]] = []
    templates = []
    for first in range(0, nodes, 100):
        for node_pods, template in prepare_nodes(range(first, min(first + 100, nodes)), shape, {}, AT):
            pods.extend(node_pods)
            templates.append(template)
    pod_table, container_table = pods_tables(pods)
    namespaces = sorted({p["metadata"]["namespace"] for p in pods})
    created = datetime(2024, 1, 1, tzinfo=UTC)
    dims = Dimensions(
        pod_table,
        container_table,
        namespaces_table([namespace_object(n, seed=0) for n in namespaces]),
        nodes_table([node_object(i, shape=shape, port=10250, ready=True, created=created) for i in range(nodes)]),
    )
    pipeline = Pipeline.heapster()
    batch = None
    for k in (1, 2):
        second = AT + STEP * k
        now = datetime.fromtimestamp(second, UTC)
        decoded = decode_summaries([t.render(second) for t in templates if t is not None], now=now).batch
        batch = pipeline.process(decoded, now, dims).to_batch()
    assert batch is not None
    points, point_entities = points_with_entities(batch, datetime.fromtimestamp(AT + 2 * STEP, UTC))
    tables: dict[str, pa.Table] = {
        "points": points,
        "point_entities": pa.table({"row": point_entities}),
        "entities": batch.entities,
        "labeled": batch.labeled,
        "pods": dims.pods,
        "containers": dims.containers,
        "namespaces": dims.namespaces,
        "nodes": dims.nodes,
    }
    cache.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        feather.write_feather(table, cache / f".{name}.arrow", compression="uncompressed")
        (cache / f".{name}.arrow").rename(cache / f"{name}.arrow")
