"""Real windows for sink tests: the v1.28 minikube fixture, processed with its own pod, node and
namespace lists, so points carry labels, requests, rates and every entity type.

A helper module, not a conftest (import it by name). Consecutive windows advance the kubelet's
counters and sample times by ``step`` so the second window on has rates.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.points import points_with_entities
from heapster_columnar.model.window import Window
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.sources.objects import namespaces_table, nodes_table, pods_tables
from heapster_columnar.sources.summary import decode_summaries

SUMMARY = "summary-nri-minikube-v1.28-containerd-swap-2023.json"
T0 = datetime(2023, 11, 20, 12, 0, tzinfo=UTC)


def _items(path: Path) -> list[dict[str, Any]]:
    loaded: dict[str, list[dict[str, Any]]] = yaml.safe_load(path.read_text())
    return loaded["items"]


def fixture_dimensions(kubelet_data: Path) -> Dimensions:
    pods, containers = pods_tables(_items(kubelet_data / "list-pods-nri-minikube-v1.28-2023.yaml"))
    return Dimensions(
        pods,
        containers,
        namespaces_table(_items(kubelet_data / "list-namespaces-nri-minikube-v1.28-2023.yaml")),
        nodes_table(_items(kubelet_data / "list-nodes-nri-minikube-v1.28-2023.yaml")),
    )


def _advance(document: Any, seconds: int) -> None:
    """Every ``time`` moved ``seconds`` later and every cumulative counter up by ``seconds`` x 1000."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "time" and isinstance(value, str):
                stamp = datetime.fromisoformat(value.replace("Z", "+00:00")) + timedelta(seconds=seconds)
                document[key] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
            elif key in ("usageCoreNanoSeconds", "rxBytes", "txBytes") and isinstance(value, int):
                document[key] = value + seconds * 1000
            else:
                _advance(value, seconds)
    elif isinstance(document, list):
        for item in document:
            _advance(item, seconds)


def fixture_windows(
    kubelet_data: Path, count: int, step: timedelta = timedelta(seconds=15), *, start: datetime = T0
) -> list[Window]:
    """``count`` consecutive windows ending at ``start``, ``start + step``, ..."""
    dimensions = fixture_dimensions(kubelet_data)
    document = json.loads((kubelet_data / SUMMARY).read_text())
    pipeline, out = Pipeline.heapster(), []
    for k in range(count):
        end = start + k * step
        if k:
            _advance(document, int(step.total_seconds()))
        body = json.dumps(document).encode()
        processed = pipeline.process(decode_summaries([body], now=end).batch, end, dimensions)
        assert not processed.failures, processed.failures
        batch = processed.to_batch()
        points, entities = points_with_entities(batch, end)
        out.append(Window(end - step, end, batch, points, nodes=1, dimensions=dimensions, point_entities=entities))
    return out


def decoded(table: pa.Table) -> pa.Table:
    """``table`` with dictionary columns as plain strings: compares values, not dictionaries (each
    row group of a file read back carries its own)."""
    return pa.table(
        {
            f.name: c.cast(f.type.value_type) if pa.types.is_dictionary(f.type) else c
            for f, c in zip(table.schema, table.columns, strict=True)
        }
    )
