"""Shared test helpers: the bundled real payloads and a decode-to-points shortcut."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from heapster_columnar.model.points import to_points
from heapster_columnar.samples import kubelet_dir
from heapster_columnar.sources.summary import decode_summaries

NOW = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def kubelet_data() -> Path:
    return kubelet_dir()


def decode_files(*paths: Path, now: datetime = NOW) -> pa.Table:
    """Points of the given payload files, failing the test on any decode error."""
    result = decode_summaries([p.read_bytes() for p in paths], now=now, sources=[p.name for p in paths])
    assert result.errors == ()
    return to_points(result.batch, now)


def metrics_of(points: pa.Table, **labels: str | None) -> dict[str, Any]:
    """``metric → value_int (or value)`` of the points whose labels equal ``labels`` (None = null)."""
    rows = points.to_pylist()
    out: dict[str, Any] = {}
    for row in rows:
        if all(row[k] == v for k, v in labels.items()):
            assert row["metric"] not in out, f"two points for {row['metric']} at {labels}"
            out[row["metric"]] = row["value_int"] if row["value_int"] is not None else row["value"]
    return out


@pytest.fixture
def decode() -> Callable[..., pa.Table]:
    return decode_files


def canonical(points: pa.Table) -> list[tuple[Any, ...]]:
    """Rows as sorted tuples: point order is not part of the contract, the multiset is."""
    return sorted((tuple(row.values()) for row in points.to_pylist()), key=repr)
