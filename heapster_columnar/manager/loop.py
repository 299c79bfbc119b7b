"""The manager loop (HEAPSTER.md §6): each window is scraped, processed and handed to every sink.

Timing follows Heapster: windows aligned to the resolution, collected ``offset`` after they end,
stamped with their end; at most ``max_in_flight`` windows at once (a window that cannot start
within half a resolution is skipped and counted, as Heapster did). Unlike Heapster, processing is
serialised in window order (the rate calculator needs it), CPU work runs in worker threads so the
event loop keeps scraping, and one failing node, stage or sink never loses the rest of the window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pyarrow as pa

from heapster_columnar.manager.clock import next_collection
from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.points import points_with_entities
from heapster_columnar.model.window import Window
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.sinks.base import Sink, WriteResult
from heapster_columnar.sinks.worker import SinkWorker
from heapster_columnar.telemetry import Telemetry

log = logging.getLogger(__name__)


class Collected(Protocol):
    """What a scrape of every kubelet returns (``sources.kubelet.Collected``)."""

    @property
    def batch(self) -> MetricBatch: ...
    @property
    def failures(self) -> dict[str, str]: ...
    @property
    def request_seconds(self) -> dict[str, float]: ...


class Scraper(Protocol):
    async def collect(self, nodes: pa.Table, *, now: datetime, deadline: float) -> Collected: ...


@dataclass(frozen=True, slots=True)
class WindowOutcome:
    window: Window
    results: tuple[WriteResult, ...]  # the in-process sinks (memory, log); durable ones report later
    seconds: float  # window end to the in-process sinks done and the window handed to the others


class Manager:
    def __init__(
        self,
        *,
        scraper: Scraper,
        dimensions: Callable[[], Dimensions],
        pipeline: Pipeline,
        sinks: Sequence[Sink],
        resolution: timedelta,
        workers: Sequence[SinkWorker] = (),
        offset: timedelta = timedelta(seconds=5),
        scrape_deadline: timedelta = timedelta(seconds=20),
        sink_timeout: timedelta = timedelta(seconds=20),
        max_in_flight: int = 2,
        telemetry: Telemetry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scraper, self.dimensions, self.pipeline, self.sinks = scraper, dimensions, pipeline, tuple(sinks)
        self.workers = tuple(workers)  # durable sinks, each on its own thread (sinks/worker.py)
        self.resolution, self.offset = resolution, offset
        self.scrape_deadline = min(scrape_deadline, resolution)
        self.sink_timeout = sink_timeout
        self.telemetry = telemetry or Telemetry()
        self._clock = clock
        self._slots = asyncio.Semaphore(max_in_flight)
        self._order = asyncio.Lock()  # processing runs in window order
        self.skipped = 0
        self.outcomes: list[WindowOutcome] = []  # the newest few, for the CLI and tests
        self.on_window: Callable[[WindowOutcome], None] | None = None

    async def run(self, stop: asyncio.Event, *, windows: int | None = None) -> None:
        """Collect windows until ``stop`` is set (or ``windows`` have completed); the window in
        progress is finished, not abandoned, and the sinks are closed at the end."""
        tasks: set[asyncio.Task[None]] = set()
        started = 0
        try:
            while not stop.is_set() and (windows is None or started < windows):
                now = datetime.fromtimestamp(self._clock(), UTC)
                start, end, when = next_collection(now, self.resolution, self.offset)
                delay = (when - now).total_seconds()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(delay, 0))
                    break  # stopped while waiting
                except TimeoutError:
                    pass
                try:
                    await asyncio.wait_for(self._slots.acquire(), timeout=self.resolution.total_seconds() / 2)
                except TimeoutError:
                    self.skipped += 1
                    log.warning("window %s skipped: earlier windows still in flight", end.isoformat())
                    continue
                task = asyncio.create_task(self._window_task(start, end))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                started += 1
            if tasks:
                if stop.is_set():
                    log.info("stopping: finishing %d window(s) in progress", len(tasks))
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for sink in self.sinks:
                try:
                    await asyncio.to_thread(sink.close)
                except Exception:
                    log.exception("closing sink %s failed", sink.name)
            await asyncio.gather(*(asyncio.to_thread(w.close, self.sink_timeout.total_seconds()) for w in self.workers))
            log.info("stopped after %d window(s); sinks closed", started)

    async def _window_task(self, start: datetime, end: datetime) -> None:
        try:
            outcome = await self.run_window(start, end)
            self.outcomes = [*self.outcomes[-9:], outcome]
            if self.on_window is not None:
                self.on_window(outcome)
        except Exception:
            log.exception("window %s failed", end.isoformat())
        finally:
            self._slots.release()

    async def run_window(self, start: datetime, end: datetime) -> WindowOutcome:
        """Scrape, process and write one window ``[start, end)`` now."""
        t = self.telemetry
        log.info("window %s: collecting", end.isoformat())
        dimensions = await asyncio.to_thread(self.dimensions)  # a rebuild at 150 k pods takes seconds
        loop = asyncio.get_running_loop()
        scrape_started = time.perf_counter()
        collected = await self.scraper.collect(
            dimensions.nodes, now=end, deadline=loop.time() + self.scrape_deadline.total_seconds()
        )
        scrape_seconds = time.perf_counter() - scrape_started
        t.scrape_seconds.observe(scrape_seconds)
        for node, seconds in collected.request_seconds.items():  # a loop per node: I/O bookkeeping
            t.request_seconds.observe(seconds)
            t.node_request_seconds.labels(node=node).set(seconds)
        for reason in collected.failures.values():
            t.nodes_failed.labels(reason=reason.split(":")[0]).inc()
        async with self._order:
            window = await asyncio.to_thread(self._process, collected, start, end, dimensions, scrape_seconds)
        for stage, seconds in window.stage_seconds.items():
            if stage not in ("scrape", "decode"):  # (those have their own histograms)
                t.stage_seconds.labels(processor=stage).observe(seconds)
        results = await asyncio.gather(*(self._write(sink, window) for sink in self.sinks))
        for worker in self.workers:
            worker.submit(window)  # never blocks: a slow sink queues or spools
        seconds = self._clock() - end.timestamp()
        t.window_seconds.observe(max(seconds, 0))
        t.windows.inc()
        if window.partial:
            t.partial_windows.inc()
        t.points.set(window.points.num_rows)
        t.nodes.set(window.nodes - len(window.failures))
        t.last_window.set(end.timestamp())
        if window.failures:
            log.warning(
                "window %s partial: %d of %d nodes failed (%s)",
                end.isoformat(),
                len(window.failures),
                window.nodes,
                ", ".join(f"{n}: {r}" for n, r in sorted(window.failures.items())[:5]),
            )
        return WindowOutcome(window, tuple(results), seconds)

    def _process(
        self, collected: Collected, start: datetime, end: datetime, dimensions: Dimensions, scrape_seconds: float
    ) -> Window:
        processed = self.pipeline.process(collected.batch, end, dimensions)
        for failure in processed.failures:
            log.error("window %s: processor %s failed: %s", end.isoformat(), failure.stage, failure.error)
        batch = processed.to_batch()
        started = time.perf_counter()
        points, point_entities = points_with_entities(batch, end)
        stage_seconds = {
            "scrape": scrape_seconds,  # wall time, decoding overlapped
            "decode": getattr(collected, "decode_seconds", 0.0),  # decode thread time within it
            **processed.seconds,
            "to_points": time.perf_counter() - started,
        }
        nodes = dimensions.nodes.num_rows or len(collected.failures)
        failures = dict(collected.failures)
        return Window(start, end, batch, points, nodes, failures, stage_seconds, dimensions, point_entities)

    async def _write(self, sink: Sink, window: Window) -> WriteResult:
        started = time.perf_counter()
        timeout = self.sink_timeout.total_seconds()
        error: str | None = None
        try:
            await asyncio.wait_for(asyncio.to_thread(sink.write, window), timeout=timeout)
        except TimeoutError:
            error = f"timeout after {timeout:g} s"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        self.telemetry.sink_seconds.labels(sink=sink.name).observe(seconds)
        if error is not None:
            self.telemetry.sink_failures.labels(sink=sink.name).inc()
            self.telemetry.dropped_points.labels(sink=sink.name).inc(window.points.num_rows)
            log.error(
                "sink %s lost window %s (%d points): %s",
                sink.name,
                window.end.isoformat(),
                window.points.num_rows,
                error,
            )
        return WriteResult(sink.name, window.points.num_rows, seconds, error)
