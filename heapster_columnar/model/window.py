"""Window: one collected, processed window as the sinks and APIs receive it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa

from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.dimensions import Dimensions


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)``; points are stamped ``end`` (Heapster's batch timestamp).

    ``batch`` is the processed entity form (what the APIs query), ``points`` the public long table
    (what sinks write). ``failures`` names every node that contributed nothing and why.
    ``dimensions`` is the API snapshot the window was enriched with: the same objects window after
    window until list+watch sees a change (tables are replaced, never mutated), so a sink can tell
    a change by identity and store the pods/nodes/namespaces tables only then.
    ``point_entities`` lets a sink store an entity's labels once instead of per point.
    """

    start: datetime
    end: datetime
    batch: MetricBatch
    points: pa.Table
    nodes: int  # nodes the window tried to scrape
    failures: Mapping[str, str] = field(default_factory=dict)
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    dimensions: Dimensions | None = None
    # For each point, its row in ``batch.entities`` (``points_with_entities``); None when the
    # points did not come from ``batch`` (a replayed spool, a hand-built table).
    point_entities: np.ndarray | None = None

    @property
    def partial(self) -> bool:
        return bool(self.failures)
