"""The in-memory window store the HTTP APIs read (Heapster's metric sink, HEAPSTER.md §7.1).

Heapster kept whole batches for ~140 s and the cpu/memory series for 15 minutes. We keep whole
windows (entity form, the compact one) for ``window_retention`` and, for ``series_retention``, the
long-form points of the few metrics dashboards and ``kubectl top`` ask for over time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pyarrow as pa

from heapster_columnar.config.uri import Uri
from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.points import metric_columns, to_points
from heapster_columnar.model.schema import LABELED_SCHEMA, POINTS_SCHEMA
from heapster_columnar.model.window import Window

SERIES_METRICS = ("cpu/usage_rate", "memory/usage", "memory/working_set")
_NO_POINTS = POINTS_SCHEMA.empty_table()


class MemorySink:
    name = "memory"

    def __init__(
        self,
        *,
        window_retention: timedelta = timedelta(seconds=140),
        series_retention: timedelta = timedelta(minutes=15),
        series_metrics: Sequence[str] = SERIES_METRICS,
    ) -> None:
        self.window_retention, self.series_retention = window_retention, series_retention
        self.series_metrics = tuple(series_metrics)
        self._lock = threading.Lock()
        self._windows: deque[Window] = deque()
        self._series: deque[tuple[datetime, pa.Table]] = deque()

    @classmethod
    def from_uri(cls, uri: Uri) -> MemorySink:
        uri.check(())
        return cls()

    def write(self, window: Window) -> None:
        # the series store keeps the entity rows with only the series metrics (not long-form
        # points): ~20 MB a window at 5,000 nodes instead of ~60 MB, and indexable by entity
        entities = window.batch.entities
        ints, floats = metric_columns(entities)
        others = [m for m in (*ints, *floats) if m not in self.series_metrics]
        series = entities.drop_columns(others)
        # Windows are kept in entity form only: the long points table (13.6 M rows, ~1 GB at 5,000
        # nodes) is for the durable sinks, and the APIs read entity rows; ten windows of points
        # would cost ~10 GB for nothing.
        kept = replace(window, points=_NO_POINTS)
        with self._lock:
            self._windows.append(kept)
            self._series.append((window.end, series))
            while self._windows and self._windows[0].end <= window.end - self.window_retention:
                self._windows.popleft()
            while self._series and self._series[0][0] <= window.end - self.series_retention:
                self._series.popleft()

    def close(self) -> None:
        with self._lock:
            self._windows.clear()
            self._series.clear()

    def latest(self) -> Window | None:
        with self._lock:
            return self._windows[-1] if self._windows else None

    def windows(self) -> list[Window]:
        with self._lock:
            return list(self._windows)

    def series_tables(self) -> list[tuple[datetime, pa.Table]]:
        """(window end, that window's entity rows with the series metrics only), oldest first."""
        with self._lock:
            return list(self._series)

    def series(self, start: datetime | None = None, end: datetime | None = None) -> pa.Table | None:
        """The kept series as points with ``start <= timestamp <= end``, one table (None if empty)."""
        with self._lock:
            kept = [(s, t) for s, t in self._series if (start is None or s >= start) and (end is None or s <= end)]
        empty = LABELED_SCHEMA.empty_table()
        tables = [to_points(MetricBatch(t, empty), stamp) for stamp, t in kept]
        return pa.concat_tables(tables, promote_options="permissive") if tables else None
