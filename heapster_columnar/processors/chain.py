"""The processor chain: Heapster's eight stages in Heapster's order, each timed, failures isolated.

Heapster dropped the whole window when any processor failed (HEAPSTER.md §10.16). Here a stage
that raises is recorded with its name and the window goes on without that stage's additions: every
stage only adds columns and rows (``base.py``), so the frames before it are a valid window. All
eight stages are skippable in that sense; what a skipped stage costs:

- rate calculator: no ``*_rate`` metrics this window (its state is left as it was);
- pod / namespace enrichers: no API metadata (labels, requests, ids) on the rows;
- aggregators: no summed pod / namespace / node / cluster values;
- node autoscaling enricher: no ``*/node_*`` metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.labels import LabelCopier
from heapster_columnar.processors.aggregate import (
    ClusterAggregator,
    NamespaceAggregator,
    NodeAggregator,
    PodAggregator,
)
from heapster_columnar.processors.autoscaling import NodeAutoscalingEnricher
from heapster_columnar.processors.base import Frames, Processor
from heapster_columnar.processors.enrich import NamespaceEnricher, PodEnricher
from heapster_columnar.processors.rates import RateCalculator

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StageFailure:
    stage: str
    error: str


@dataclass(frozen=True, slots=True)
class ProcessedWindow:
    """A processed window, how long each stage took, and which stages failed (then skipped)."""

    frames: Frames
    seconds: dict[str, float] = field(default_factory=dict)
    failures: tuple[StageFailure, ...] = ()

    def to_batch(self) -> MetricBatch:
        return self.frames.to_batch()


class Pipeline:
    """Runs the processors on one window after another; owns the rate calculator's state."""

    def __init__(self, processors: Sequence[Processor]) -> None:
        self.processors = tuple(processors)

    @classmethod
    def heapster(cls, labels: LabelCopier | None = None) -> Pipeline:
        """Heapster's chain (``metrics/heapster.go``): rates, enrichers, aggregators, autoscaling."""
        labels = labels or LabelCopier()
        return cls(
            [
                RateCalculator(),
                PodEnricher(labels),
                NamespaceEnricher(),
                PodAggregator(),
                NamespaceAggregator(),
                NodeAggregator(),
                ClusterAggregator(),
                NodeAutoscalingEnricher(labels),
            ]
        )

    def process(self, batch: MetricBatch, timestamp: datetime, dimensions: Dimensions) -> ProcessedWindow:
        frames = Frames.of(batch, timestamp)
        seconds: dict[str, float] = {}
        failures: list[StageFailure] = []
        for processor in self.processors:
            started = time.perf_counter()
            try:
                frames = processor.process(frames, dimensions)
            except Exception as exc:
                if not processor.skippable:
                    raise
                failures.append(StageFailure(processor.name, f"{type(exc).__name__}: {exc}"))
                log.exception("processor %s failed; window %s continues without it", processor.name, timestamp)
            finally:
                seconds[processor.name] = time.perf_counter() - started
        return ProcessedWindow(frames, seconds, tuple(failures))
