"""Window: one collected, processed window as the sinks and APIs receive it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from heapster_columnar.model.batch import MetricBatch


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)``; points are stamped ``end`` (Heapster's batch timestamp).

    ``batch`` is the processed entity form (what the APIs query), ``points`` the public long table
    (what sinks write). ``failures`` names every node that contributed nothing and why.
    """

    start: datetime
    end: datetime
    batch: MetricBatch
    points: pa.Table
    nodes: int  # nodes the window tried to scrape
    failures: Mapping[str, str] = field(default_factory=dict)
    stage_seconds: Mapping[str, float] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return bool(self.failures)
